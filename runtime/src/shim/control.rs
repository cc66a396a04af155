//! The control socket: one request line per connection, one reply line.
//!
//! ```text
//! stop <signal> <grace-ms>   send <signal> now, SIGKILL when the grace period ends → "ok"
//! signal <signal>            send <signal> to the container's init → "ok"
//! ping                       → "ok"
//! ```
//!
//! Replies are `ok`, `exited` (the container has already ended) or `error <message>`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// A request to a shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Stop { signal: i32, grace_ms: u64 },
    Signal(i32),
    Ping,
}

impl Request {
    /// The request as a line, without the newline.
    pub fn encode(&self) -> String {
        match self {
            Request::Stop { signal, grace_ms } => format!("stop {signal} {grace_ms}"),
            Request::Signal(s) => format!("signal {s}"),
            Request::Ping => "ping".to_owned(),
        }
    }

    /// Parses a request line.
    pub fn parse(line: &str) -> Option<Request> {
        let mut words = line.split_ascii_whitespace();
        let req = match words.next()? {
            "stop" => Request::Stop {
                signal: words.next()?.parse().ok()?,
                grace_ms: words.next()?.parse().ok()?,
            },
            "signal" => Request::Signal(words.next()?.parse().ok()?),
            "ping" => Request::Ping,
            _ => return None,
        };
        words.next().is_none().then_some(req)
    }
}

/// A path through `/proc/self/fd` to `name` inside `dir`: unix socket paths are limited to 108
/// bytes, and state directories can be deeper than that.
fn short_path(dir: &std::fs::File, name: &str) -> std::path::PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

/// Binds the control socket in `dir` (the shim side).
pub fn bind(dir: &Path, name: &str) -> io::Result<UnixListener> {
    let d = std::fs::File::open(dir)?;
    let _ = std::fs::remove_file(dir.join(name));
    UnixListener::bind(short_path(&d, name))
}

/// Sends `request` to the shim whose directory is `dir` and returns its reply (the agent side;
/// blocking, bounded by `timeout`).
pub fn send(dir: &Path, name: &str, request: Request, timeout: Duration) -> io::Result<String> {
    let d = std::fs::File::open(dir)?;
    let mut stream = UnixStream::connect(short_path(&d, name))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("{}\n", request.encode()).as_bytes())?;
    let mut reply = String::new();
    BufReader::new(io::Read::take(stream, 4096)).read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}

/// Reads one request line from an accepted connection (the shim side).
pub fn read_request(stream: &UnixStream) -> io::Result<Option<Request>> {
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut line = String::new();
    BufReader::new(io::Read::take(stream, 256)).read_line(&mut line)?;
    Ok(Request::parse(line.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        for r in [
            Request::Stop {
                signal: 15,
                grace_ms: 30_000,
            },
            Request::Signal(10),
            Request::Ping,
        ] {
            assert_eq!(Request::parse(&r.encode()), Some(r));
        }
        for bad in [
            "",
            "stop",
            "stop 15",
            "stop x 1",
            "signal",
            "ping extra",
            "reboot",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_control_socket_works_in_a_directory_deeper_than_sun_path_allows() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("d".repeat(100)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let listener = bind(&deep, "control.sock").unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let req = read_request(&stream).unwrap();
            (&stream).write_all(b"ok\n").unwrap();
            req
        });
        let reply = send(
            &deep,
            "control.sock",
            Request::Signal(1),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(reply, "ok");
        assert_eq!(server.join().unwrap(), Some(Request::Signal(1)));
    }
}

//! `berth-shim monitor ...`: what a shim does for the life of its container. Reached by exec
//! from `start`, so it keeps the pid, the container init as its child and the subreaper flag,
//! but none of the memory libcontainer touched. Arguments are `key=value` words (no JSON, no
//! argument-parsing library) and the steady state is one `poll(2)` loop.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::control::{self, Request};
use super::cri_log::{CriLogWriter, LineSplitter, Stream};
use super::{ExitRecord, files, process_setup};
use crate::fsutil::atomic_write;
use crate::timefmt::rfc3339_nanos;

/// How long to keep reading output after init has exited and its cgroup has been emptied
/// (a process outside the cgroup could hold the pipe open forever).
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// The monitor's arguments.
#[derive(Debug)]
pub struct MonitorArgs {
    dir: PathBuf,
    id: String,
    init: Pid,
    stdout: i32,
    stderr: i32,
    control: i32,
    /// The start lock (see `start_lock`): held until the monitor exits.
    lock: i32,
    ready: i32,
    ready_msg: String,
    started_at: String,
    log: PathBuf,
    log_max_size: u64,
    log_max_files: u32,
    log_max_line: usize,
    lc_root: PathBuf,
    procs: Vec<PathBuf>,
    oom: Option<PathBuf>,
}

/// Parses `key=value` words; a missing or malformed key is an error naming it.
pub fn parse_args(words: &[OsString]) -> Result<MonitorArgs, String> {
    let mut map: BTreeMap<String, Vec<OsString>> = BTreeMap::new();
    for w in words {
        let bytes = w.clone().into_vec();
        let eq = bytes
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| format!("monitor argument {w:?} is not key=value"))?;
        let key = String::from_utf8_lossy(&bytes[..eq]).into_owned();
        map.entry(key)
            .or_default()
            .push(OsString::from_vec(bytes[eq + 1..].to_vec()));
    }
    let one = |k: &str| -> Result<OsString, String> {
        map.get(k)
            .and_then(|v| v.first().cloned())
            .ok_or_else(|| format!("monitor argument {k} is missing"))
    };
    let text = |k: &str| -> Result<String, String> {
        one(k)?
            .into_string()
            .map_err(|_| format!("monitor argument {k} is not UTF-8"))
    };
    let num = |k: &str| -> Result<u64, String> {
        text(k)?
            .parse()
            .map_err(|_| format!("monitor argument {k} is not a number"))
    };
    Ok(MonitorArgs {
        dir: one("dir")?.into(),
        id: text("id")?,
        init: Pid::from_raw(num("init")? as i32),
        stdout: num("stdout")? as i32,
        stderr: num("stderr")? as i32,
        control: num("control")? as i32,
        lock: num("lock")? as i32,
        ready: num("ready")? as i32,
        ready_msg: text("ready-msg")?,
        started_at: text("started-at")?,
        log: one("log")?.into(),
        log_max_size: num("log-max-size")?,
        log_max_files: num("log-max-files")? as u32,
        log_max_line: num("log-max-line")? as usize,
        lc_root: one("lc-root")?.into(),
        procs: map
            .get("procs")
            .map(|v| v.iter().map(PathBuf::from).collect())
            .unwrap_or_default(),
        oom: map.get("oom").and_then(|v| v.first()).map(PathBuf::from),
    })
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
    splitter: LineSplitter,
}

struct Monitor {
    args: MonitorArgs,
    log: Option<CriLogWriter>,
    outputs: Vec<Output>,
    exit: Option<(WaitStatus, SystemTime)>,
    stop_requested: bool,
    kill_at: Option<Instant>,
    drain_until: Option<Instant>,
    buf: Vec<u8>,
}

/// Entry point of the monitor. Returns the process exit code.
pub fn run(args: MonitorArgs) -> i32 {
    let mask = process_setup::handled_set();
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => {
            // Without signals the container cannot be supervised: take it down.
            let _ = kill(args.init, Signal::SIGKILL);
            eprintln!("berth-shim monitor: signalfd: {e}");
            return 1;
        }
    };
    // SAFETY: these descriptors were passed to us by `start` and nothing else owns them.
    let (stdout, stderr, control_fd, ready, lock) = unsafe {
        (
            OwnedFd::from_raw_fd(args.stdout),
            OwnedFd::from_raw_fd(args.stderr),
            OwnedFd::from_raw_fd(args.control),
            OwnedFd::from_raw_fd(args.ready),
            OwnedFd::from_raw_fd(args.lock),
        )
    };
    // Kept open (never closed before exit: closing releases the lock) and out of any child.
    set_cloexec(lock.as_raw_fd());
    let control = UnixListener::from(control_fd);
    for fd in [stdout.as_raw_fd(), stderr.as_raw_fd(), control.as_raw_fd()] {
        set_nonblocking(fd);
        set_cloexec(fd);
    }
    let log = CriLogWriter::open(&args.log, args.log_max_size, args.log_max_files).ok();
    // Tell the agent the container runs, then let go of the pipe.
    {
        let mut f = File::from(ready);
        let _ = f.write_all(args.ready_msg.as_bytes());
        let _ = f.write_all(b"\n");
    }
    let max_line = args.log_max_line;
    let mut m = Monitor {
        args,
        log,
        outputs: vec![
            Output {
                fd: stdout,
                stream: Stream::Stdout,
                splitter: LineSplitter::new(max_line),
            },
            Output {
                fd: stderr,
                stream: Stream::Stderr,
                splitter: LineSplitter::new(max_line),
            },
        ],
        exit: None,
        stop_requested: false,
        kill_at: None,
        drain_until: None,
        buf: vec![0; 32 << 10],
    };
    m.reap();
    release_startup_pages();
    m.run_loop(&sigfd, &control);
    m.finish()
}

fn set_nonblocking(fd: i32) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

fn set_cloexec(fd: i32) {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

impl Monitor {
    fn init_alive(&self) -> bool {
        self.exit.is_none()
    }

    fn run_loop(&mut self, sigfd: &SignalFd, control: &UnixListener) {
        loop {
            if !self.init_alive() {
                self.kill_cgroup();
                let until = *self
                    .drain_until
                    .get_or_insert_with(|| Instant::now() + DRAIN_LIMIT);
                if self.outputs.is_empty() || Instant::now() >= until {
                    return;
                }
            }
            let timeout = self.poll_timeout();
            let (sig_ready, ctl_ready, out_ready) = {
                let mut fds = vec![
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(control.as_fd(), PollFlags::POLLIN),
                ];
                for o in &self.outputs {
                    fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds[2..].iter().map(ready).collect::<Vec<_>>(),
                )
            };
            if sig_ready {
                self.handle_signals(sigfd);
            }
            if ctl_ready {
                self.handle_control(control);
            }
            for (i, ready) in out_ready.iter().enumerate().rev() {
                if *ready {
                    self.read_output(i);
                }
            }
            if let Some(at) = self.kill_at
                && self.init_alive()
                && Instant::now() >= at
            {
                self.kill_at = None;
                let _ = kill(self.args.init, Signal::SIGKILL);
                self.kill_cgroup();
            }
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let deadline = if self.init_alive() {
            self.kill_at
        } else {
            // Leftover processes are killed on every round until the cgroup is empty.
            Some(now + Duration::from_millis(50))
        };
        match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(now).as_millis().min(60_000) as u16;
                PollTimeout::from(ms.max(1))
            }
        }
    }

    fn handle_signals(&mut self, sigfd: &SignalFd) {
        while let Ok(Some(info)) = sigfd.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGCHLD {
                self.reap();
            } else if self.init_alive()
                && let Ok(sig) = Signal::try_from(signo)
                && process_setup::FORWARDED.contains(&sig)
            {
                let _ = kill(self.args.init, sig);
            }
        }
    }

    /// Reaps every exited child (init, and orphans we became the reaper of).
    fn reap(&mut self) {
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if status.pid() == Some(self.args.init) && self.exit.is_none() {
                        self.exit = Some((status, SystemTime::now()));
                    }
                }
            }
        }
    }

    fn handle_control(&mut self, control: &UnixListener) {
        while let Ok((stream, _)) = control.accept() {
            let _ = stream.set_nonblocking(false);
            let reply = match control::read_request(&stream) {
                Ok(Some(req)) => self.apply(req),
                Ok(None) => "error unknown request".to_owned(),
                Err(e) => format!("error {e}"),
            };
            let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
        }
    }

    fn apply(&mut self, req: Request) -> String {
        if !self.init_alive() {
            return "exited".to_owned();
        }
        match req {
            Request::Ping => "ok".to_owned(),
            Request::Signal(n) => match Signal::try_from(n) {
                Ok(sig) => match kill(self.args.init, sig) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("error {e}"),
                },
                Err(_) => format!("error unknown signal {n}"),
            },
            Request::Stop { signal, grace_ms } => {
                self.stop_requested = true;
                let at = Instant::now() + Duration::from_millis(grace_ms);
                // A second stop can only shorten the grace period.
                self.kill_at = Some(self.kill_at.map_or(at, |old| old.min(at)));
                let sig = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
                if grace_ms == 0 || sig == Signal::SIGKILL {
                    let _ = kill(self.args.init, Signal::SIGKILL);
                    self.kill_cgroup();
                } else {
                    let _ = kill(self.args.init, sig);
                }
                "ok".to_owned()
            }
        }
    }

    fn read_output(&mut self, index: usize) {
        let mut eof = false;
        loop {
            let fd = self.outputs[index].fd.as_raw_fd();
            // SAFETY: `fd` is open (owned by self.outputs) and `buf` is a valid writable buffer
            // of the given length.
            let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n == 0 {
                eof = true;
                break;
            }
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => {
                        eof = true;
                        break;
                    }
                }
            }
            let now = SystemTime::now();
            let out = &mut self.outputs[index];
            let stream = out.stream;
            let log = &mut self.log;
            out.splitter.push(&self.buf[..n as usize], |line, partial| {
                if let Some(w) = log.as_mut() {
                    let _ = w.write_record(stream, partial, line, now);
                }
            });
            if (n as usize) < self.buf.len() {
                break;
            }
        }
        if eof {
            let mut out = self.outputs.remove(index);
            let now = SystemTime::now();
            let log = &mut self.log;
            out.splitter.finish(|line, partial| {
                if let Some(w) = log.as_mut() {
                    let _ = w.write_record(out.stream, partial, line, now);
                }
            });
        }
    }

    /// SIGKILLs every process left in the container's cgroups.
    fn kill_cgroup(&mut self) {
        for file in &self.args.procs {
            for pid in crate::sys::read_pids(file).unwrap_or_default() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.reap();
    }

    fn cgroup_empty(&self) -> bool {
        self.args.procs.iter().all(|f| {
            crate::sys::read_pids(f)
                .map(|p| p.is_empty())
                .unwrap_or(true)
        })
    }

    fn finish(mut self) -> i32 {
        // Whatever was left unterminated in the pipes ends as full lines.
        let now = SystemTime::now();
        for out in &mut self.outputs {
            let log = &mut self.log;
            let stream = out.stream;
            out.splitter.finish(|line, partial| {
                if let Some(w) = log.as_mut() {
                    let _ = w.write_record(stream, partial, line, now);
                }
            });
        }
        // Make sure the cgroup is empty before it is removed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.cgroup_empty() && Instant::now() < deadline {
            self.kill_cgroup();
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, finished) = self.exit.unwrap_or((WaitStatus::StillAlive, now));
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let record = ExitRecord {
            exit_code,
            signal,
            oom_killed: self.args.oom.as_deref().is_some_and(oom_killed),
            stop_requested: self.stop_requested,
            started_at: self.args.started_at.clone(),
            finished_at: rfc3339_nanos(finished),
        };
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        let recorded = atomic_write(&self.args.dir.join(files::EXIT), &json, 0o644);
        super::launch::delete_state(&self.args.lc_root, &self.args.id);
        let _ = std::fs::remove_file(self.args.dir.join(files::CONTROL));
        if recorded.is_err() { 1 } else { 0 }
    }
}

/// Drops this process's page-table entries for read-only file mappings that were never written
/// (the binary's and libraries' code and constants): exec, the dynamic loader and start-up
/// touched far more of them than the monitor loop needs. They stay in the page cache; the few
/// the loop uses fault back in. This keeps a shim's resident set small. Mappings with private
/// (copy-on-write) pages, such as relocated RELRO data, are left alone: dropping those would
/// lose their contents.
fn release_startup_pages() {
    use std::io::BufRead;
    let Ok(file) = File::open("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize, bool)> = None;
    for line in std::io::BufReader::with_capacity(4096, file).lines() {
        let Ok(line) = line else { return };
        if let Some(rest) = line.strip_prefix("Anonymous:") {
            if let Some((start, end, candidate)) = current.take() {
                let anon_kb: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                if candidate && anon_kb == 0 {
                    // SAFETY: the range is a whole read-only, private, file-backed mapping of
                    // this process with no private (anonymous) pages: MADV_DONTNEED only drops
                    // page-table entries, and every later access faults in the identical page
                    // from the file. Nothing in it can be written.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
                    }
                }
            }
            continue;
        }
        // A mapping header: "start-end perms offset dev inode [path]".
        let mut fields = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let inode = fields.nth(2).unwrap_or("0");
        let path = fields.next().unwrap_or("");
        let candidate = perms.starts_with('r')
            && perms.as_bytes().get(1) == Some(&b'-')
            && perms.ends_with('p')
            && inode != "0"
            && path.starts_with('/');
        current = Some((start, end, candidate));
    }
}

/// Whether an `oom_kill N` line with N > 0 is in the cgroup's OOM events file.
fn oom_killed(path: &Path) -> bool {
    let mut text = String::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .is_err()
    {
        return false;
    }
    parse_oom_kill(&text) > 0
}

/// The `oom_kill` count of memory.oom_control (v1) or memory.events (v2).
pub(crate) fn parse_oom_kill(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts_are_read_from_v1_and_v2_files() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }

    #[test]
    fn monitor_arguments_name_what_is_missing() {
        let words: Vec<OsString> = ["dir=/x", "id=c"].iter().map(OsString::from).collect();
        assert_eq!(
            parse_args(&words).unwrap_err(),
            "monitor argument init is missing"
        );
        let bad: Vec<OsString> = vec!["nonsense".into()];
        assert!(parse_args(&bad).unwrap_err().contains("is not key=value"));
    }
}

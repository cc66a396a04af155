//! `berth-shim`'s entry points. The binary only calls [`main`]; there is no argument library
//! (the monitor path must stay small).
//!
//! ```text
//! berth-shim start <shim-dir>                 create + start, then exec monitor (fd 3: ready)
//! berth-shim monitor key=value...             internal: supervise a running container
//! berth-shim exec <shim-dir> [--env K=V]... [--cwd DIR] -- CMD [ARG]...   (fd 3: status)
//! ```

use std::ffi::OsString;
use std::path::Path;

const USAGE: &str = "usage: berth-shim start <shim-dir> | berth-shim exec <shim-dir> [--env K=V]... [--cwd DIR] -- CMD [ARG]...";

/// Runs the mode named by the first argument; returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mode = args.get(1).and_then(|s| s.to_str());
    match (mode, args.get(2)) {
        (Some("start"), Some(dir)) => super::launch::start_main(Path::new(dir)),
        (Some("monitor"), _) => match super::monitor::parse_args(&args[2..]) {
            Ok(monitor_args) => super::monitor::run(monitor_args),
            Err(e) => {
                eprintln!("berth-shim: {e}");
                2
            }
        },
        (Some("exec"), Some(dir)) => {
            let words: Vec<String> = args[3..]
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            super::tenant::exec_main(Path::new(dir), &words)
        }
        _ => {
            eprintln!("{USAGE}");
            2
        }
    }
}

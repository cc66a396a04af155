//! The defaults a container runs with are really in force in the kernel.

mod common;

use std::time::Duration;

use common::*;

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn seccomp_is_in_force_and_no_signal_is_ignored_or_blocked() {
    let mut t = TestRuntime::new("seccomp_on");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-sec", &pod, "exec sleep 1000")).await;

    // The container's init, read from inside the container.
    let (_, init, _) = exec(&t, "c-sec", &["cat", "/proc/1/status"]).await;
    assert_eq!(status_field(&init, "Seccomp"), "2");
    // Exactly one filter: the program berth compiled ahead of time, not also libcontainer's.
    assert_eq!(status_field(&init, "Seccomp_filters"), "1");
    assert_eq!(status_field(&init, "NoNewPrivs"), "1");
    assert_eq!(status_field(&init, "SigIgn"), "0000000000000000");
    assert_eq!(status_field(&init, "SigBlk"), "0000000000000000");
    // containerd's 14 default capabilities, nothing else.
    assert_eq!(status_field(&init, "CapEff"), "00000000a80425fb");
    assert_eq!(status_field(&init, "CapBnd"), "00000000a80425fb");

    // An exec'd process gets the same filter (libcontainer alone would not install it).
    let (_, me, _) = exec(&t, "c-sec", &["cat", "/proc/self/status"]).await;
    assert_eq!(status_field(&me, "Seccomp"), "2");
    assert_eq!(status_field(&me, "Seccomp_filters"), "1");
    assert_eq!(status_field(&me, "SigIgn"), "0000000000000000");
    // The filter came precompiled: libcontainer's config.json carries no profile.
    let bundle = shim.dir().join("bundle");
    assert!(bundle.join("seccomp.bpf").is_file());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(
        config["linux"].get("seccomp").is_none(),
        "{}",
        config["linux"]
    );

    // A syscall outside the profile fails with EPERM even for root: unshare(CLONE_NEWUTS)
    // needs CAP_SYS_ADMIN, which the profile gates.
    let (code, _, err) = exec(&t, "c-sec", &["unshare", "-u", "true"]).await;
    assert_ne!(code, 0, "{err}");
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn masked_and_read_only_proc_paths_are_applied() {
    let mut t = TestRuntime::new("masked_paths");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-mask", &pod, "exec sleep 1000")).await;
    // Files are masked by /dev/null, directories by an empty read-only tmpfs (this kernel has
    // no /proc/kcore, so /proc/timer_list stands in; the host has both).
    assert!(std::path::Path::new("/proc/timer_list").exists());
    let (_, size, _) = exec(&t, "c-mask", &["sh", "-c", "wc -c < /proc/timer_list"]).await;
    assert_eq!(size.trim(), "0", "/proc/timer_list is masked by /dev/null");
    let (_, acpi, _) = exec(&t, "c-mask", &["ls", "-A", "/proc/acpi"]).await;
    assert_eq!(acpi.trim(), "", "/proc/acpi is masked by an empty tmpfs");
    let (code, _, _) = exec(
        &t,
        "c-mask",
        &["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"],
    )
    .await;
    assert_ne!(code, 0, "/proc/sys is read-only");
    let (_, devs, _) = exec(&t, "c-mask", &["ls", "/dev"]).await;
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(
            devs.split_whitespace().any(|d| d == dev),
            "/dev/{dev} missing: {devs}"
        );
    }
    assert!(
        !devs
            .split_whitespace()
            .any(|d| d.starts_with("vd") || d.starts_with("sd")),
        "{devs}"
    );
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn a_read_only_root_filesystem_refuses_writes() {
    let mut t = TestRuntime::new("ro_rootfs");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request(
        "c-ro",
        &pod,
        "( (touch /newfile) 2>/dev/null && echo writable || echo read-only)",
    );
    req.config.security.read_only_root_filesystem = true;
    t.start(req).await.wait().await.unwrap();
    assert_eq!(log_text(&t.log_path("c-ro")), vec!["read-only"]);
}

//! Benchmark (ignored; run by bench/registry/run.sh): pull and unpack of a 3-layer image of
//! about 50 MB from a local `docker-registry`, beside `skopeo copy docker://... oci:...` of the
//! same image in the same run. Each round uses fresh destinations; rounds alternate between
//! the two so that both see the same machine load. Prints wall time, median and minimum.
//! berth flushes the filesystem once before a pulled image gets its name (a crash never
//! leaves a named image with data still in the page cache); skopeo does not, so a third line
//! times skopeo's copy followed by one syncfs, the same durability.
//!
//! Every round's store and OCI layout are removed only after the last round. On ext4 without
//! a journal (this project's build machines), the kernel skips over inodes freed in the last
//! minute or so when it allocates new ones (`recently_deleted` in `find_inode_bit`); removing
//! a round's ~900 unpacked files just before the next round made every file the next pull
//! creates scan past them, which measured the cleanup of the previous round rather than the
//! pull. Back-to-back runs of the benchmark on such a disk see the same effect from the last
//! run's cleanup: leave a few minutes between runs, or use `bench/registry/run.sh tmpfs`.
//! The same holds for the layers' source trees made during setup, kept until the end too.
//! Ext4 with a journal (Debian's default) does not make this check at all:
//! `bench/registry/run.sh ext4` runs on one, in a loop-mounted image file.

mod image_support;
mod registry_support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_runtime::image::ImageStore;
use berth_runtime::image::pull::{Keyring, PullProgress, Puller, Registries};
use image_support::{gnu_tar_layer, have_tools, host_arch, run};
use registry_support::Registry;

const ROUNDS: usize = 5;

/// Fills `dir` with `random` bytes of incompressible data and about `text` bytes of
/// compressible text files, as a real layer mixes binaries and text.
fn fill(dir: &Path, seed: u64, random: usize, text: usize) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("share/doc")).unwrap();
    let mut x = seed | 1;
    let mut left = random;
    let mut n = 0;
    while left > 0 {
        let len = left.min(4 << 20);
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len);
        fs::write(dir.join(format!("bin/blob{n}")), data).unwrap();
        left -= len;
        n += 1;
    }
    let line = "The quick brown fox jumps over the lazy dog; berth pulls images.\n";
    let per_file = 16 * 1024;
    for i in 0..text / per_file {
        fs::write(
            dir.join(format!("share/doc/file{i}.txt")),
            line.repeat(per_file / line.len()),
        )
        .unwrap();
    }
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0])
}

fn dir_size(path: &Path) -> u64 {
    let out = run(Command::new("du").args(["-sb"]).arg(path));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/registry/run.sh"]
async fn pull_and_unpack_beside_skopeo_copy() {
    if !have_tools(&["docker-registry", "skopeo", "umoci", "htpasswd"]) {
        return;
    }
    let base = std::env::var_os("BERTH_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new("/var/tmp").to_owned());
    let work = base.join(format!("berth-registry-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let registry = Registry::start("bench");

    // Three layers, about 50 MB compressed in all.
    let layout = work.join("layout");
    let image = format!("{}:bench", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    for (i, (random, text)) in [(22 << 20, 8 << 20), (14 << 20, 4 << 20), (9 << 20, 2 << 20)]
        .into_iter()
        .enumerate()
    {
        let root = work.join(format!("rootfs{i}"));
        fill(&root, i as u64 + 11, random, text);
        let tar = work.join(format!("layer{i}.tar"));
        gnu_tar_layer(&root, &tar);
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(&tar));
        fs::remove_file(&tar).unwrap();
        // The layer's source files (about 900 for the three) stay until the end, like every
        // round's output: deleting them here put them in the way of the first rounds' pulls.
    }
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        host_arch(),
    ]));
    registry.push(&layout, "bench", "bench/image:1", "oci", &[]);
    let compressed = dir_size(&layout.join("blobs"));
    let reference = format!("{}/bench/image:1", registry.host());
    println!(
        "image: 3 layers, {:.1} MB compressed, pulled from docker-registry on 127.0.0.1",
        compressed as f64 / 1e6
    );

    let mut berth = Vec::new();
    let mut skopeo = Vec::new();
    let mut skopeo_flushed = Vec::new();
    for round in 0..ROUNDS {
        // berth: pull + verify + unpack + fsync into a fresh store.
        let data = work.join(format!("data{round}"));
        let puller = Puller::new(ImageStore::open(&data).unwrap(), Registries::default());
        let (progress, _rx) = tokio::sync::watch::channel(PullProgress::default());
        let started = Instant::now();
        let pulled = puller
            .pull(&reference, &Keyring::new(), &progress)
            .await
            .unwrap();
        berth.push(started.elapsed());
        assert_eq!(pulled.record.references, [reference.clone()]);

        // skopeo: download + verify into an OCI layout (no unpack).
        let dest = work.join(format!("skopeo{round}"));
        let started = Instant::now();
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:bench", dest.display())));
        skopeo.push(started.elapsed());
        // The same durability as berth's commit, which flushes the filesystem once before
        // the image gets a name: skopeo's copy, then one syncfs of its destination.
        let dir = fs::File::open(&dest).unwrap();
        // SAFETY: syncfs only flushes the filesystem holding the open directory.
        assert_eq!(
            unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) },
            0
        );
        skopeo_flushed.push(started.elapsed());
    }
    for round in 0..ROUNDS {
        fs::remove_dir_all(work.join(format!("data{round}"))).unwrap();
        fs::remove_dir_all(work.join(format!("skopeo{round}"))).unwrap();
    }
    let (b_med, b_min) = median(berth);
    let (s_med, s_min) = median(skopeo);
    let (f_med, f_min) = median(skopeo_flushed);
    println!(
        "berth pull + unpack:          median {:>7.3} s   min {:>7.3} s",
        b_med.as_secs_f64(),
        b_min.as_secs_f64()
    );
    println!(
        "skopeo copy docker:// oci:    median {:>7.3} s   min {:>7.3} s",
        s_med.as_secs_f64(),
        s_min.as_secs_f64()
    );
    println!(
        "skopeo copy, then syncfs:     median {:>7.3} s   min {:>7.3} s",
        f_med.as_secs_f64(),
        f_min.as_secs_f64()
    );
    println!(
        "ratio berth/skopeo (median):  {:.2}   (berth/skopeo+syncfs: {:.2})",
        b_med.as_secs_f64() / s_med.as_secs_f64(),
        b_med.as_secs_f64() / f_med.as_secs_f64()
    );
    let _ = fs::remove_dir_all(&work);
}

//! Import timings, run by bench/image/run.sh (ignored in normal test runs; prints figures and
//! checks only that the imports worked, never how fast they were).
//!
//! Images: the busybox layout from scripts/build-busybox-image.sh, and a generated ~50 MB
//! image (two layers of pseudo-random files, part incompressible, part text-like) as an OCI
//! layout (gzip layers), an oci-archive and a docker-archive (uncompressed layers). Every
//! import goes into a fresh store, so it copies blobs, unpacks every layer, fsyncs and
//! syncfs()es for real. For comparison the same layers are unpacked with `unpack_layer` alone
//! (no store, no sync) and with GNU tar.

mod image_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use berth_runtime::image::ImageStore;
use berth_runtime::image::unpack::unpack_layer;
use image_support::*;

const RUNS: usize = 7;

/// xorshift64*: deterministic, fast, good enough to defeat compression.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` bytes: random (incompressible) or words from a small vocabulary (compresses
    /// roughly like source code or logs).
    fn content(&mut self, len: usize, random: bool) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "container",
            "layer",
            "berth",
            "overlay",
            "postgres",
            "etcd",
            "replica",
            "fn",
            "let",
            "return",
            "config",
            "=",
            "{",
            "}",
            "\n",
            "0x1f",
            "error",
            "shard",
            "volume",
            "pod",
        ];
        let mut out = Vec::with_capacity(len + 16);
        if random {
            while out.len() < len {
                out.extend_from_slice(&self.next().to_le_bytes());
            }
        } else {
            while out.len() < len {
                out.extend_from_slice(
                    WORDS[(self.next() % WORDS.len() as u64) as usize].as_bytes(),
                );
                out.push(b' ');
            }
        }
        out.truncate(len);
        out
    }
}

/// Writes `total` bytes of files under `root`, shaped like a distribution image: 97% of the
/// files small (1-16 KiB), the rest large (64 KiB to 2 MiB); `random_share` of the files incompressible;
/// spread over nested directories. Returns the file count.
fn generate_tree(root: &Path, seed: u64, total: usize, random_share: f64) -> usize {
    let mut noise = Noise(seed);
    let mut written = 0;
    let mut files = 0;
    while written < total {
        let size = if noise.next() % 100 < 97 {
            1024 << (noise.next() % 5) // 1 .. 16 KiB
        } else {
            (64 * 1024) << (noise.next() % 6) // 64 KiB .. 2 MiB
        };
        let size = (size as usize).min(total - written).max(1);
        let random = (noise.next() % 1000) as f64 / 1000.0 < random_share;
        let dir = root.join(format!(
            "usr/share/gen{}/d{}",
            noise.next() % 16,
            noise.next() % 32
        ));
        fs::create_dir_all(&dir).unwrap();
        let mut file = fs::File::create(dir.join(format!("f{files}.dat"))).unwrap();
        file.write_all(&noise.content(size, random)).unwrap();
        written += size;
        files += 1;
    }
    files
}

/// CPU time (user + system) used so far by this thread, or by waited-for children.
fn cpu_time(who: UsageWho) -> Duration {
    let usage = getrusage(who).unwrap();
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Duration::from_micros(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Wall-clock and CPU time of one run.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

fn measure(who: UsageWho, f: impl FnOnce()) -> Sample {
    let (wall, cpu) = (Instant::now(), cpu_time(who));
    f();
    Sample {
        wall: wall.elapsed(),
        cpu: cpu_time(who) - cpu,
    }
}

/// Medians and minimums of wall and CPU time, each taken separately. On a busy machine the
/// minimum is the better estimate of the cost itself; the median shows the spread.
fn medians(samples: &[Sample]) -> (Sample, Sample) {
    let median_of = |f: fn(&Sample) -> Duration| median(samples.iter().map(f).collect());
    let min_of = |f: fn(&Sample) -> Duration| samples.iter().map(f).min().unwrap();
    (
        Sample {
            wall: median_of(|s| s.wall),
            cpu: median_of(|s| s.cpu),
        },
        Sample {
            wall: min_of(|s| s.wall),
            cpu: min_of(|s| s.cpu),
        },
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn dir_size(path: &Path) -> u64 {
    let out = run(Command::new("du").args(["-sb"]).arg(path));
    out.split_whitespace().next().unwrap().parse().unwrap()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Imports `source` into `RUNS` fresh stores; returns the medians and checks the result.
fn time_import(scratch: &Path, source: &Path, check: &str) -> (Sample, Sample) {
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let data = scratch.join(format!(
            "store-{}-{run}",
            source.file_name().unwrap().to_string_lossy()
        ));
        let store = ImageStore::open(&data).unwrap();
        let mut records = Vec::new();
        samples.push(measure(UsageWho::RUSAGE_THREAD, || {
            records = store.import(source, Some("bench/image:1")).unwrap();
        }));
        let image = store.resolve("bench/image:1").unwrap();
        assert_eq!(records.len(), 1);
        assert!(
            image.layer_dirs().iter().any(|d| d.join(check).exists()),
            "{check} missing"
        );
        fs::remove_dir_all(&data).unwrap();
    }
    medians(&samples)
}

fn report(name: &str, source_bytes: u64, unpacked_bytes: u64, (median, min): (Sample, Sample)) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<46} {:>5.1} MiB in {:>5.1} MiB out | wall median {:>7.1} ms, min {:>7.1} ms \
         | cpu median {:>7.1} ms, min {:>7.1} ms",
        mib(source_bytes),
        mib(unpacked_bytes),
        ms(median.wall),
        ms(min.wall),
        ms(median.cpu),
        ms(min.cpu),
    );
}

#[test]
#[ignore = "benchmark: run bench/image/run.sh"]
fn import_timings() {
    if !have_tools(&["umoci", "skopeo", "tar"]) {
        return;
    }
    let base = std::env::var_os("BERTH_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into());
    let scratch = tempfile::tempdir_in(base).unwrap();
    let scratch = scratch.path();
    println!(
        "runs per figure: {RUNS}, fresh store each run, scratch on {}",
        scratch.display()
    );

    // busybox
    let busybox = busybox_layout();
    let busybox_in = dir_size(&busybox.join("blobs"));
    let t = time_import(scratch, &busybox, "bin/busybox");
    let probe = ImageStore::open(scratch.join("probe")).unwrap();
    probe.import(&busybox, None).unwrap();
    let busybox_out = dir_size(&scratch.join("probe/images/layers"));
    report(
        "busybox, OCI layout (2 gzip layers)",
        busybox_in,
        busybox_out,
        t,
    );
    let again = measure(UsageWho::RUSAGE_THREAD, || {
        probe.import(&busybox, None).unwrap();
    });
    report(
        "busybox, again into the same store (no-op)",
        busybox_in,
        0,
        (again, again),
    );

    // ~50 MB generated image
    let rootfs1 = scratch.join("rootfs1");
    let rootfs2 = scratch.join("rootfs2");
    let files1 = generate_tree(&rootfs1, 0x5eed_0001, 35 << 20, 0.4);
    let files2 = generate_tree(&rootfs2, 0x5eed_0002, 15 << 20, 0.4);
    let (tar1, tar2) = (scratch.join("l1.tar"), scratch.join("l2.tar"));
    gnu_tar_layer(&rootfs1, &tar1);
    gnu_tar_layer(&rootfs2, &tar2);
    let layout = scratch.join("big-layout");
    umoci_image(&layout, "big", &[tar1.clone(), tar2.clone()]);
    let oci_archive = scratch.join("big-oci.tar");
    let docker_archive = scratch.join("big-docker.tar");
    skopeo_copy(&layout, "big", "oci-archive", &oci_archive, "big");
    skopeo_copy(&layout, "big", "docker-archive", &docker_archive, "big");
    let unpacked = fs::metadata(&tar1).unwrap().len() + fs::metadata(&tar2).unwrap().len();
    println!(
        "generated image: {} files, {:.1} MiB of layer tars, {:.1} MiB gzip-compressed",
        files1 + files2,
        mib(unpacked),
        mib(dir_size(&layout.join("blobs")))
    );
    let check = "usr/share";
    let t = time_import(scratch, &layout, check);
    report(
        "~50 MB, OCI layout (2 gzip layers)",
        dir_size(&layout.join("blobs")),
        unpacked,
        t,
    );
    let t = time_import(scratch, &oci_archive, check);
    report(
        "~50 MB, oci-archive (2 gzip layers)",
        fs::metadata(&oci_archive).unwrap().len(),
        unpacked,
        t,
    );
    let t = time_import(scratch, &docker_archive, check);
    report(
        "~50 MB, docker-archive (2 plain layers)",
        fs::metadata(&docker_archive).unwrap().len(),
        unpacked,
        t,
    );

    // Where the time goes: unpacking alone (decompress + hash + write, no store, no sync),
    // and GNU tar + gzip on the same blobs.
    let manifest = read_blob_json(&layout, &only_manifest(&layout));
    let blobs: Vec<PathBuf> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            layout
                .join("blobs/sha256")
                .join(&l["digest"].as_str().unwrap()["sha256:".len()..])
        })
        .collect();
    let mut ours = Vec::new();
    let mut gnu = Vec::new();
    for run in 0..RUNS {
        let dest = scratch.join(format!("unpack-{run}"));
        ours.push(measure(UsageWho::RUSAGE_THREAD, || {
            for (i, blob) in blobs.iter().enumerate() {
                let dir = dest.join(format!("ours-{i}"));
                fs::create_dir_all(&dir).unwrap();
                let media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
                unpack_layer(fs::File::open(blob).unwrap(), media_type, &dir).unwrap();
            }
        }));
        gnu.push(measure(UsageWho::RUSAGE_CHILDREN, || {
            for (i, blob) in blobs.iter().enumerate() {
                let dir = dest.join(format!("gnu-{i}"));
                fs::create_dir_all(&dir).unwrap();
                run_quiet(
                    Command::new("tar")
                        .arg("-C")
                        .arg(&dir)
                        .arg("-xzf")
                        .arg(blob),
                );
            }
        }));
    }
    let compressed = dir_size(&layout.join("blobs"));
    report(
        "~50 MB, unpack_layer only (no store, no sync)",
        compressed,
        unpacked,
        medians(&ours),
    );
    report(
        "~50 MB, GNU tar -xzf (tar + gzip processes)",
        compressed,
        unpacked,
        medians(&gnu),
    );
}

fn run_quiet(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?}");
}

//! Shared helpers for the image tests: real images made with umoci, skopeo and GNU tar,
//! hand-made layer tars for hostile input, overlay mounts with cleanup guards, and checks that
//! a store holds nothing unexpected.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_runtime::image::digest::sha256_of;
use berth_runtime::image::platform::go_arch;

/// Whether `tool` is on PATH; prints why the calling test is skipped if not.
pub fn have_tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!(
                "SKIPPED: `{tool}` is not installed (apt-get install {tool}); CI installs it"
            );
            return false;
        }
    }
    true
}

/// Runs a command, panicking with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The busybox OCI layout made by scripts/build-busybox-image.sh, built once per machine
/// (the script is idempotent and locks against concurrent runs).
pub fn busybox_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let out = std::env::temp_dir()
                .join("berth-test-images")
                .join("busybox");
            run(Command::new(repo_root().join("scripts/build-busybox-image.sh")).arg(&out));
            out
        })
        .clone()
}

/// `skopeo copy oci:<layout>:<tag> <transport>:<dest>:<name>`.
pub fn skopeo_copy(layout: &Path, tag: &str, transport: &str, dest: &Path, name: &str) {
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("{transport}:{}:{name}", dest.display()),
    ]));
}

/// The OCI (Go) architecture of this host.
pub fn host_arch() -> &'static str {
    go_arch(std::env::consts::ARCH).unwrap()
}

/// Makes an image with umoci in the layout `layout` (created if absent) tagged `tag`, one
/// layer per tar in `layers` (bottom first, uncompressed), config Cmd `sh`.
pub fn umoci_image(layout: &Path, tag: &str, layers: &[PathBuf]) {
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("oci-layout").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    run(Command::new("umoci").args(["new", "--image", &image]));
    for layer in layers {
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(layer));
    }
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        host_arch(),
        "--config.cmd",
        "sh",
    ]));
}

/// A layer tar of the directory `rootfs`, made with GNU tar as image builders do.
pub fn gnu_tar_layer(rootfs: &Path, out: &Path) {
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--format=pax",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

/// Writes raw tar entries (for input GNU tar will not produce, such as `../` names).
pub struct RawTar {
    bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { bytes: Vec::new() }
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        // Set the name bytes directly: set_path refuses `..`, which is the point here.
        let field = &mut header.as_old_mut().name;
        assert!(name.len() < field.len(), "name too long for a raw header");
        field[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(946_684_800);
        header
    }

    fn push(&mut self, mut header: tar::Header, data: &[u8]) -> &mut RawTar {
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut RawTar {
        self.push(Self::header(name, tar::EntryType::Directory, 0, 0o755), &[])
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut RawTar {
        self.push(
            Self::header(name, tar::EntryType::Regular, data.len() as u64, 0o644),
            data,
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        let mut header = Self::header(name, tar::EntryType::Symlink, 0, 0o777);
        let field = &mut header.as_old_mut().linkname;
        field[..target.len()].copy_from_slice(target.as_bytes());
        self.push(header, &[])
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut RawTar {
        let mut header = Self::header(name, tar::EntryType::Link, 0, 0o644);
        let field = &mut header.as_old_mut().linkname;
        field[..target.len()].copy_from_slice(target.as_bytes());
        self.push(header, &[])
    }

    pub fn write(&mut self, path: &Path) {
        let mut bytes = self.bytes.clone();
        bytes.extend(std::iter::repeat_n(0u8, 1024));
        fs::write(path, bytes).unwrap();
    }
}

/// Names (without leading dots) under a directory.
pub fn names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Everything a store holds: blob names, layer names, references, and any other file.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreContents {
    pub blobs: BTreeSet<String>,
    pub layers: BTreeSet<String>,
    pub references: BTreeSet<String>,
    pub top_level: BTreeSet<String>,
}

pub fn store_contents(data_dir: &Path) -> StoreContents {
    let images = data_dir.join("images");
    let references = match fs::read(images.join("index.json")) {
        Ok(bytes) => {
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            value["references"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        }
        Err(_) => BTreeSet::new(),
    };
    StoreContents {
        blobs: names(&images.join("blobs/sha256")),
        layers: names(&images.join("layers/sha256")),
        references,
        top_level: names(&images),
    }
}

/// Asserts a store holds nothing but its empty skeleton (no blobs, layers, references or
/// temporary files).
pub fn assert_store_empty(data_dir: &Path) {
    let contents = store_contents(data_dir);
    assert!(
        contents.blobs.is_empty(),
        "blobs left behind: {:?}",
        contents.blobs
    );
    assert!(
        contents.layers.is_empty(),
        "layers left behind: {:?}",
        contents.layers
    );
    assert!(
        contents.references.is_empty(),
        "references left behind: {:?}",
        contents.references
    );
    let allowed: BTreeSet<String> = ["blobs", "layers", "lock", "index.json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        contents.top_level.is_subset(&allowed),
        "unexpected files: {:?}",
        contents.top_level
    );
}

/// An overlay mount of `lower` (top first) at `<dir>/merged`, unmounted on drop.
pub struct OverlayMount {
    pub merged: PathBuf,
}

impl OverlayMount {
    pub fn new(lower: &[PathBuf], dir: &Path) -> OverlayMount {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap();
        }
        let lowerdir: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir.join(":"),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {options}: {e}"));
        OverlayMount { merged }
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.merged, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Rewrites a JSON blob of an OCI layout through `edit`, stores it under its new digest and
/// returns that digest and size. The old blob stays.
pub fn rewrite_blob(
    layout: &Path,
    digest: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (String, u64) {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let mut value: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    edit(&mut value);
    let bytes = serde_json::to_vec(&value).unwrap();
    let new = sha256_of(&bytes).to_string();
    fs::write(
        layout
            .join("blobs/sha256")
            .join(new.strip_prefix("sha256:").unwrap()),
        &bytes,
    )
    .unwrap();
    (new, bytes.len() as u64)
}

/// Stores raw bytes as a blob of an OCI layout; returns the digest.
pub fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256_of(bytes).to_string();
    let mut file = fs::File::create(
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    file.write_all(bytes).unwrap();
    digest
}

/// The manifest digest of the only image in a layout's index.json.
pub fn only_manifest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    manifests[0]["digest"].as_str().unwrap().to_owned()
}

/// Reads a JSON blob of a layout.
pub fn read_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// Points the layout's only index entry at a new manifest.
pub fn set_only_manifest(layout: &Path, digest: &str, size: u64) {
    let path = layout.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = digest.into();
    index["manifests"][0]["size"] = size.into();
    fs::write(path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Copies a directory tree (an OCI layout) with `cp -a`.
pub fn copy_tree(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Reads an extended attribute without following a final symlink; `None` if absent.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and outlive the call; `buf` is writable for
    // the length passed.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Builds a one-image OCI layout with umoci from uncompressed layer tars (bottom first),
/// imports it into `store` and returns the resolved image.
pub fn import_layers(
    store: &berth_runtime::image::ImageStore,
    work: &Path,
    layers: &[PathBuf],
) -> Result<berth_runtime::image::Image, berth_runtime::image::StoreError> {
    let layout = work.join(format!("layout-{}", layers.len()));
    umoci_image(&layout, "test", layers);
    store.import(&layout, Some("berth.test/layers:1"))?;
    store.resolve("berth.test/layers:1")
}

/// The whole error chain, `: `-separated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

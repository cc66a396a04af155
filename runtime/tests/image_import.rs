//! Importing real images made by umoci and skopeo: the busybox OCI layout from
//! scripts/build-busybox-image.sh and its oci-archive and docker-archive forms. Needs root
//! (ownership, device nodes, overlay mounts).

mod image_support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::image::{ImageStore, StoreError};
use image_support::*;

const BUSYBOX: &str = "docker.io/library/busybox:latest";

#[test]
fn busybox_layout_imports_into_layer_dirs_that_form_a_working_tree() {
    if !have_tools(&["umoci", "chroot"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let records = store.import(busybox_layout(), None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].references, [BUSYBOX]);
    assert_eq!(
        records[0].manifest_digest.to_string(),
        only_manifest(&busybox_layout())
    );

    let image = store.resolve("busybox").unwrap();
    assert_eq!(image.config.cmd, ["sh"]);
    assert_eq!(image.config.env, ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/"));
    assert_eq!(image.platform.os, "linux");
    let dirs = image.layer_dirs();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let (etc_layer, busybox_layer) = (&dirs[0], &dirs[1]);

    // Bottom layer: busybox and absolute applet symlinks.
    let busybox = fs::metadata(busybox_layer.join("bin/busybox")).unwrap();
    assert!(busybox.is_file() && busybox.permissions().mode() & 0o111 != 0);
    assert_eq!(
        fs::read_link(busybox_layer.join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(busybox_layer.join("usr/bin/wc")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert!(!busybox_layer.join("etc").exists());
    // Top layer: /etc with a non-root user, ownership and sticky /tmp preserved.
    let passwd = fs::read_to_string(etc_layer.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000:"), "{passwd}");
    let home = fs::metadata(etc_layer.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert_eq!(
        fs::metadata(etc_layer.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(etc_layer.join("etc/passwd")).unwrap().mtime(),
        946_684_800
    );

    // Mounted as a container rootfs, the shell runs and sees both layers.
    let mount_dir = tempfile::tempdir().unwrap();
    let mount = OverlayMount::new(&dirs, mount_dir.path());
    let out = run(Command::new("chroot").arg(&mount.merged).args([
        "/bin/sh",
        "-c",
        "id -u app && cat /www/index.html | wc -l && ls /bin | wc -l",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(lines[1], "2", "{out}");
    assert!(lines[2].parse::<u32>().unwrap() > 50, "{out}");
}

#[test]
fn oci_archive_and_docker_archive_of_the_same_image_share_its_layers() {
    if !have_tools(&["umoci", "skopeo"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let oci_archive = work.path().join("busybox-oci.tar");
    let docker_archive = work.path().join("busybox-docker.tar");
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "oci-archive",
        &oci_archive,
        "busybox:1.35",
    );
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "docker-archive",
        &docker_archive,
        "example.com/tools/busybox:2",
    );

    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let from_layout = store.import(busybox_layout(), None).unwrap();
    let from_oci = store.import(&oci_archive, None).unwrap();
    let from_docker = store.import(&docker_archive, None).unwrap();

    // The oci-archive carries the same manifest; the docker-archive gets a manifest written
    // for its (uncompressed) layers, with the same diffIDs.
    assert_eq!(from_oci[0].manifest_digest, from_layout[0].manifest_digest);
    assert_eq!(
        from_oci[0].references,
        ["docker.io/library/busybox:1.35", BUSYBOX],
        "both names now point at the layout's image"
    );
    assert_ne!(
        from_docker[0].manifest_digest,
        from_layout[0].manifest_digest
    );
    assert_eq!(from_docker[0].references, ["example.com/tools/busybox:2"]);
    assert_eq!(
        from_docker[0].config_digest, from_layout[0].config_digest,
        "same image id"
    );

    let contents = store_contents(data.path());
    assert_eq!(
        contents.layers.len(),
        2,
        "layers shared: {:?}",
        contents.layers
    );
    let docker_image = store.resolve("example.com/tools/busybox:2").unwrap();
    let layout_image = store.resolve("busybox:latest").unwrap();
    assert_eq!(docker_image.layer_dirs(), layout_image.layer_dirs());
    assert!(docker_image.layer_dirs()[1].join("bin/busybox").is_file());
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn gzip_and_zstd_compressed_archives_import_like_plain_ones() {
    if !have_tools(&["umoci", "skopeo", "gzip", "zstd"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let docker_archive = work.path().join("busybox-docker.tar");
    let oci_archive = work.path().join("busybox-oci.tar");
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "docker-archive",
        &docker_archive,
        "busybox:gz",
    );
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "oci-archive",
        &oci_archive,
        "busybox:zst",
    );
    // As `docker save | gzip` and `zstd` would leave them.
    run(Command::new("gzip").arg(&docker_archive));
    run(Command::new("zstd").arg("-q").arg("--rm").arg(&oci_archive));

    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let gz = store
        .import(work.path().join("busybox-docker.tar.gz"), None)
        .unwrap();
    let zst = store
        .import(work.path().join("busybox-oci.tar.zst"), None)
        .unwrap();
    assert_eq!(gz[0].references, ["docker.io/library/busybox:gz"]);
    assert_eq!(zst[0].references, ["docker.io/library/busybox:zst"]);
    assert_eq!(
        zst[0].manifest_digest.to_string(),
        only_manifest(&busybox_layout())
    );
    let contents = store_contents(data.path());
    assert_eq!(contents.layers.len(), 2);
    // The decompressed copy was an unnamed file: nothing is left beside the store.
    let allowed = ["blobs", "layers", "lock", "index.json"];
    assert!(
        contents
            .top_level
            .iter()
            .all(|n| allowed.contains(&n.as_str())),
        "{contents:?}"
    );
}

#[test]
fn importing_the_same_image_twice_changes_nothing() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let first = store.import(busybox_layout(), None).unwrap();
    let before = store_contents(data.path());
    let layer = store.resolve("busybox").unwrap().layer_dirs()[0].clone();
    let inode = fs::metadata(&layer).unwrap().ino();
    let second = store.import(busybox_layout(), None).unwrap();
    assert_eq!(first, second);
    assert_eq!(store_contents(data.path()), before);
    assert_eq!(
        fs::metadata(&layer).unwrap().ino(),
        inode,
        "layer was not unpacked again"
    );
}

#[test]
fn an_explicit_name_overrides_the_layout_annotation() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let records = store
        .import(busybox_layout(), Some("localhost:5000/demo/bb:v1"))
        .unwrap();
    assert_eq!(records[0].references, ["localhost:5000/demo/bb:v1"]);
    assert!(matches!(
        store.resolve("busybox"),
        Err(StoreError::NotFound { .. })
    ));
    let err = store
        .import(busybox_layout(), Some("not a name"))
        .unwrap_err();
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot import {}: image index.json manifests[0] ({}) has an invalid name: \
             invalid image reference \"not a name\": invalid reference format",
            busybox_layout().display(),
            only_manifest(&busybox_layout())
        )
    );
}

#[test]
fn images_resolve_by_reference_digest_and_id_prefix() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let record = store.import(busybox_layout(), None).unwrap().remove(0);
    let manifest = record.manifest_digest.to_string();
    let config_hex = record.config_digest.digest().to_owned();
    for reference in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
        &format!("busybox@{manifest}"),
        &manifest,
        &manifest["sha256:".len()..][..12],
        &config_hex[..8],
        record.id(),
    ] {
        let image = store
            .resolve(reference)
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(image.manifest_digest, record.manifest_digest, "{reference}");
        assert_eq!(image.references, [BUSYBOX]);
    }
    for missing in ["busybox:1.0", "other", "ffffffffffff"] {
        let err = store.resolve(missing).unwrap_err();
        assert_eq!(err.to_string(), format!("image {missing:?} not found"));
    }
    let err = store.resolve("Bad Reference").unwrap_err();
    assert_eq!(err.to_string(), "invalid image reference \"Bad Reference\"");
}

#[test]
fn remove_drops_the_reference_and_prune_drops_unused_content() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    store.import(busybox_layout(), None).unwrap();
    let image = store.resolve("busybox").unwrap();
    store
        .import(busybox_layout(), Some("mirror/busybox"))
        .unwrap();

    assert_eq!(store.remove("busybox").unwrap(), [BUSYBOX]);
    assert!(store.resolve("busybox").is_err());
    // Still named by the other reference: nothing to prune.
    let report = store.prune(&[]).unwrap();
    assert!(
        report.blobs.is_empty() && report.layers.is_empty(),
        "{report:?}"
    );

    assert_eq!(
        store.remove(image.id()).unwrap(),
        ["docker.io/mirror/busybox:latest"]
    );
    assert!(store.list().unwrap().is_empty());
    // A running container still uses the image: its content stays.
    let report = store
        .prune(std::slice::from_ref(&image.manifest_digest))
        .unwrap();
    assert!(
        report.blobs.is_empty() && report.layers.is_empty(),
        "{report:?}"
    );
    assert!(image.layer_dirs().iter().all(|d| d.is_dir()));
    // Once nothing uses it, everything goes.
    let report = store.prune(&[]).unwrap();
    assert_eq!(
        (report.blobs.len(), report.layers.len()),
        (4, 2),
        "{report:?}"
    );
    assert!(report.blob_bytes > 1_000_000);
    assert_store_empty(data.path());
    assert!(matches!(
        store.remove("busybox"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn concurrent_imports_of_the_same_image_both_succeed_and_leave_one_copy() {
    if !have_tools(&["umoci", "skopeo"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("busybox.tar");
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "oci-archive",
        &archive,
        "busybox:latest",
    );
    let data = tempfile::tempdir().unwrap();
    let layout = busybox_layout();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = [
            layout.clone(),
            archive.clone(),
            layout.clone(),
            archive.clone(),
        ]
        .into_iter()
        .map(|source| {
            let data = data.path().to_owned();
            // Each thread opens its own store handle, as a second agent process would.
            scope.spawn(move || {
                ImageStore::open(&data)
                    .unwrap()
                    .import(&source, None)
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in &results {
        let records = result.as_ref().unwrap();
        assert_eq!(records[0].references, [BUSYBOX]);
    }
    let contents = store_contents(data.path());
    assert_eq!(contents.blobs.len(), 4, "{contents:?}");
    assert_eq!(contents.layers.len(), 2, "{contents:?}");
    assert_eq!(contents.references.len(), 1);
    assert!(
        contents.top_level.iter().all(|n| !n.starts_with('.')),
        "{contents:?}"
    );
    let store = ImageStore::open(data.path()).unwrap();
    assert!(
        store.resolve("busybox").unwrap().layer_dirs()[1]
            .join("bin/busybox")
            .is_file()
    );
}

/// A tar laid out like `docker save` from Docker 25 on: an OCI layout whose index.json names
/// the image with containerd's annotation (full name) and a bare tag, plus a manifest.json
/// pointing at the same blobs.
fn docker25_save(work: &Path, with_oci_layout: bool) -> PathBuf {
    let dir = work.join(format!("docker25-{with_oci_layout}"));
    copy_tree(&busybox_layout(), &dir);
    let manifest_digest = only_manifest(&dir);
    let manifest = read_blob_json(&dir, &manifest_digest);
    let blob =
        |d: &serde_json::Value| format!("blobs/sha256/{}", &d.as_str().unwrap()["sha256:".len()..]);
    let docker_manifest = serde_json::json!([{
        "Config": blob(&manifest["config"]["digest"]),
        "RepoTags": ["busybox:1.36"],
        "Layers": manifest["layers"].as_array().unwrap().iter().map(|l| blob(&l["digest"])).collect::<Vec<_>>(),
    }]);
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["annotations"] = serde_json::json!({
        "io.containerd.image.name": "docker.io/library/busybox:1.36",
        "org.opencontainers.image.ref.name": "1.36",
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::remove_file(dir.join(".berth-busybox-image")).unwrap();
    if !with_oci_layout {
        fs::remove_file(dir.join("oci-layout")).unwrap();
    }
    let archive = work.join(format!("docker25-{with_oci_layout}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    archive
}

#[test]
fn docker_save_archives_with_an_oci_layout_are_read_as_oci() {
    if !have_tools(&["umoci", "tar"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();

    // The OCI part wins: same manifest as the layout, named by containerd's annotation.
    let both = store
        .import(docker25_save(work.path(), true), None)
        .unwrap();
    assert_eq!(
        both[0].manifest_digest.to_string(),
        only_manifest(&busybox_layout())
    );
    assert_eq!(both[0].references, ["docker.io/library/busybox:1.36"]);

    // Without oci-layout it is a plain docker-archive whose layers are gzip blobs.
    let docker = store
        .import(docker25_save(work.path(), false), Some("busybox:docker"))
        .unwrap();
    assert_ne!(docker[0].manifest_digest, both[0].manifest_digest);
    assert_eq!(docker[0].config_digest, both[0].config_digest);
    assert_eq!(
        store.resolve("busybox:docker").unwrap().layer_dirs(),
        store.resolve("busybox:1.36").unwrap().layer_dirs()
    );
    assert_eq!(store_contents(data.path()).layers.len(), 2);
}

#[test]
fn a_layout_with_several_images_imports_them_all_and_refuses_a_single_name() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    copy_tree(&busybox_layout(), &layout);
    // A second, empty image beside busybox, named with a full reference.
    umoci_image(&layout, "registry.example.com/team/empty:v1", &[]);

    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let err = store.import(&layout, Some("one-name")).unwrap_err();
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot import {}: the source holds 2 images; a name can only be given when it holds one",
            layout.display()
        )
    );
    assert_store_empty(data.path());

    let records = store.import(&layout, None).unwrap();
    let mut names: Vec<&str> = records.iter().map(|r| r.references[0].as_str()).collect();
    names.sort();
    assert_eq!(names, [BUSYBOX, "registry.example.com/team/empty:v1"]);
    let empty = store.resolve("registry.example.com/team/empty:v1").unwrap();
    assert!(empty.layer_dirs().is_empty());
    assert_eq!(empty.config.cmd, ["sh"]);
}

//! Bad input: every failure names what was wrong and leaves the store exactly as it was (no
//! half layer, no index entry, no blob, no temporary file). Inputs are the busybox layout from
//! scripts/build-busybox-image.sh and skopeo/tar conversions of it, damaged on purpose.

mod image_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_runtime::image::digest::sha256_of;
use berth_runtime::image::source::SourceError;
use berth_runtime::image::unpack::UnpackError;
use berth_runtime::image::{ImageStore, StoreError};
use image_support::*;

/// A private copy of the busybox layout that a test may damage.
fn layout_copy(work: &Path) -> PathBuf {
    let copy = work.join("layout");
    fs::create_dir_all(work).unwrap();
    copy_tree(&busybox_layout(), &copy);
    copy
}

/// The manifest of the layout's only image.
fn manifest(layout: &Path) -> serde_json::Value {
    read_blob_json(layout, &only_manifest(layout))
}

/// Rewrites the layout's manifest through `edit` and points index.json at the result.
fn edit_manifest(layout: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let (digest, size) = rewrite_blob(layout, &only_manifest(layout), edit);
    set_only_manifest(layout, &digest, size);
    digest
}

/// Imports `path` into a fresh store, expecting failure; checks the store stayed empty.
fn import_fails(path: &Path, name: Option<&str>) -> StoreError {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let err = store.import(path, name).expect_err("import should fail");
    assert_store_empty(data.path());
    assert!(store.list().unwrap().is_empty());
    err
}

#[test]
fn inputs_that_are_not_images_are_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let random = work.path().join("random.bin");
    let mut bytes = vec![0u8; 4096];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    fs::write(&random, &bytes).unwrap();
    let empty_tar = work.path().join("empty.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&empty_tar)
        .args(["-T", "/dev/null"]));
    let plain_tar = work.path().join("files.tar");
    fs::write(work.path().join("hello.txt"), "hi").unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(work.path())
        .arg("-cf")
        .arg(&plain_tar)
        .arg("hello.txt"));
    let gzipped = work.path().join("files.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fs::read(&plain_tar).unwrap()).unwrap();
    fs::write(&gzipped, gz.finish().unwrap()).unwrap();
    let truncated_gz = work.path().join("truncated.tar.gz");
    let gz_bytes = fs::read(&gzipped).unwrap();
    fs::write(&truncated_gz, &gz_bytes[..gz_bytes.len() / 2]).unwrap();
    let missing = work.path().join("does-not-exist.tar");

    let table: Vec<(&Path, String)> = vec![
        (
            &random,
            format!(
                "cannot import {0}: {0} is not a readable tar archive",
                random.display()
            ),
        ),
        (
            &empty_tar,
            format!(
                "cannot import {0}: {0} is not an OCI image layout, oci-archive or docker-archive (found neither oci-layout with index.json nor manifest.json)",
                empty_tar.display()
            ),
        ),
        (
            &plain_tar,
            format!(
                "cannot import {0}: {0} is not an OCI image layout, oci-archive or docker-archive (found neither oci-layout with index.json nor manifest.json)",
                plain_tar.display()
            ),
        ),
        (
            &gzipped,
            format!(
                "cannot import {0}: {0} is not an OCI image layout, oci-archive or docker-archive (found neither oci-layout with index.json nor manifest.json)",
                gzipped.display()
            ),
        ),
        (
            &truncated_gz,
            format!(
                "cannot import {0}: cannot decompress {0} (gzip): incomplete deflate stream",
                truncated_gz.display()
            ),
        ),
        (
            &missing,
            format!(
                "cannot import {0}: cannot open {0}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            work.path(),
            format!(
                "cannot import {0}: {0} is not an OCI image layout, oci-archive or docker-archive (found neither oci-layout with index.json nor manifest.json)",
                work.path().display()
            ),
        ),
    ];
    for (path, want) in table {
        let err = import_fails(path, None);
        assert!(
            error_chain(&err).starts_with(&want),
            "{}\nwanted: {want}",
            error_chain(&err)
        );
    }
}

#[test]
fn a_truncated_archive_is_refused_and_leaves_nothing() {
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
    let bytes = fs::read(&archive).unwrap();
    // Cut inside the big busybox layer blob.
    fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let err = import_fails(&archive, None);
    let StoreError::Import { source, .. } = &err else {
        panic!("unexpected error: {}", error_chain(&err));
    };
    assert!(
        matches!(**source, SourceError::Malformed { .. }),
        "{source:?}"
    );
    assert!(
        error_chain(&err).contains("is not a readable tar archive"),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn a_truncated_layer_fails_naming_the_layer_and_leaves_no_half_layer() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let original = manifest(&layout);
    let layer = original["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = fs::read(layout.join("blobs/sha256").join(&layer["sha256:".len()..])).unwrap();
    // A consistent manifest for the cut blob, so only the gzip stream itself is broken.
    let truncated = put_blob(&layout, &blob[..blob.len() / 2]);
    let manifest_digest = edit_manifest(&layout, |m| {
        m["layers"][0]["digest"] = truncated.clone().into();
        m["layers"][0]["size"] = (blob.len() / 2).into();
    });
    let err = import_fails(&layout, None);
    let StoreError::Layer {
        layer,
        manifest,
        source: UnpackError::Read { .. },
    } = &err
    else {
        panic!("unexpected error: {}", error_chain(&err));
    };
    assert_eq!(
        (layer.to_string(), manifest.to_string()),
        (truncated.clone(), manifest_digest.clone())
    );
    assert!(
        error_chain(&err).starts_with(&format!(
            "cannot unpack layer {truncated} of image {manifest_digest}: cannot read the layer archive"
        )),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn a_layer_whose_digest_does_not_match_is_refused_naming_the_blob() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let layer = manifest(&layout)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = layout.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let err = import_fails(&layout, None);
    assert_eq!(
        err.to_string(),
        format!(
            "blobs/sha256/{} in {} has digest {}, but {layer} was expected",
            &layer["sha256:".len()..],
            layout.display(),
            sha256_of(&bytes)
        )
    );
}

#[test]
fn a_blob_longer_or_shorter_than_its_descriptor_is_refused() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let size = manifest(&layout)["layers"][1]["size"].as_u64().unwrap();
    edit_manifest(&layout, |m| m["layers"][1]["size"] = (size - 10).into());
    let err = import_fails(&layout, None);
    assert!(
        err.to_string().ends_with(&format!(
            "is {size} bytes long, but {} bytes were expected",
            size - 10
        )),
        "{err}"
    );
}

#[test]
fn a_diff_id_mismatch_rolls_back_layers_already_unpacked() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let config = manifest(&layout)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = sha256_of(b"not the layer").to_string();
    let (new_config, size) = rewrite_blob(&layout, &config, |c| {
        c["rootfs"]["diff_ids"][1] = wrong.clone().into()
    });
    edit_manifest(&layout, |m| {
        m["config"]["digest"] = new_config.into();
        m["config"]["size"] = size.into();
    });
    let layer = manifest(&layout)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Layer 0 is unpacked before layer 1 fails; the rollback removes it.
    let err = import_fails(&layout, None);
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("layer {layer} unpacks to diffID sha256:")),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with(&format!("but the image config says {wrong}")),
        "{err}"
    );
}

#[test]
fn a_missing_blob_is_named() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for which in ["config", "layer"] {
        let layout = layout_copy(&work.path().join(which));
        let m = manifest(&layout);
        let digest = match which {
            "config" => m["config"]["digest"].as_str().unwrap().to_owned(),
            _ => m["layers"][0]["digest"].as_str().unwrap().to_owned(),
        };
        fs::remove_file(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
        let err = import_fails(&layout, None);
        assert_eq!(
            error_chain(&err),
            format!(
                "cannot import {}: blob {digest} is missing",
                layout.display()
            ),
            "{which}"
        );
    }
}

#[test]
fn a_docker_archive_missing_a_layer_file_names_it() {
    if !have_tools(&["umoci", "skopeo", "tar"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("busybox.tar");
    skopeo_copy(
        &busybox_layout(),
        "busybox:latest",
        "docker-archive",
        &archive,
        "busybox:latest",
    );
    let extracted = work.path().join("extracted");
    fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&extracted)
        .arg("-xf")
        .arg(&archive));
    let entries: serde_json::Value =
        serde_json::from_slice(&fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    let layer_file = entries[0]["Layers"][1].as_str().unwrap().to_owned();
    fs::remove_file(extracted.join(&layer_file)).unwrap();
    let damaged = work.path().join("damaged.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&extracted)
        .arg("-cf")
        .arg(&damaged)
        .arg("."));
    let err = import_fails(&damaged, None);
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot import {}: {layer_file} is missing",
            damaged.display()
        )
    );
}

#[test]
fn an_index_without_this_hosts_platform_fails_listing_what_it_offers() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let manifest_digest = only_manifest(&layout);
    let manifest_size = fs::metadata(
        layout
            .join("blobs/sha256")
            .join(&manifest_digest["sha256:".len()..]),
    )
    .unwrap()
    .len();
    let index_with = |platforms: &[(&str, &str)]| {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .map(|(os, arch)| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        let digest = put_blob(&layout, &bytes);
        let path = layout.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        index["manifests"][0]["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
        index["manifests"][0]["digest"] = digest.into();
        index["manifests"][0]["size"] = bytes.len().into();
        fs::write(path, serde_json::to_vec(&index).unwrap()).unwrap();
    };

    index_with(&[
        ("linux", "arm64"),
        ("linux", "s390x"),
        ("windows", host_arch()),
    ]);
    let err = import_fails(&layout, None);
    assert_eq!(
        error_chain(&err),
        format!(
            "cannot import {}: the image is for linux/arm64, linux/s390x, windows/{1}, \
             not this host's platform linux/{1}",
            layout.display(),
            host_arch()
        )
    );

    // With the host's platform among others, that manifest is chosen and named as before.
    index_with(&[("linux", "arm64"), ("linux", host_arch())]);
    let data = tempfile::tempdir().unwrap();
    let records = ImageStore::open(data.path())
        .unwrap()
        .import(&layout, None)
        .unwrap();
    assert_eq!(records[0].manifest_digest.to_string(), manifest_digest);
    assert_eq!(records[0].references, ["docker.io/library/busybox:latest"]);
}

#[test]
fn an_image_built_for_another_architecture_is_refused() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let config = manifest(&layout)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let (new_config, size) = rewrite_blob(&layout, &config, |c| c["architecture"] = other.into());
    let manifest_digest = edit_manifest(&layout, |m| {
        m["config"]["digest"] = new_config.into();
        m["config"]["size"] = size.into();
    });
    let err = import_fails(&layout, None);
    assert_eq!(
        err.to_string(),
        format!(
            "image {manifest_digest} is for linux/{other}, not this host's platform {}",
            berth_runtime::image::Platform::host()
        )
    );
}

#[test]
fn a_corrupt_index_json_is_named() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = layout_copy(work.path());
    fs::write(
        layout.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    let err = import_fails(&layout, None);
    assert!(
        error_chain(&err).starts_with(&format!(
            "cannot import {}: index.json is not valid JSON of the expected shape: EOF",
            layout.display()
        )),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn a_failed_import_leaves_existing_images_untouched() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    store.import(busybox_layout(), None).unwrap();
    let before = store_contents(data.path());
    let image = store.resolve("busybox").unwrap();

    // Same layers, and a new one whose diffID is wrong.
    let work = tempfile::tempdir().unwrap();
    let extra = work.path().join("extra.tar");
    RawTar::new().file("extra", b"extra layer").write(&extra);
    let layout = layout_copy(work.path());
    run(Command::new("umoci")
        .args([
            "raw",
            "add-layer",
            "--image",
            &format!("{}:busybox:latest", layout.display()),
        ])
        .arg(&extra));
    let config = manifest(&layout)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let (new_config, size) = rewrite_blob(&layout, &config, |c| {
        c["rootfs"]["diff_ids"][2] = sha256_of(b"wrong").to_string().into()
    });
    let (new_manifest, manifest_size) = rewrite_blob(&layout, &only_manifest(&layout), |m| {
        m["config"]["digest"] = new_config.into();
        m["config"]["size"] = size.into();
    });
    set_only_manifest(&layout, &new_manifest, manifest_size);

    let err = store.import(&layout, Some("busybox:broken")).unwrap_err();
    assert!(matches!(err, StoreError::DiffIdMismatch { .. }), "{err}");
    assert_eq!(store_contents(data.path()), before);
    assert_eq!(store.resolve("busybox").unwrap(), image);
    assert!(image.layer_dirs().iter().all(|d| d.join(".").is_dir()));
}

#[test]
fn leftovers_of_an_interrupted_import_are_swept_by_the_next_writer() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    // What a crash mid-import leaves: a temporary blob and a half-unpacked layer.
    let blobs = data.path().join("images/blobs/sha256");
    let layers = data.path().join("images/layers/sha256");
    fs::write(blobs.join(".tmp-blob-999999-0"), b"partial").unwrap();
    fs::create_dir_all(layers.join(".tmp-layer-999999-1/usr/bin")).unwrap();
    fs::write(layers.join(".tmp-layer-999999-1/usr/bin/half"), b"").unwrap();
    assert!(store.list().unwrap().is_empty(), "leftovers are not images");

    store.import(busybox_layout(), None).unwrap();
    let contents = store_contents(data.path());
    assert!(
        contents.blobs.iter().all(|n| !n.starts_with('.')),
        "{contents:?}"
    );
    assert!(
        contents.layers.iter().all(|n| !n.starts_with('.')),
        "{contents:?}"
    );
    assert_eq!((contents.blobs.len(), contents.layers.len()), (4, 2));
}

#[test]
fn a_blob_never_becomes_visible_unless_it_matches_its_digest() {
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let content = b"layer bytes from a registry";
    let digest = sha256_of(content);
    {
        let mut ingest = store.begin_ingest().unwrap();
        // Wrong bytes for the digest: refused, nothing stored.
        let err = ingest
            .write_blob(Some(&digest), None, &mut &b"tampered"[..], "registry blob")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "registry blob has digest {}, but {digest} was expected",
                sha256_of(b"tampered")
            )
        );
        assert!(!ingest.has_blob(&digest));
        // A writer dropped midway (connection lost): nothing stored.
        let mut writer = ingest
            .blob_writer(Some(&digest), Some(content.len() as u64), "registry blob")
            .unwrap();
        writer.write_all(&content[..5]).unwrap();
        drop(writer);
        // Too many bytes fail as soon as they overflow.
        let mut writer = ingest
            .blob_writer(Some(&digest), Some(5), "registry blob")
            .unwrap();
        assert!(writer.write_all(content).is_err());
        drop(writer);
        // The right bytes are stored; dropping the ingest without commit removes them again.
        let (stored, size) = ingest
            .write_blob(Some(&digest), None, &mut &content[..], "registry blob")
            .unwrap();
        assert_eq!((stored, size), (digest.clone(), content.len() as u64));
        assert!(ingest.has_blob(&digest));
    }
    assert_store_empty(data.path());

    let mut ingest = store.begin_ingest().unwrap();
    ingest
        .write_blob(Some(&digest), None, &mut &content[..], "registry blob")
        .unwrap();
    assert!(ingest.commit().unwrap().is_empty());
    let mut stored = Vec::new();
    std::io::Read::read_to_end(&mut store.open_blob(&digest).unwrap(), &mut stored).unwrap();
    assert_eq!(stored, content);
}

#[test]
fn resolving_an_image_whose_layer_dir_is_gone_says_so() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    store.import(busybox_layout(), None).unwrap();
    let image = store.resolve("busybox").unwrap();
    fs::remove_dir_all(&image.layer_dirs()[0]).unwrap();
    let err = store.resolve("busybox").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "layer {} of image {} is not unpacked in the store; import the image again",
            image.diff_ids[1], image.manifest_digest
        )
    );
    // Importing again restores it.
    store.import(busybox_layout(), None).unwrap();
    assert_eq!(store.resolve("busybox").unwrap(), image);
}

//! Layer unpacking with real tars, real files and real overlay mounts: whiteouts, opaque
//! directories, replacements, special files, metadata, compression, and hostile paths.
//! Needs root (mknod, chown, trusted xattrs, mount).

mod image_support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_runtime::image::unpack::{UnpackError, unpack_layer};
use berth_runtime::image::{ImageStore, StoreError};
use image_support::*;

/// Writes `files` (path, content) under `root`, creating parents.
fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
}

#[test]
fn whiteouts_and_opaque_dirs_become_overlay_whiteouts_in_the_merged_view() {
    if !have_tools(&["umoci", "tar"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (lower, upper) = (work.path().join("rootfs1"), work.path().join("rootfs2"));
    write_tree(
        &lower,
        &[
            ("etc/keep", "kept"),
            ("etc/gone", "deleted by layer 2"),
            ("data/old1", "hidden by opaque"),
            ("data/sub/old2", "hidden by opaque"),
            ("was-file", "becomes a directory"),
            ("was-dir/child", "directory becomes a file"),
        ],
    );
    // Layer 2, in the OCI representation: `.wh.<name>` deletes, `.wh..wh..opq` makes opaque.
    write_tree(
        &upper,
        &[
            ("etc/.wh.gone", ""),
            ("data/.wh..wh..opq", ""),
            ("data/new", "added with the opaque marker"),
            ("was-file/inside", "now a directory"),
            ("was-dir", "now a file"),
        ],
    );
    gnu_tar_layer(&lower, &work.path().join("l1.tar"));
    gnu_tar_layer(&upper, &work.path().join("l2.tar"));

    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let image = import_layers(
        &store,
        work.path(),
        &[work.path().join("l1.tar"), work.path().join("l2.tar")],
    )
    .unwrap();
    let dirs = image.layer_dirs();
    let top = &dirs[0];

    let whiteout = fs::symlink_metadata(top.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
    assert_eq!(whiteout.rdev(), 0);
    assert!(!top.join("etc/.wh.gone").exists());
    assert_eq!(
        get_xattr(&top.join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("data/.wh..wh..opq").exists());

    let mount_dir = tempfile::tempdir().unwrap();
    let mount = OverlayMount::new(&dirs, mount_dir.path());
    let merged = &mount.merged;
    assert_eq!(fs::read_to_string(merged.join("etc/keep")).unwrap(), "kept");
    assert!(
        !merged.join("etc/gone").exists(),
        "whiteout hides the lower file"
    );
    assert_eq!(names(&merged.join("data")), ["new".to_owned()].into());
    assert_eq!(
        fs::read_to_string(merged.join("was-file/inside")).unwrap(),
        "now a directory"
    );
    assert_eq!(
        fs::read_to_string(merged.join("was-dir")).unwrap(),
        "now a file"
    );
}

#[test]
fn special_files_keep_their_type_owner_mode_times_and_xattrs() {
    let work = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_size(0);
        h
    };
    let mut h = header(tar::EntryType::Directory, 0o750, 33, 33, 1_100_000_000);
    builder.append_data(&mut h, "srv/", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o640, 1234, 5678, 1_000_000_000);
    h.set_size(5);
    builder
        .append_pax_extensions([("SCHILY.xattr.user.berth", &b"hello"[..])])
        .unwrap();
    builder
        .append_data(&mut h, "srv/data", &b"bytes"[..])
        .unwrap();
    let mut h = header(tar::EntryType::Link, 0o640, 1234, 5678, 1_000_000_000);
    builder
        .append_link(&mut h, "srv/data-link", "srv/data")
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 0o4755, 0, 0, 1_000_000_000);
    h.set_size(2);
    builder.append_data(&mut h, "bin/suid", &b"#!"[..]).unwrap();
    let mut h = header(tar::EntryType::Char, 0o666, 0, 0, 1_000_000_000);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    builder.append_data(&mut h, "dev/null", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Block, 0o660, 0, 6, 1_000_000_000);
    h.set_device_major(7).unwrap();
    h.set_device_minor(200).unwrap();
    builder.append_data(&mut h, "dev/loop200", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Fifo, 0o620, 0, 0, 1_000_000_000);
    builder.append_data(&mut h, "run/fifo", &[][..]).unwrap();
    // An absolute symlink, then a file written through it: lands at usr/lib in the layer.
    let mut h = header(tar::EntryType::Directory, 0o755, 0, 0, 1_000_000_000);
    builder.append_data(&mut h, "usr/lib/", &[][..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 1_000_000_000);
    builder.append_link(&mut h, "lib", "/usr/lib").unwrap();
    let mut h = header(tar::EntryType::Regular, 0o644, 0, 0, 1_000_000_000);
    h.set_size(3);
    builder
        .append_data(&mut h, "lib/libx.so", &b"elf"[..])
        .unwrap();
    let tar_path = work.path().join("special.tar");
    fs::write(&tar_path, builder.into_inner().unwrap()).unwrap();

    let layer = work.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let unpacked = unpack_layer(fs::File::open(&tar_path).unwrap(), "", &layer).unwrap();
    assert_eq!(
        unpacked.diff_id,
        berth_runtime::image::digest::sha256_of(&fs::read(&tar_path).unwrap())
    );

    let srv = fs::metadata(layer.join("srv")).unwrap();
    assert_eq!((srv.mode() & 0o7777, srv.uid(), srv.gid()), (0o750, 33, 33));
    assert_eq!(
        srv.mtime(),
        1_100_000_000,
        "directory mtime is set after its children"
    );
    let data = fs::metadata(layer.join("srv/data")).unwrap();
    assert_eq!(
        (data.mode() & 0o7777, data.uid(), data.gid(), data.mtime()),
        (0o640, 1234, 5678, 1_000_000_000)
    );
    assert_eq!(
        get_xattr(&layer.join("srv/data"), "user.berth").as_deref(),
        Some(&b"hello"[..])
    );
    let link = fs::metadata(layer.join("srv/data-link")).unwrap();
    assert_eq!(
        (link.ino(), link.nlink()),
        (data.ino(), 2),
        "hardlink shares the inode"
    );
    assert_eq!(
        fs::metadata(layer.join("bin/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    let null = fs::metadata(layer.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (null.rdev(), null.mode() & 0o777),
        (nix::sys::stat::makedev(1, 3), 0o666)
    );
    let loop200 = fs::metadata(layer.join("dev/loop200")).unwrap();
    assert!(loop200.file_type().is_block_device());
    assert_eq!(
        (loop200.rdev(), loop200.gid()),
        (nix::sys::stat::makedev(7, 200), 6)
    );
    let fifo = fs::metadata(layer.join("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o777, 0o620);
    assert_eq!(
        fs::read_link(layer.join("lib")).unwrap(),
        PathBuf::from("/usr/lib")
    );
    assert_eq!(fs::read(layer.join("usr/lib/libx.so")).unwrap(), b"elf");
    assert_eq!(unpacked.entries, 10);
}

#[test]
fn replacements_within_one_layer_follow_tar_order() {
    let work = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("replace.tar");
    RawTar::new()
        .file("x", b"first a file")
        .dir("x/")
        .file("x/y", b"then a directory")
        .dir("d/")
        .file("d/c", b"child")
        .file("d", b"directory replaced by a file")
        .file("f", b"kept: a whiteout hides only lower layers")
        .file(".wh.f", b"")
        .dir("keepdir/")
        .file("keepdir/a", b"a")
        .file(".wh.keepdir", b"")
        .symlink("s", "/nowhere")
        .file("s", b"a file replaces the symlink, not its target")
        .write(&tar_path);
    let layer = work.path().join("layer");
    fs::create_dir(&layer).unwrap();
    unpack_layer(
        fs::File::open(&tar_path).unwrap(),
        "application/vnd.oci.image.layer.v1.tar",
        &layer,
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(layer.join("x/y")).unwrap(),
        "then a directory"
    );
    assert_eq!(
        fs::read_to_string(layer.join("d")).unwrap(),
        "directory replaced by a file"
    );
    assert_eq!(
        fs::read_to_string(layer.join("f")).unwrap(),
        "kept: a whiteout hides only lower layers"
    );
    assert_eq!(fs::read_to_string(layer.join("keepdir/a")).unwrap(), "a");
    assert_eq!(
        get_xattr(&layer.join("keepdir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "a whiteout over a directory of the same layer hides the lower one's content"
    );
    assert!(fs::symlink_metadata(layer.join("s")).unwrap().is_file());
    assert!(!Path::new("/nowhere").exists());
}

#[test]
fn gzip_zstd_and_plain_layers_unpack_to_the_same_tree_and_diff_id() {
    let work = tempfile::tempdir().unwrap();
    let mut tar = RawTar::new();
    tar.dir("etc/")
        .file("etc/motd", b"hello")
        .symlink("etc/link", "motd");
    let tar_path = work.path().join("plain.tar");
    tar.write(&tar_path);
    let plain = fs::read(&tar_path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gzip = gz.finish().unwrap();
    let zstd = zstd::encode_all(&plain[..], 3).unwrap();

    let mut diff_ids = Vec::new();
    for (name, media_type, bytes) in [
        ("plain", "application/vnd.oci.image.layer.v1.tar", &plain),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip", &gzip),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd", &zstd),
        // Docker's gzip type on a plain tar: the content decides.
        (
            "mislabelled",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            &plain,
        ),
    ] {
        let dir = work.path().join(name);
        fs::create_dir(&dir).unwrap();
        let unpacked = unpack_layer(&bytes[..], media_type, &dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("etc/motd")).unwrap(),
            "hello",
            "{name}"
        );
        assert_eq!(
            fs::read_link(dir.join("etc/link")).unwrap(),
            PathBuf::from("motd"),
            "{name}"
        );
        assert_eq!(unpacked.tar_size, plain.len() as u64, "{name}");
        diff_ids.push(unpacked.diff_id);
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:?}");
}

#[test]
fn a_layer_entry_that_climbs_out_with_dotdot_is_rejected_by_name() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("escape.tar");
    RawTar::new()
        .dir("etc/")
        .file("etc/../../escaped-dotdot", b"pwned")
        .write(&tar_path);
    let store = ImageStore::open(data.path()).unwrap();
    let err = import_layers(&store, work.path(), &[tar_path]).unwrap_err();
    let StoreError::Layer { source, .. } = &err else {
        panic!("unexpected error: {err}")
    };
    assert!(
        matches!(source, UnpackError::PathEscapes { entry } if entry == Path::new("etc/../../escaped-dotdot")),
        "{source:?}"
    );
    assert!(
        error_chain(&err)
            .ends_with("layer entry \"etc/../../escaped-dotdot\" climbs out of the layer root"),
        "{}",
        error_chain(&err)
    );
    assert_store_empty(data.path());
    for place in [
        data.path().join("images/layers/escaped-dotdot"),
        data.path().join("images/escaped-dotdot"),
    ] {
        assert!(!place.exists(), "{place:?}");
    }
}

/// A real host directory hostile symlinks point at: a naive unpacker writes into it.
fn host_target(test: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("berth-{test}-{}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn an_entry_through_a_symlink_to_a_host_directory_writes_nothing_outside() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let target = host_target("symlink-escape");
    let tar_path = work.path().join("evil.tar");
    RawTar::new()
        .symlink("evil", target.path().to_str().unwrap())
        .file("evil/pwned", b"pwned")
        .write(&tar_path);
    let store = ImageStore::open(data.path()).unwrap();
    let err = import_layers(&store, work.path(), &[tar_path]).unwrap_err();

    // Resolved inside the root, /tmp/<unique> does not exist there: the entry fails.
    assert!(
        error_chain(&err).contains(
            "layer entry \"evil/pwned\": cannot create its parent directories: No such file or directory"
        ),
        "{}",
        error_chain(&err)
    );
    assert!(
        names(target.path()).is_empty(),
        "wrote outside the root: {:?}",
        names(target.path())
    );
    assert_store_empty(data.path());
}

#[test]
fn entries_through_symlinks_pointing_outside_resolve_inside_the_layer_root() {
    if !have_tools(&["umoci"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let target = host_target("symlink-inside");
    let target_str = target.path().to_str().unwrap();
    let inside = target_str.trim_start_matches('/');
    let relative = format!("../../../../../../../../..{target_str}");
    let tar_path = work.path().join("symlinks.tar");
    RawTar::new()
        // The same path exists inside the layer, so the links resolve there.
        .dir("tmp/")
        .dir(&format!("{inside}/"))
        .symlink("evil", target_str)
        .file("evil/pwned", b"absolute")
        .symlink("evil-rel", &relative)
        .file("evil-rel/pwned-rel", b"relative")
        .dir("sub/")
        .symlink("sub/up", "../..")
        .file("sub/up/pwned-up", b"dotdot through a symlink")
        .write(&tar_path);
    let store = ImageStore::open(data.path()).unwrap();
    let image = import_layers(&store, work.path(), &[tar_path]).unwrap();

    assert!(
        names(target.path()).is_empty(),
        "wrote outside the root: {:?}",
        names(target.path())
    );
    let layer = &image.layer_dirs()[0];
    assert_eq!(
        fs::read_to_string(layer.join(inside).join("pwned")).unwrap(),
        "absolute"
    );
    assert_eq!(
        fs::read_to_string(layer.join(inside).join("pwned-rel")).unwrap(),
        "relative"
    );
    assert_eq!(
        fs::read_to_string(layer.join("pwned-up")).unwrap(),
        "dotdot through a symlink"
    );
    assert!(!data.path().join("images/layers/pwned-up").exists());
    assert!(!data.path().join("images/layers/sha256/pwned-up").exists());
}

#[test]
fn a_hardlink_to_a_path_outside_the_root_is_rejected() {
    let work = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("hardlink.tar");
    RawTar::new()
        .hardlink("passwd", "../../../../etc/passwd")
        .write(&tar_path);
    let layer = work.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let err = unpack_layer(fs::File::open(&tar_path).unwrap(), "", &layer).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer entry \"passwd\" links to \"../../../../etc/passwd\", which climbs out of the layer root"
    );
    assert!(names(&layer).is_empty());

    // An absolute hardlink target is resolved inside the root: there is no /etc/passwd there.
    let tar_path = work.path().join("hardlink-abs.tar");
    RawTar::new()
        .hardlink("passwd", "/etc/passwd")
        .write(&tar_path);
    let layer = work.path().join("layer-abs");
    fs::create_dir(&layer).unwrap();
    let err = unpack_layer(fs::File::open(&tar_path).unwrap(), "", &layer).unwrap_err();
    assert!(
        error_chain(&err).starts_with("layer entry \"passwd\": cannot find the hardlink target"),
        "{}",
        error_chain(&err)
    );
    assert!(names(&layer).is_empty() || names(&layer) == ["etc".to_owned()].into());
    assert_eq!(
        fs::metadata("/etc/passwd").unwrap().nlink(),
        1,
        "host file was not linked"
    );
}

#[test]
fn permissions_of_unpacked_files_do_not_depend_on_the_umask() {
    let work = tempfile::tempdir().unwrap();
    let tar_path = work.path().join("modes.tar");
    RawTar::new()
        .dir("open/")
        .file("open/rw", b"x")
        .write(&tar_path);
    let layer = work.path().join("layer");
    fs::create_dir(&layer).unwrap();
    unpack_layer(fs::File::open(&tar_path).unwrap(), "", &layer).unwrap();
    assert_eq!(
        fs::metadata(layer.join("open"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        fs::metadata(layer.join("open/rw"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

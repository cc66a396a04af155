//! Volume tests on real files and tmpfs mounts (root).

use super::*;
use std::os::unix::fs::MetadataExt;

struct Dirs {
    _tmp: tempfile::TempDir,
    dirs: RuntimeDirs,
    pod: PodUid,
}

impl Dirs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = RuntimeDirs {
            run_dir: tmp.path().join("run"),
            data_dir: tmp.path().join("data"),
        };
        Self {
            _tmp: tmp,
            dirs,
            pod: PodUid::new(format!("pod-{}", std::process::id())).unwrap(),
        }
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = remove_pod_volumes(&self.dirs, &self.pod);
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false)
}

#[test]
fn claims_are_created_once_and_never_emptied() {
    let d = Dirs::new();
    let src = VolumeSource::Claim {
        claim: "data-web-0".into(),
    };
    let v = prepare(&d.dirs, &d.pod, "data", &src, None).unwrap();
    assert_eq!(v.path, d.dirs.claims_dir().join("data-web-0"));
    std::fs::write(v.path.join("keep"), "important").unwrap();
    let again = prepare(&d.dirs, &d.pod, "data", &src, None).unwrap();
    assert_eq!(again.path, v.path);
    assert_eq!(
        std::fs::read_to_string(v.path.join("keep")).unwrap(),
        "important"
    );
    remove_pod_volumes(&d.dirs, &d.pod).unwrap();
    assert_eq!(
        std::fs::read_to_string(v.path.join("keep")).unwrap(),
        "important"
    );
    let err = prepare(
        &d.dirs,
        &d.pod,
        "data",
        &VolumeSource::Claim {
            claim: "../etc".into(),
        },
        None,
    )
    .unwrap_err();
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "claim name \"../etc\" contains '.': only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit"
    );
}

#[test]
fn memory_empty_dirs_are_tmpfs_and_go_with_the_pod() {
    let d = Dirs::new();
    let src = VolumeSource::EmptyDir {
        medium: StorageMedium::Memory,
        size_limit: Some(1 << 20),
    };
    let v = prepare(&d.dirs, &d.pod, "cache", &src, None).unwrap();
    assert!(is_tmpfs(&v.path));
    // Preparing again does not stack a second mount.
    prepare(&d.dirs, &d.pod, "cache", &src, None).unwrap();
    let disk = prepare(
        &d.dirs,
        &d.pod,
        "scratch",
        &VolumeSource::EmptyDir {
            medium: StorageMedium::Disk,
            size_limit: None,
        },
        None,
    )
    .unwrap();
    assert!(!is_tmpfs(&disk.path));
    assert_eq!(std::fs::metadata(&disk.path).unwrap().mode() & 0o777, 0o777);
    remove_pod_volumes(&d.dirs, &d.pod).unwrap();
    assert!(!v.path.exists());
    assert!(!disk.path.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&v.path.display().to_string()));
    // Idempotent.
    remove_pod_volumes(&d.dirs, &d.pod).unwrap();
}

#[test]
fn secrets_live_on_tmpfs_owned_by_root_with_fs_group_read() {
    let d = Dirs::new();
    let mut data = Data::new();
    data.insert("password".into(), b"hunter2".to_vec());
    let src = VolumeSource::Secret(Projection {
        data,
        items: None,
        default_mode: None,
    });
    let v = prepare(&d.dirs, &d.pod, "creds", &src, Some(2000)).unwrap();
    assert!(is_tmpfs(&v.path), "secrets never touch the disk");
    let meta = std::fs::metadata(v.path.join("password")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o440);
    assert_eq!((meta.uid(), meta.gid()), (0, 2000));
    assert_eq!(std::fs::read(v.path.join("password")).unwrap(), b"hunter2");

    // Refresh: new content appears atomically under the same path.
    let mut data = Data::new();
    data.insert("password".into(), b"correct horse".to_vec());
    let src2 = VolumeSource::Secret(Projection {
        data,
        items: None,
        default_mode: None,
    });
    update_projected(&d.dirs, &d.pod, "creds", &src2, Some(2000)).unwrap();
    assert_eq!(
        std::fs::read(v.path.join("password")).unwrap(),
        b"correct horse"
    );
    remove_pod_volumes(&d.dirs, &d.pod).unwrap();
    assert!(!v.path.exists());
}

#[test]
fn configmap_files_default_to_0644() {
    let d = Dirs::new();
    let mut data = Data::new();
    data.insert("app.conf".into(), b"x=1".to_vec());
    let v = prepare(
        &d.dirs,
        &d.pod,
        "config",
        &VolumeSource::ConfigMap(Projection {
            data,
            items: None,
            default_mode: None,
        }),
        None,
    )
    .unwrap();
    let meta = std::fs::metadata(v.path.join("app.conf")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o644);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}

#[test]
fn removing_a_claim_deletes_its_tree_but_not_what_its_symlinks_point_to() {
    let d = Dirs::new();
    let outside = d.dirs.data_dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep"), "not the claim's").unwrap();
    let path = ensure_claim(&d.dirs, "data-db-1").unwrap();
    std::fs::create_dir_all(path.join("pg/base")).unwrap();
    std::fs::write(path.join("pg/base/1"), "rows").unwrap();
    std::os::unix::fs::symlink(&outside, path.join("escape")).unwrap();

    assert!(remove_claim(&d.dirs, "data-db-1").unwrap());
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("keep")).unwrap(),
        "not the claim's"
    );
    assert!(
        !remove_claim(&d.dirs, "data-db-1").unwrap(),
        "a second removal finds nothing"
    );
    assert!(matches!(
        remove_claim(&d.dirs, "../outside"),
        Err(VolumeError::BadClaim(_))
    ));
    assert!(outside.exists());
}

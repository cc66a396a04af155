//! ConfigMap and Secret files, written atomically kubelet's way:
//!
//! ```text
//! <volume>/..2024_05_01_10_00_00.123456789/<files>   the current set
//! <volume>/..data -> ..2024_05_01_10_00_00.123456789  swapped with rename(2)
//! <volume>/<top-level name> -> ..data/<top-level name>
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{VolumeError, io_err};

/// One `items` entry: which key goes to which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    pub mode: Option<u32>,
}

/// A ConfigMap's or Secret's data and how it is projected into files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projection {
    pub data: BTreeMap<String, Vec<u8>>,
    /// Only these keys, at these paths; every key at its own name when `None`.
    pub items: Option<Vec<KeyToPath>>,
    /// Mode of files without an item mode (ConfigMap 0644, Secret 0400 when unset).
    pub default_mode: Option<u32>,
}

/// A file to write: contents and mode.
pub type Payload = BTreeMap<PathBuf, (Vec<u8>, u32)>;

fn check_path(volume: &str, path: &str) -> Result<PathBuf, VolumeError> {
    let bad = || VolumeError::BadItemPath {
        volume: volume.to_owned(),
        path: path.to_owned(),
    };
    let p = Path::new(path);
    if path.is_empty() || path.starts_with("..") || p.is_absolute() {
        return Err(bad());
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    Ok(p.to_path_buf())
}

fn check_mode(volume: &str, path: &str, mode: u32) -> Result<u32, VolumeError> {
    if mode > 0o777 {
        return Err(VolumeError::BadMode {
            volume: volume.to_owned(),
            path: path.to_owned(),
            mode,
        });
    }
    Ok(mode)
}

/// The files of a projection (pure). With `fs_group`, files also get the group-read bit.
pub fn payload(
    volume: &str,
    projection: &Projection,
    secret: bool,
    fs_group: Option<u32>,
) -> Result<Payload, VolumeError> {
    let default = projection
        .default_mode
        .unwrap_or(if secret { 0o400 } else { 0o644 });
    let kind = if secret { "secret" } else { "configMap" };
    let mut out = Payload::new();
    let entries: Vec<(String, String, Option<u32>)> = match &projection.items {
        None => projection
            .data
            .keys()
            .map(|k| (k.clone(), k.clone(), None))
            .collect(),
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone(), i.mode))
            .collect(),
    };
    for (key, path, mode) in entries {
        let data = projection
            .data
            .get(&key)
            .ok_or_else(|| VolumeError::MissingKey {
                volume: volume.to_owned(),
                kind,
                key: key.clone(),
            })?;
        let rel = check_path(volume, &path)?;
        let mut mode = check_mode(volume, &path, mode.unwrap_or(default))?;
        if fs_group.is_some() {
            mode |= 0o040;
        }
        out.insert(rel, (data.clone(), mode));
    }
    Ok(out)
}

fn timestamp_dir_name() -> String {
    let now = chrono::Utc::now();
    format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%9f"))
}

/// Writes `files` into `dir` and switches `..data` to them atomically; owner root, group
/// `fs_group` when given.
pub fn write(dir: &Path, files: &Payload, fs_group: Option<u32>) -> Result<(), VolumeError> {
    let data_link = dir.join("..data");
    let old_target = std::fs::read_link(&data_link).ok();
    let mut name = timestamp_dir_name();
    while dir.join(&name).exists() {
        name = timestamp_dir_name();
    }
    let ts_dir = dir.join(&name);
    std::fs::create_dir(&ts_dir).map_err(io_err("creating", &ts_dir))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("setting the mode of", &ts_dir))?;
    for (rel, (contents, mode)) in files {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("writing", &path))?;
        f.write_all(contents).map_err(io_err("writing", &path))?;
        std::os::unix::fs::fchown(&f, Some(0), fs_group)
            .map_err(io_err("changing the owner of", &path))?;
        f.set_permissions(std::fs::Permissions::from_mode(*mode))
            .map_err(io_err("setting the mode of", &path))?;
    }
    // Swap ..data atomically.
    let tmp_link = dir.join("..data_tmp");
    crate::fsutil::remove_file_if_exists(&tmp_link).map_err(io_err("removing", &tmp_link))?;
    std::os::unix::fs::symlink(&name, &tmp_link).map_err(io_err("linking", &tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io_err("switching", &data_link))?;

    // Top-level names point through ..data.
    let top: BTreeSet<String> = files
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for name in &top {
        let link = dir.join(name);
        let target = Path::new("..data").join(name);
        if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            crate::fsutil::remove_file_if_exists(&link).map_err(io_err("replacing", &link))?;
            std::os::unix::fs::symlink(&target, &link).map_err(io_err("linking", &link))?;
        }
    }
    // Names that are gone, and the old set.
    for entry in std::fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .flatten()
    {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with("..") {
            let is_old_set = old_target.as_deref().is_some_and(|t| Path::new(&n) == t);
            if is_old_set && n != name {
                crate::fsutil::remove_dir_all_if_exists(&entry.path())
                    .map_err(io_err("removing", &entry.path()))?;
            }
            continue;
        }
        if !top.contains(&n) {
            crate::fsutil::remove_file_if_exists(&entry.path())
                .map_err(io_err("removing", &entry.path()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projection(items: Option<Vec<KeyToPath>>, default_mode: Option<u32>) -> Projection {
        Projection {
            data: [("a.conf", "A"), ("b", "B")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            items,
            default_mode,
        }
    }

    fn modes(p: &Payload) -> Vec<(String, u32)> {
        p.iter()
            .map(|(k, (_, m))| (k.display().to_string(), *m))
            .collect()
    }

    #[test]
    fn default_modes_are_0644_for_configmaps_and_0400_for_secrets() {
        let p = projection(None, None);
        assert_eq!(
            modes(&payload("v", &p, false, None).unwrap()),
            vec![("a.conf".into(), 0o644), ("b".into(), 0o644)]
        );
        assert_eq!(
            modes(&payload("v", &p, true, None).unwrap()),
            vec![("a.conf".into(), 0o400), ("b".into(), 0o400)]
        );
        // fsGroup adds group read.
        assert_eq!(
            modes(&payload("v", &p, true, Some(2000)).unwrap()),
            vec![("a.conf".into(), 0o440), ("b".into(), 0o440)]
        );
    }

    #[test]
    fn items_select_keys_paths_and_modes() {
        let p = projection(
            Some(vec![
                KeyToPath {
                    key: "b".into(),
                    path: "sub/dir/b.txt".into(),
                    mode: Some(0o600),
                },
                KeyToPath {
                    key: "a.conf".into(),
                    path: "x".into(),
                    mode: None,
                },
            ]),
            Some(0o444),
        );
        assert_eq!(
            modes(&payload("v", &p, false, None).unwrap()),
            vec![("sub/dir/b.txt".into(), 0o600), ("x".into(), 0o444)]
        );
    }

    #[test]
    fn bad_items_are_errors_naming_them() {
        let item = |key: &str, path: &str, mode| {
            projection(
                Some(vec![KeyToPath {
                    key: key.into(),
                    path: path.into(),
                    mode,
                }]),
                None,
            )
        };
        let cases = [
            (
                item("nope", "x", None),
                "volume v: key \"nope\" is not in the configMap's data",
            ),
            (
                item("b", "../x", None),
                "volume v: item path \"../x\" must be relative, without '..', and not start with '..'",
            ),
            (
                item("b", "/etc/x", None),
                "volume v: item path \"/etc/x\" must be relative, without '..', and not start with '..'",
            ),
            (
                item("b", "a/../../x", None),
                "volume v: item path \"a/../../x\" must be relative, without '..', and not start with '..'",
            ),
            (
                item("b", "..data", None),
                "volume v: item path \"..data\" must be relative, without '..', and not start with '..'",
            ),
            (
                item("b", "x", Some(0o1777)),
                "volume v: mode 0o1777 of \"x\" is not a file mode (0 to 0777)",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(payload("v", &p, false, None).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn updates_swap_the_whole_set_and_drop_removed_names() {
        let dir = tempfile::tempdir().unwrap();
        let p1 = payload("v", &projection(None, None), false, None).unwrap();
        write(dir.path(), &p1, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.conf")).unwrap(),
            "A"
        );
        let first = std::fs::read_link(dir.path().join("..data")).unwrap();

        let mut p2 = Projection::default();
        p2.data.insert("c".into(), b"C".to_vec());
        let files = payload("v", &p2, false, None).unwrap();
        write(dir.path(), &files, None).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("c")).unwrap(), "C");
        assert!(!dir.path().join("a.conf").exists());
        assert!(!dir.path().join(&first).exists(), "old set removed");
        let names: BTreeSet<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}"); // ..data, ..<ts>, c
        let meta = std::fs::metadata(dir.path().join("c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    }
}

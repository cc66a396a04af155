//! The owner epoch of a claim directory: which assignment of a pod last started with the
//! data, so a host that comes back with a stale view never starts an old copy over data a
//! newer assignment already used.
//!
//! A pod's assignment epoch ([`assignment_epoch`]) is a fencing token that only grows: the
//! `berth.io/assignment-epoch` annotation the scheduler writes when it binds a pod (the state
//! revision the binding was planned at, plus one; a later binding always plans after an
//! earlier one committed, so it gets a larger number). Before a pod's containers start, the
//! kubelet calls [`claim_for_start`] for each of its claim directories: it reads the owner
//! file, refuses if it holds a newer epoch than the pod's ([`EpochError::Stale`]), and
//! otherwise records the pod's epoch (atomically: temporary file, fsync, rename, fsync of
//! the parent).
//!
//! The owner file sits *beside* the claim directory (`<claims>/<dir>.owner`), not inside it:
//! many programs refuse a data directory that is not empty (PostgreSQL's initdb, MySQL's
//! --initialize), and a claim must look to the container exactly as the user left it. It is on
//! the same filesystem, so it lives and dies with the data (the claim task removes both).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The annotation holding a pod's assignment epoch.
pub const ASSIGNMENT_EPOCH: &str = "berth.io/assignment-epoch";

/// What the owner file records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEpoch {
    /// The assignment epoch of the pod that last started with this directory.
    pub epoch: u64,
    /// That pod's `namespace/name` and uid, for people reading the file.
    pub pod: String,
    pub uid: String,
}

/// A claim directory's owner file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error(
        "claim directory {directory} was last used by {} (uid {}) at assignment epoch {}, newer than this pod's {mine}: this copy of the pod is stale and is not started",
        found.pod, found.uid, found.epoch
    )]
    Stale {
        directory: PathBuf,
        found: OwnerEpoch,
        mine: u64,
    },
    #[error("cannot read the owner file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the owner file {path} is not valid")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the owner file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pod's assignment epoch, if it has one.
pub fn assignment_epoch(pod: &Value) -> Option<u64> {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(ASSIGNMENT_EPOCH))
        .and_then(Value::as_str)
        .and_then(|e| e.parse().ok())
}

/// The owner file of claim directory `directory`.
pub fn owner_path(directory: &Path) -> PathBuf {
    let mut name = directory
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".owner");
    directory.with_file_name(name)
}

/// What to do with a claim directory before a pod starts with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartDecision {
    /// The file already records this assignment.
    Start,
    /// Record this assignment, then start.
    Record,
    /// A newer assignment used the data: never start this copy.
    Stale,
}

/// The decision for a pod at epoch `mine` (uid `uid`) given the recorded owner.
pub fn decide(found: Option<&OwnerEpoch>, mine: u64, uid: &str) -> StartDecision {
    match found {
        None => StartDecision::Record,
        Some(f) if f.epoch > mine => StartDecision::Stale,
        Some(f) if f.epoch == mine && f.uid == uid => StartDecision::Start,
        Some(_) => StartDecision::Record,
    }
}

/// Reads the owner file of `directory` (`None` when there is none yet).
pub fn read(directory: &Path) -> Result<Option<OwnerEpoch>, EpochError> {
    let path = owner_path(directory);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| EpochError::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EpochError::Read { path, source }),
    }
}

/// Writes the owner file of `directory` atomically and durably.
pub fn write(directory: &Path, owner: &OwnerEpoch) -> Result<(), EpochError> {
    let path = owner_path(directory);
    let tmp = path.with_extension("owner.tmp");
    let fail = |source| EpochError::Write {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(&serde_json::to_vec(owner).expect("plain data serialises"))
        .map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(fail)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

/// Checks and records the start of `pod` (with assignment epoch `epoch`) on claim directory
/// `directory`; an error means the pod must not start. Pods without an epoch (bound before
/// epochs existed) start and record nothing.
pub fn claim_for_start(directory: &Path, pod: &Value) -> Result<(), EpochError> {
    let Some(mine) = assignment_epoch(pod) else {
        return Ok(());
    };
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let found = read(directory)?;
    match decide(found.as_ref(), mine, uid) {
        StartDecision::Start => Ok(()),
        StartDecision::Stale => Err(EpochError::Stale {
            directory: directory.to_path_buf(),
            found: found.expect("stale implies a file"),
            mine,
        }),
        StartDecision::Record => {
            let ns = pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            write(
                directory,
                &OwnerEpoch {
                    epoch: mine,
                    pod: format!("{ns}/{name}"),
                    uid: uid.to_string(),
                },
            )
        }
    }
}

/// Removes the owner file of a claim directory being removed.
pub fn remove(directory: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(owner_path(directory)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner(epoch: u64, uid: &str) -> OwnerEpoch {
        OwnerEpoch {
            epoch,
            pod: "default/web-1".into(),
            uid: uid.into(),
        }
    }

    #[test]
    fn only_an_older_or_equal_assignment_may_start() {
        let cases = [
            (None, 5, "a", StartDecision::Record),
            (Some(owner(5, "a")), 5, "a", StartDecision::Start),
            (Some(owner(5, "a")), 7, "b", StartDecision::Record),
            (Some(owner(7, "b")), 5, "a", StartDecision::Stale),
            (Some(owner(5, "a")), 5, "b", StartDecision::Record),
        ];
        for (found, mine, uid, expected) in cases {
            assert_eq!(
                decide(found.as_ref(), mine, uid),
                expected,
                "{found:?} vs {mine}/{uid}"
            );
        }
    }

    fn pod(uid: &str, epoch: Option<u64>) -> Value {
        let mut p = json!({"metadata": {"name": "web-1", "namespace": "default", "uid": uid}});
        if let Some(e) = epoch {
            p["metadata"]["annotations"] = json!({ASSIGNMENT_EPOCH: e.to_string()});
        }
        p
    }

    #[test]
    fn a_returning_stale_copy_is_refused_by_the_file_beside_the_claim() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data-web-1");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(owner_path(&dir), root.path().join("data-web-1.owner"));

        claim_for_start(&dir, &pod("old", Some(10))).unwrap();
        assert_eq!(
            read(&dir).unwrap(),
            Some(OwnerEpoch {
                epoch: 10,
                pod: "default/web-1".into(),
                uid: "old".into()
            })
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the claim directory itself stays as the user left it"
        );
        // The same pod restarting is fine.
        claim_for_start(&dir, &pod("old", Some(10))).unwrap();
        // A newer assignment takes the data over.
        claim_for_start(&dir, &pod("new", Some(20))).unwrap();
        // The old copy, coming back, is refused and changes nothing.
        let err = claim_for_start(&dir, &pod("old", Some(10))).unwrap_err();
        assert!(
            matches!(&err, EpochError::Stale { mine: 10, found, .. } if found.epoch == 20 && found.uid == "new"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("newer than this pod's 10"),
            "{err}"
        );
        assert_eq!(read(&dir).unwrap().unwrap().epoch, 20);
        // A pod without an epoch records nothing.
        claim_for_start(&dir, &pod("legacy", None)).unwrap();
        assert_eq!(read(&dir).unwrap().unwrap().uid, "new");
        remove(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), None);
        remove(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_owner_file_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        std::fs::write(owner_path(&dir), b"{not json").unwrap();
        let err = claim_for_start(&dir, &pod("u", Some(1))).unwrap_err();
        assert!(matches!(err, EpochError::Corrupt { .. }));
        assert!(err.to_string().contains("c.owner"), "{err}");
    }
}

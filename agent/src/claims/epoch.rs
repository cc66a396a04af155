//! The owner epoch of a claim directory: which assignment of a pod identity last started
//! with the data, so a host that comes back with a stale view never starts an old copy of
//! that identity over data a newer assignment already used.
//!
//! A pod's assignment epoch ([`assignment_epoch`]) is a fencing token that only grows: the
//! `berth.io/assignment-epoch` annotation written in the same command that binds the pod to a
//! node (by the scheduler, and by the DaemonSet controller, which creates its pods bound):
//! [`epoch_for_binding`] of the state revision the binding was planned at. Revisions are raft
//! log indexes: persistent, never reused, growing across restarts, snapshots and leader
//! changes. A binding planned at revision `r` commits at an index above `r`, so its epoch
//! `r + 1` is at most its own index; any binding planned later, on a state that contains the
//! first one (or anything after it, such as the old pod's deletion or its replacement's
//! creation), gets a strictly larger epoch. A replacement pod only exists after its
//! predecessor was deleted, so a replacement always carries a larger epoch than the copy it
//! replaces, whichever host planned either.
//!
//! Before a pod's containers first start on a host (and again after the host's fence falls),
//! the kubelet calls [`claim_for_start`] with the pod's claim directories: it reads their
//! owner files and refuses ([`EpochError::Stale`]) if any records a newer assignment *of the
//! same pod identity* (`namespace/name`), changing nothing; otherwise it records the pod's
//! epoch in each (atomically: temporary file, fsync, rename, fsync of the parent).
//!
//! The record is per identity, not one owner per directory: a claim may be shared by pods on
//! its node (a backup Job mounting a database's claim), and a later binding of *another* pod
//! is no reason to refuse the database pod after a reboot. Only pods whose replacements reuse
//! their name are recorded ([`has_stable_identity`]: StatefulSet pods and pods without a
//! controller); a Job's or DaemonSet's replacement gets a new name, so a record of theirs could
//! never refuse anything and would only grow the file.
//!
//! A pod without the annotation (created with `spec.nodeName` already set, so no scheduler
//! bound it) has epoch 0: it never beats a recorded assignment of the same name, so a
//! hand-bound pod cannot override a newer scheduled one, and it is recorded at 0 so the next
//! scheduled assignment (always above 0) takes over as expected.
//!
//! The owner file sits *beside* the claim directory (`<claims>/<dir>.owner`), not inside it:
//! many programs refuse a data directory that is not empty (PostgreSQL's initdb, MySQL's
//! --initialize), and a claim must look to the container exactly as the user left it. It is on
//! the same filesystem, so it lives and dies with the data (the claim task removes both).
//! Its format (JSON, for people reading it):
//! `{"owners":[{"epoch":57,"pod":"default/web-0","uid":"..."}]}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::Revision;

/// The annotation holding a pod's assignment epoch.
pub const ASSIGNMENT_EPOCH: &str = "berth.io/assignment-epoch";

/// The epoch of a binding planned on a state at revision `planned_at`: one more, which is at
/// most the index the binding itself commits at and above every binding the planner could
/// see.
pub fn epoch_for_binding(planned_at: Revision) -> u64 {
    planned_at.saturating_add(1)
}

/// What the owner file records for one pod identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerEpoch {
    /// The assignment epoch of the pod that last started with this directory.
    pub epoch: u64,
    /// That pod's `namespace/name` (the identity records are kept by).
    pub pod: String,
    /// That pod's uid, for people reading the file (and to tell a restart of the same pod).
    pub uid: String,
}

/// The owner file: one record per pod identity that started with the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OwnerFile {
    owners: Vec<OwnerEpoch>,
}

/// A claim directory's owner file, or the pod's epoch, cannot be used: the pod must not start.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error(
        "claim directory {directory} was used by a newer assignment of {} (uid {}, assignment epoch {}) than this pod's (epoch {mine}): this copy of the pod is stale and is not started",
        found.pod, found.uid, found.epoch
    )]
    Stale {
        directory: PathBuf,
        found: OwnerEpoch,
        mine: u64,
    },
    #[error("annotation {ASSIGNMENT_EPOCH} of pod {pod} is not a whole number: {value:?}")]
    Annotation { pod: String, value: String },
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

impl EpochError {
    /// The reason shown in the pod's status and events: `StaleAssignment`,
    /// `InvalidAssignmentEpoch` or `ClaimOwnerError`.
    pub fn reason(&self) -> &'static str {
        match self {
            EpochError::Stale { .. } => "StaleAssignment",
            EpochError::Annotation { .. } => "InvalidAssignmentEpoch",
            _ => "ClaimOwnerError",
        }
    }

    /// What a person can do about it, for the pod's status message.
    pub fn resolution(&self) -> String {
        match self {
            EpochError::Stale { directory, .. } => format!(
                "if no newer copy of the pod runs anywhere and this data is the copy to keep, remove {} and the pod starts",
                owner_path(directory).display()
            ),
            EpochError::Annotation { .. } => format!(
                "set {ASSIGNMENT_EPOCH} back to the number the scheduler wrote, or delete the pod so that it is re-created"
            ),
            EpochError::Read { path, .. } | EpochError::Write { path, .. } => {
                format!(
                    "check that {} and its directory are readable and writable",
                    path.display()
                )
            }
            EpochError::Corrupt { path, .. } => format!(
                "check that no other copy of the pod uses this data, then remove {} and the pod starts",
                path.display()
            ),
        }
    }
}

/// Is `pod` a StatefulSet pod or a pod without a controller (the pods whose replacements keep
/// their name, so an older copy of the same name can be told apart by its epoch)?
pub fn has_stable_identity(pod: &Value) -> bool {
    let controller = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true));
    match controller {
        None => true,
        Some(r) => r["kind"] == "StatefulSet",
    }
}

/// The pod's `namespace/name`.
fn identity(pod: &Value) -> String {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{ns}/{name}")
}

/// The pod's assignment epoch: the annotation's number, 0 without one (a pod created bound).
pub fn assignment_epoch(pod: &Value) -> Result<u64, EpochError> {
    let Some(value) = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ASSIGNMENT_EPOCH))
    else {
        return Ok(0);
    };
    value
        .as_str()
        .and_then(|e| e.trim().parse().ok())
        .ok_or_else(|| EpochError::Annotation {
            pod: identity(pod),
            value: value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string),
        })
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
    /// A newer assignment of the same identity used the data: never start this copy.
    Stale,
}

/// The decision for a pod at epoch `mine` (uid `uid`) given the owner recorded for its
/// identity.
pub fn decide(found: Option<&OwnerEpoch>, mine: u64, uid: &str) -> StartDecision {
    match found {
        None => StartDecision::Record,
        Some(f) if f.epoch > mine => StartDecision::Stale,
        Some(f) if f.epoch == mine && f.uid == uid => StartDecision::Start,
        Some(_) => StartDecision::Record,
    }
}

/// Reads the owner records of `directory` (none when there is no file yet).
pub fn read(directory: &Path) -> Result<Vec<OwnerEpoch>, EpochError> {
    let path = owner_path(directory);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<OwnerFile>(&bytes)
            .map(|f| f.owners)
            .map_err(|source| EpochError::Corrupt { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(EpochError::Read { path, source }),
    }
}

/// Writes the owner records of `directory` atomically and durably.
pub fn write(directory: &Path, owners: &[OwnerEpoch]) -> Result<(), EpochError> {
    let path = owner_path(directory);
    let tmp = path.with_extension("owner.tmp");
    let fail = |source| EpochError::Write {
        path: path.clone(),
        source,
    };
    let file = OwnerFile {
        owners: owners.to_vec(),
    };
    let result = (|| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&file).expect("plain data serialises"))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

/// Checks and records the start of `pod` on its claim directories `directories`; an error
/// means the pod must not start. Every directory is checked before any is written, so a pod
/// refused for one directory leaves all of them as they were. Pods without a stable identity
/// (see [`has_stable_identity`]) are neither checked nor recorded.
pub fn claim_for_start(directories: &[PathBuf], pod: &Value) -> Result<(), EpochError> {
    if directories.is_empty() || !has_stable_identity(pod) {
        return Ok(());
    }
    let mine = assignment_epoch(pod)?;
    let uid = pod
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let me = identity(pod);
    let mut writes = Vec::new();
    for directory in directories {
        let mut owners = read(directory)?;
        let found = owners.iter().position(|o| o.pod == me);
        match decide(found.map(|i| &owners[i]), mine, uid) {
            StartDecision::Start => {}
            StartDecision::Stale => {
                return Err(EpochError::Stale {
                    directory: directory.clone(),
                    found: owners.swap_remove(found.expect("stale implies a record")),
                    mine,
                });
            }
            StartDecision::Record => {
                let record = OwnerEpoch {
                    epoch: mine,
                    pod: me.clone(),
                    uid: uid.to_string(),
                };
                match found {
                    Some(i) => owners[i] = record,
                    None => owners.push(record),
                }
                writes.push((directory, owners));
            }
        }
    }
    for (directory, owners) in writes {
        write(directory, &owners)?;
    }
    Ok(())
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
            // A hand-bound pod (epoch 0) never beats a scheduled assignment...
            (Some(owner(7, "b")), 0, "c", StartDecision::Stale),
            // ...and a scheduled one always takes over from a hand-bound one.
            (Some(owner(0, "c")), 1, "d", StartDecision::Record),
            (Some(owner(0, "c")), 0, "e", StartDecision::Record),
        ];
        for (found, mine, uid, expected) in cases {
            assert_eq!(
                decide(found.as_ref(), mine, uid),
                expected,
                "{found:?} vs {mine}/{uid}"
            );
        }
    }

    #[test]
    fn a_binding_epoch_is_above_the_planned_revision_and_grows_with_it() {
        let revisions = [0u64, 1, 2, 41, 42, 1_000_000, u64::MAX - 1];
        for pair in revisions.windows(2) {
            assert!(epoch_for_binding(pair[0]) > pair[0]);
            assert!(epoch_for_binding(pair[1]) > epoch_for_binding(pair[0]));
        }
        assert_eq!(epoch_for_binding(0), 1, "above every hand-bound pod's 0");
    }

    fn pod(name: &str, uid: &str, epoch: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": uid,
            "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]}});
        if let Some(e) = epoch {
            p["metadata"]["annotations"] = json!({ASSIGNMENT_EPOCH: e});
        }
        p
    }

    #[test]
    fn the_epoch_comes_from_the_annotation_and_is_zero_without_one() {
        assert_eq!(
            assignment_epoch(&pod("web-1", "u", Some("17"))).unwrap(),
            17
        );
        assert_eq!(assignment_epoch(&pod("web-1", "u", None)).unwrap(), 0);
        for bad in ["", "-3", "seven", "1.5"] {
            let err = assignment_epoch(&pod("web-1", "u", Some(bad))).unwrap_err();
            assert!(
                matches!(&err, EpochError::Annotation { pod, value } if pod == "default/web-1" && value == bad),
                "{err:?}"
            );
            assert!(err.to_string().contains(ASSIGNMENT_EPOCH), "{err}");
            assert_eq!(err.reason(), "InvalidAssignmentEpoch");
        }
    }

    #[test]
    fn only_pods_whose_replacements_keep_their_name_are_recorded() {
        let cases = [
            (json!({"metadata": {}}), true),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "controller": true}]}}),
                true,
            ),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "Job", "controller": true}]}}),
                false,
            ),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "DaemonSet", "controller": true}]}}),
                false,
            ),
            (
                json!({"metadata": {"ownerReferences": [{"kind": "Job", "controller": false}]}}),
                true,
            ),
        ];
        for (p, expected) in cases {
            assert_eq!(has_stable_identity(&p), expected, "{p}");
        }
    }

    #[test]
    fn a_returning_stale_copy_is_refused_by_the_file_beside_the_claim() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data-web-1");
        std::fs::create_dir(&dir).unwrap();
        let dirs = [dir.clone()];
        assert_eq!(owner_path(&dir), root.path().join("data-web-1.owner"));

        claim_for_start(&dirs, &pod("web-1", "old", Some("10"))).unwrap();
        assert_eq!(read(&dir).unwrap(), vec![owner(10, "old")]);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the claim directory itself stays as the user left it"
        );
        // The same pod restarting is fine.
        claim_for_start(&dirs, &pod("web-1", "old", Some("10"))).unwrap();
        // A newer assignment takes the data over.
        claim_for_start(&dirs, &pod("web-1", "new", Some("20"))).unwrap();
        let before = std::fs::read(owner_path(&dir)).unwrap();
        // The old copy, coming back, is refused and changes nothing.
        let err = claim_for_start(&dirs, &pod("web-1", "old", Some("10"))).unwrap_err();
        assert!(
            matches!(&err, EpochError::Stale { mine: 10, found, .. } if found.epoch == 20 && found.uid == "new"),
            "{err:?}"
        );
        assert_eq!(err.reason(), "StaleAssignment");
        assert!(
            err.to_string().contains("than this pod's (epoch 10)"),
            "{err}"
        );
        assert!(
            err.resolution().contains("data-web-1.owner"),
            "{}",
            err.resolution()
        );
        assert_eq!(std::fs::read(owner_path(&dir)).unwrap(), before);
        // So is a hand-bound pod of the same name (epoch 0).
        assert!(matches!(
            claim_for_start(&dirs, &pod("web-1", "hand", None)),
            Err(EpochError::Stale { mine: 0, .. })
        ));
        remove(&dir).unwrap();
        assert_eq!(read(&dir).unwrap(), vec![]);
        remove(&dir).unwrap();
        // With the file removed (the documented way out) the old copy may start.
        claim_for_start(&dirs, &pod("web-1", "old", Some("10"))).unwrap();
    }

    #[test]
    fn another_pod_sharing_the_claim_never_makes_the_owner_stale() {
        let root = tempfile::tempdir().unwrap();
        let dirs = [root.path().join("data-db-0")];
        claim_for_start(&dirs, &pod("db-0", "db", Some("10"))).unwrap();
        // A backup pod bound later mounts the same claim.
        let backup = json!({"metadata": {"name": "backup", "namespace": "default", "uid": "b",
            "annotations": {ASSIGNMENT_EPOCH: "30"}}});
        claim_for_start(&dirs, &backup).unwrap();
        // A Job's pod is neither checked nor recorded.
        let job = json!({"metadata": {"name": "dump-x7k2p", "namespace": "default", "uid": "j",
            "annotations": {ASSIGNMENT_EPOCH: "40"},
            "ownerReferences": [{"kind": "Job", "controller": true}]}});
        claim_for_start(&dirs, &job).unwrap();
        // The database pod starts again after a reboot.
        claim_for_start(&dirs, &pod("db-0", "db", Some("10"))).unwrap();
        let owners = read(&dirs[0]).unwrap();
        assert_eq!(
            owners
                .iter()
                .map(|o| (o.pod.as_str(), o.epoch))
                .collect::<Vec<_>>(),
            vec![("default/db-0", 10), ("default/backup", 30)]
        );
    }

    #[test]
    fn a_pod_refused_for_one_claim_records_nothing_on_the_others() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        claim_for_start(std::slice::from_ref(&b), &pod("web-1", "new", Some("20"))).unwrap();
        let err =
            claim_for_start(&[a.clone(), b.clone()], &pod("web-1", "old", Some("10"))).unwrap_err();
        assert!(matches!(err, EpochError::Stale { ref directory, .. } if *directory == b));
        assert!(
            !owner_path(&a).exists(),
            "nothing recorded for the first claim"
        );
    }

    #[test]
    fn a_corrupt_owner_file_is_an_error_naming_it_and_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        std::fs::write(owner_path(&dir), b"{not json").unwrap();
        let err =
            claim_for_start(std::slice::from_ref(&dir), &pod("c-0", "u", Some("1"))).unwrap_err();
        assert!(matches!(err, EpochError::Corrupt { .. }));
        assert_eq!(err.reason(), "ClaimOwnerError");
        assert!(err.to_string().contains("c.owner"), "{err}");
        assert!(err.resolution().contains("remove"), "{}", err.resolution());
        assert_eq!(std::fs::read(owner_path(&dir)).unwrap(), b"{not json");
    }
}

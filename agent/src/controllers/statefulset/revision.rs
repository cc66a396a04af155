//! Revisions: snapshots of a set's pod template, stored as ControllerRevision objects owned by
//! the set (`pkg/controller/history` in Kubernetes).
//!
//! A revision's name is `<set>-<hash>`, the hash taken over the template in a canonical form,
//! so the same template always gives the same name. Pods carry the name in their
//! `controller-revision-hash` label. Going back to an earlier template reuses that template's
//! revision (with a new, highest revision number): that is what a rollback is. Revisions no
//! pod uses beyond `revisionHistoryLimit` are deleted, oldest first.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// A stored revision, as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionView {
    pub name: String,
    pub uid: String,
    /// The revision number (`revision`), growing with each new update.
    pub number: i64,
    /// The pod template the revision holds.
    pub template: Value,
    /// Whether the set controls it; revisions with no controller may be adopted.
    pub owner: RevisionOwner,
}

/// Who controls a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionOwner {
    ThisSet,
    Nobody,
    Other,
}

/// The set's current and update revisions, and what must change in the stored history.
#[derive(Debug, Clone, PartialEq)]
pub struct Revisions {
    /// The revision pods below the partition are made from (`status.currentRevision`).
    pub current: RevisionView,
    /// The revision of the set's template now (`status.updateRevision`).
    pub update: RevisionView,
    /// `status.collisionCount` after resolving name collisions.
    pub collision_count: i32,
    /// Changes to the stored revisions, in order.
    pub changes: Vec<RevisionChange>,
}

/// A change to a stored revision.
#[derive(Debug, Clone, PartialEq)]
pub enum RevisionChange {
    /// Store a new revision.
    Create {
        name: String,
        number: i64,
        template: Value,
    },
    /// Give an existing revision a new number (a rollback to it).
    Renumber {
        name: String,
        uid: String,
        number: i64,
    },
    /// Take a revision nobody controls.
    Adopt { name: String, uid: String },
    /// Delete a revision beyond the history limit.
    Delete { name: String, uid: String },
}

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash part of a revision name for `template` (after `collision_count` collisions):
/// 32-bit FNV-1a over the canonical JSON, written with Kubernetes' vowel-free alphabet.
pub fn template_hash(template: &Value, collision_count: i32) -> String {
    let mut bytes = Vec::new();
    canonical_json(template, &mut bytes);
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// JSON with object keys sorted at every level, so equal values give equal bytes whatever
/// order their keys were written in.
fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// A revision's `data`, in the shape Kubernetes stores (a strategic merge patch that replaces
/// the template), so kubectl-style tools can read it.
pub fn revision_data(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template inside a revision's `data`.
pub fn template_of_data(data: &Value) -> Option<Value> {
    let mut template = data.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

/// The ControllerRevision object for a new revision of `set`.
pub fn revision_object(set: &Value, name: &str, number: i64, template: &Value) -> Value {
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = name.rsplit('-').next().unwrap_or(name);
    labels["controller.kubernetes.io/hash"] = json!(hash);
    let mut revision = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": set.pointer("/metadata/namespace"),
            "labels": labels,
            "ownerReferences": [super::identity::controller_ref(set)],
        },
        "data": revision_data(template),
        "revision": number,
    });
    // `rollout history` shows the set's change cause as it was when the revision was made.
    if let Some(cause) = set.pointer("/metadata/annotations/kubernetes.io~1change-cause") {
        revision["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": cause});
    }
    revision
}

/// Works out the current and update revisions of a set whose template is `template`, from the
/// stored `revisions` (in any order), `status.currentRevision` and `status.collisionCount`,
/// and the revision names pods use now (which are never deleted). `history_limit` is
/// `spec.revisionHistoryLimit`.
pub fn resolve(
    set_name: &str,
    template: &Value,
    stored: &[RevisionView],
    status_current: Option<&str>,
    collision_count: i32,
    in_use: &BTreeSet<String>,
    history_limit: i32,
) -> Revisions {
    let mut changes = Vec::new();
    let mut ours: Vec<RevisionView> = stored
        .iter()
        .filter(|r| r.owner == RevisionOwner::ThisSet)
        .cloned()
        .collect();
    ours.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.name.cmp(&b.name)));
    let next_number = ours.last().map_or(1, |r| r.number + 1);

    let equal: Option<usize> = ours.iter().rposition(|r| r.template == *template);
    let mut collision_count = collision_count.max(0);
    let update = match equal {
        // The template is the newest revision's: nothing changed.
        Some(i) if i + 1 == ours.len() => ours[i].clone(),
        // An older revision holds this template: reuse it as the newest (a rollback).
        Some(i) => {
            changes.push(RevisionChange::Renumber {
                name: ours[i].name.clone(),
                uid: ours[i].uid.clone(),
                number: next_number,
            });
            ours[i].number = next_number;
            let update = ours[i].clone();
            ours.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.name.cmp(&b.name)));
            update
        }
        None => loop {
            let name = format!("{set_name}-{}", template_hash(template, collision_count));
            match stored.iter().find(|r| r.name == name) {
                None => {
                    changes.push(RevisionChange::Create {
                        name: name.clone(),
                        number: next_number,
                        template: template.clone(),
                    });
                    let created = RevisionView {
                        name,
                        uid: String::new(),
                        number: next_number,
                        template: template.clone(),
                        owner: RevisionOwner::ThisSet,
                    };
                    ours.push(created.clone());
                    break created;
                }
                // Left behind by an earlier set of this name, with this very template.
                Some(found)
                    if found.owner == RevisionOwner::Nobody && found.template == *template =>
                {
                    changes.push(RevisionChange::Adopt {
                        name: found.name.clone(),
                        uid: found.uid.clone(),
                    });
                    changes.push(RevisionChange::Renumber {
                        name: found.name.clone(),
                        uid: found.uid.clone(),
                        number: next_number,
                    });
                    let mut adopted = found.clone();
                    adopted.owner = RevisionOwner::ThisSet;
                    adopted.number = next_number;
                    ours.push(adopted.clone());
                    break adopted;
                }
                // The name is taken by something else: hash again with one more collision.
                Some(_) => collision_count += 1,
            }
        },
    };
    let current = status_current
        .and_then(|name| ours.iter().find(|r| r.name == name))
        .cloned()
        .unwrap_or_else(|| update.clone());

    // Truncate the history: keep what is live (current, update, used by a pod) and the
    // newest `history_limit` of the rest.
    let mut history: Vec<&RevisionView> = ours
        .iter()
        .filter(|r| r.name != current.name && r.name != update.name && !in_use.contains(&r.name))
        .collect();
    history.sort_by_key(|r| r.number);
    let limit = usize::try_from(history_limit.max(0)).unwrap_or(0);
    if history.len() > limit {
        let excess = history.len() - limit;
        for r in &history[..excess] {
            changes.push(RevisionChange::Delete {
                name: r.name.clone(),
                uid: r.uid.clone(),
            });
        }
    }
    Revisions {
        current,
        update,
        collision_count,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    fn stored(name: &str, number: i64, image: &str) -> RevisionView {
        RevisionView {
            name: name.into(),
            uid: format!("uid-{name}"),
            number,
            template: template(image),
            owner: RevisionOwner::ThisSet,
        }
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn hashes_ignore_key_order_and_change_with_content_and_collisions() {
        let a: Value =
            serde_json::from_str(r#"{"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"x":1}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"spec":{"x":1},"metadata":{"labels":{"b":"2","a":"1"}}}"#)
                .unwrap();
        assert_eq!(template_hash(&a, 0), template_hash(&b, 0));
        assert_ne!(template_hash(&a, 0), template_hash(&template("x"), 0));
        assert_ne!(template_hash(&a, 0), template_hash(&a, 1));
        assert!(
            template_hash(&a, 0)
                .bytes()
                .all(|c| SAFE_ALPHABET.contains(&c))
        );
    }

    #[test]
    fn revision_data_round_trips_the_template() {
        let t = template("busybox:1");
        let data = revision_data(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of_data(&data), Some(t));
    }

    #[test]
    fn a_first_template_creates_revision_one_as_current_and_update() {
        let r = resolve("web", &template("a"), &[], None, 0, &none(), 10);
        let name = format!("web-{}", template_hash(&template("a"), 0));
        assert_eq!(r.update.name, name);
        assert_eq!(r.current.name, name);
        assert_eq!(
            r.changes,
            vec![RevisionChange::Create {
                name,
                number: 1,
                template: template("a")
            }]
        );
    }

    #[test]
    fn an_unchanged_template_changes_nothing() {
        let existing = vec![stored("web-1", 1, "a"), stored("web-2", 2, "b")];
        let r = resolve(
            "web",
            &template("b"),
            &existing,
            Some("web-1"),
            0,
            &none(),
            10,
        );
        assert_eq!(r.update.name, "web-2");
        assert_eq!(r.current.name, "web-1");
        assert!(r.changes.is_empty());
    }

    #[test]
    fn going_back_to_an_old_template_reuses_its_revision_with_the_next_number() {
        let existing = vec![stored("web-1", 1, "a"), stored("web-2", 2, "b")];
        let r = resolve(
            "web",
            &template("a"),
            &existing,
            Some("web-2"),
            0,
            &none(),
            10,
        );
        assert_eq!(r.update.name, "web-1");
        assert_eq!(r.update.number, 3);
        assert_eq!(r.current.name, "web-2");
        assert_eq!(
            r.changes,
            vec![RevisionChange::Renumber {
                name: "web-1".into(),
                uid: "uid-web-1".into(),
                number: 3
            }]
        );
    }

    #[test]
    fn a_name_taken_by_another_template_bumps_the_collision_count() {
        let taken = format!("web-{}", template_hash(&template("new"), 0));
        let mut squatter = stored(&taken, 1, "something else");
        squatter.owner = RevisionOwner::Other;
        let r = resolve("web", &template("new"), &[squatter], None, 0, &none(), 10);
        assert_eq!(r.collision_count, 1);
        assert_eq!(
            r.update.name,
            format!("web-{}", template_hash(&template("new"), 1))
        );
    }

    #[test]
    fn an_ownerless_revision_with_the_same_template_is_adopted() {
        let name = format!("web-{}", template_hash(&template("a"), 0));
        let mut left = stored(&name, 4, "a");
        left.owner = RevisionOwner::Nobody;
        let r = resolve("web", &template("a"), &[left], None, 0, &none(), 10);
        assert_eq!(r.update.name, name);
        assert!(matches!(r.changes[0], RevisionChange::Adopt { .. }));
    }

    #[test]
    fn history_beyond_the_limit_goes_oldest_first_but_never_a_live_revision() {
        let existing: Vec<RevisionView> = (1..=6)
            .map(|i| stored(&format!("web-{i}"), i, &format!("i{i}")))
            .collect();
        let in_use: BTreeSet<String> = ["web-1".to_string()].into();
        let r = resolve(
            "web",
            &template("i6"),
            &existing,
            Some("web-5"),
            0,
            &in_use,
            2,
        );
        // Live: web-6 (update), web-5 (current), web-1 (a pod). History: 2, 3, 4; keep 2.
        let deleted: Vec<&str> = r
            .changes
            .iter()
            .filter_map(|c| match c {
                RevisionChange::Delete { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["web-2"]);
    }
}

//! Pod address management in the cluster state.
//!
//! Each address handed out is an `IPAddress` object (networking.k8s.io/v1, cluster-scoped,
//! named by the address, as Kubernetes names its Service IP records) whose `spec.parentRef`
//! names the pod. Because the state machine refuses a second object with the same key, an
//! address can never be handed out twice, even by racing proposers, and because the record is
//! committed (fsync'd) before any interface carries the address, a crash at any point leaves
//! either nothing or a record that the next start can account for.
//!
//! ```text
//! IPAddress 10.244.0.7
//!   metadata.annotations  network.berth.io/pod-uid: <uid of the pod holding it>   (absent: released)
//!                         network.berth.io/node: <node>
//!                         network.berth.io/released-at: <time>                     (sticky, released)
//!   metadata.ownerReferences: the Pod (ordinary pods: removed with the pod, by the state machine)
//!                             or the StatefulSet (its pods: kept for the same pod name)
//!   spec.parentRef: {group: "", resource: pods, namespace, name}
//! ```
//!
//! A StatefulSet pod's reservation outlives the pod: when a pod of the same name and the same
//! StatefulSet is created on this node again it gets the same address, so peers' DNS caches
//! and connection pools stay right. Released reservations are reclaimed for other pods only
//! when the pool has nothing else, oldest first, and they vanish with their StatefulSet.
//!
//! The choice is a pure function, [`decide`], of the reservations, which holders are alive,
//! which addresses interfaces carry, and a cursor (addresses are handed out round-robin, so a
//! freed address is not reused at once).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use berth_runtime::network::ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::pod::PodIdentity;

/// The kind of the address records.
pub const KIND: &str = "IPAddress";
/// Their apiVersion.
pub const API_VERSION: &str = "networking.k8s.io/v1";
/// Kubernetes' label naming an IPAddress's allocator, and berth's value for it.
pub const MANAGED_BY_LABEL: &str = "ipaddress.kubernetes.io/managed-by";
/// berth's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "ipam.berth.io";
/// Annotation: the uid of the pod holding the address.
pub const POD_UID_ANNOTATION: &str = "network.berth.io/pod-uid";
/// Annotation: the node whose pod CIDR the address is from.
pub const NODE_ANNOTATION: &str = "network.berth.io/node";
/// Annotation: when a StatefulSet pod's reservation was released.
pub const RELEASED_AT_ANNOTATION: &str = "network.berth.io/released-at";

/// An address record, as read from the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub ip: Ipv4Addr,
    /// The uid of the pod holding it; `None` once released.
    pub holder: Option<String>,
    /// The pod it was given to: namespace and name.
    pub parent: (String, String),
    /// The StatefulSet it is kept for (sticky reservations).
    pub stateful_set_uid: Option<String>,
    /// When a sticky reservation was released (RFC 3339).
    pub released_at: Option<String>,
    /// The node that handed it out.
    pub node: Option<String>,
    /// The record's resourceVersion, for preconditions.
    pub resource_version: u64,
}

impl Reservation {
    /// Reads a berth address record; `None` for other objects.
    pub fn from_object(object: &Value) -> Option<Reservation> {
        let meta = &object["metadata"];
        if object["kind"] != KIND || meta["labels"][MANAGED_BY_LABEL] != MANAGED_BY {
            return None;
        }
        let annotation = |key: &str| meta["annotations"][key].as_str().map(str::to_string);
        let parent = &object["spec"]["parentRef"];
        let stateful_set_uid = meta["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|owner| owner["kind"] == "StatefulSet")
            .and_then(|owner| owner["uid"].as_str())
            .map(str::to_string);
        Some(Reservation {
            ip: meta["name"].as_str()?.parse().ok()?,
            holder: annotation(POD_UID_ANNOTATION).filter(|uid| !uid.is_empty()),
            parent: (
                parent["namespace"].as_str().unwrap_or_default().to_string(),
                parent["name"].as_str().unwrap_or_default().to_string(),
            ),
            stateful_set_uid,
            released_at: annotation(RELEASED_AT_ANNOTATION),
            node: annotation(NODE_ANNOTATION),
            resource_version: meta["resourceVersion"].as_str()?.parse().ok()?,
        })
    }

    /// True for a StatefulSet pod's reservation.
    pub fn is_sticky(&self) -> bool {
        self.stateful_set_uid.is_some()
    }

    /// True when this is the reservation kept for `pod` (same StatefulSet, same name).
    pub fn kept_for(&self, pod: &PodIdentity) -> bool {
        match (&self.stateful_set_uid, &pod.stateful_set) {
            (Some(uid), Some(owner)) => {
                *uid == owner.uid && self.parent == (pod.namespace.clone(), pod.name.clone())
            }
            _ => false,
        }
    }
}

/// The record giving `ip` to `pod`, handed out by `node`.
pub fn record(ip: Ipv4Addr, pod: &PodIdentity, node: &str) -> Value {
    let owner = match &pod.stateful_set {
        Some(set) => {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": set.name, "uid": set.uid})
        }
        None => json!({"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}),
    };
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": ip.to_string(),
            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            "annotations": {POD_UID_ANNOTATION: pod.uid, NODE_ANNOTATION: node},
            "ownerReferences": [owner],
        },
        "spec": {"parentRef": {"group": "", "resource": "pods", "namespace": pod.namespace, "name": pod.name}},
    })
}

/// `stored` given to `pod` (a sticky reservation reclaimed by its pod's successor).
pub fn held_by(stored: &Value, pod: &PodIdentity) -> Value {
    let mut object = stored.clone();
    let annotations = &mut object["metadata"]["annotations"];
    annotations[POD_UID_ANNOTATION] = json!(pod.uid);
    if let Some(map) = annotations.as_object_mut() {
        map.remove(RELEASED_AT_ANNOTATION);
    }
    object
}

/// `stored` released at `now` (a sticky reservation whose pod went away).
pub fn released(stored: &Value, now: &str) -> Value {
    let mut object = stored.clone();
    let annotations = &mut object["metadata"]["annotations"];
    if let Some(map) = annotations.as_object_mut() {
        map.remove(POD_UID_ANNOTATION);
    }
    annotations[RELEASED_AT_ANNOTATION] = json!(now);
    object
}

/// The addresses pods can get in `cidr`: all but the network, gateway (first) and broadcast
/// addresses.
pub fn capacity(cidr: Ipv4Net) -> usize {
    (1usize << (32 - cidr.prefix_len())).saturating_sub(3)
}

/// Which address a pod gets, and what to change in the state to give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The pod already holds `ip` (an attach repeated after a restart).
    Keep { ip: Ipv4Addr },
    /// A StatefulSet pod's successor takes back the address kept for its name.
    Reclaim { ip: Ipv4Addr, resource_version: u64 },
    /// A free address: create its record.
    Fresh { ip: Ipv4Addr },
    /// The pool is otherwise full: replace a record whose holder is gone (a stale record, or
    /// another StatefulSet pod's released reservation, oldest first).
    Replace { ip: Ipv4Addr, resource_version: u64 },
    /// Nothing is free.
    Exhausted { capacity: usize },
}

/// Decides which address `pod` gets from `cidr`.
///
/// - `reservations`: the records of addresses in `cidr`;
/// - `alive(uid)`: whether the pod with that uid still needs its address (it exists on this
///   node and has not finished);
/// - `carried`: addresses some interface on this node carries right now (never handed out,
///   whatever the records say);
/// - `cursor`: the last address handed out; the search for a free one starts after it.
pub fn decide(
    pod: &PodIdentity,
    cidr: Ipv4Net,
    reservations: &[Reservation],
    alive: &dyn Fn(&str) -> bool,
    carried: &BTreeSet<Ipv4Addr>,
    cursor: Ipv4Addr,
) -> Decision {
    let in_cidr = |r: &&Reservation| cidr.contains(&r.ip);
    if let Some(own) = reservations
        .iter()
        .filter(in_cidr)
        .find(|r| r.holder.as_deref() == Some(pod.uid.as_str()))
    {
        return Decision::Keep { ip: own.ip };
    }
    let gone = |r: &Reservation| {
        r.holder.as_deref().is_none_or(|uid| !alive(uid)) && !carried.contains(&r.ip)
    };
    if let Some(kept) = reservations
        .iter()
        .filter(in_cidr)
        .find(|r| r.kept_for(pod) && gone(r))
    {
        return Decision::Reclaim {
            ip: kept.ip,
            resource_version: kept.resource_version,
        };
    }
    let first = u32::from(cidr.network()) + 2; // after the network address and the gateway
    let last = u32::from(cidr.broadcast()) - 1;
    let reserved: BTreeSet<Ipv4Addr> = reservations.iter().map(|r| r.ip).collect();
    let size = last.saturating_sub(first) + 1;
    let start = u32::from(cursor)
        .checked_add(1)
        .filter(|next| (first..=last).contains(next))
        .unwrap_or(first);
    for step in 0..size {
        let candidate = Ipv4Addr::from(first + (start - first + step) % size);
        if !reserved.contains(&candidate) && !carried.contains(&candidate) {
            return Decision::Fresh { ip: candidate };
        }
    }
    // Stale records first (their pods are gone), then released sticky reservations by age.
    let mut reclaimable: Vec<&Reservation> = reservations
        .iter()
        .filter(in_cidr)
        .filter(|r| gone(r))
        .collect();
    reclaimable.sort_by_key(|r| {
        (
            r.is_sticky(),
            r.released_at.clone().unwrap_or_default(),
            r.ip,
        )
    });
    match reclaimable.first() {
        Some(victim) => Decision::Replace {
            ip: victim.ip,
            resource_version: victim.resource_version,
        },
        None => Decision::Exhausted {
            capacity: capacity(cidr),
        },
    }
}

/// What to do with a record when its holder is found gone (at start) or detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Remove the record: the address is free.
    Delete,
    /// Keep the reservation for the StatefulSet pod's successor, marked released.
    MarkReleased,
    /// Nothing to do (already released).
    Nothing,
}

/// How to release `reservation`.
pub fn release(reservation: &Reservation) -> Release {
    match (reservation.is_sticky(), &reservation.holder) {
        (false, _) => Release::Delete,
        (true, Some(_)) => Release::MarkReleased,
        (true, None) if reservation.released_at.is_none() => Release::MarkReleased,
        (true, None) => Release::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::pod::StatefulSetOwner;

    fn pod(uid: &str, name: &str, set: Option<&str>) -> PodIdentity {
        PodIdentity {
            uid: uid.into(),
            namespace: "db".into(),
            name: name.into(),
            stateful_set: set.map(|uid| StatefulSetOwner {
                name: "pg".into(),
                uid: uid.into(),
            }),
            host_ports: vec![],
        }
    }

    fn reservation(
        ip: [u8; 4],
        holder: Option<&str>,
        name: &str,
        set: Option<&str>,
    ) -> Reservation {
        Reservation {
            ip: Ipv4Addr::from(ip),
            holder: holder.map(str::to_string),
            parent: ("db".into(), name.into()),
            stateful_set_uid: set.map(str::to_string),
            released_at: None,
            node: Some("n1".into()),
            resource_version: 7,
        }
    }

    fn cidr(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn records_round_trip_through_their_json() {
        let owner = pod("u-1", "pg-0", Some("s-1"));
        let mut object = record(ip("10.244.0.7"), &owner, "n1");
        object["metadata"]["resourceVersion"] = json!("12");
        let read = Reservation::from_object(&object).unwrap();
        assert_eq!(
            read,
            Reservation {
                resource_version: 12,
                ..reservation([10, 244, 0, 7], Some("u-1"), "pg-0", Some("s-1"))
            }
        );
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["kind"],
            "StatefulSet"
        );

        let gone = released(&object, "2025-01-01T00:00:00Z");
        let read = Reservation::from_object(&gone).unwrap();
        assert_eq!(
            (read.holder, read.released_at.as_deref()),
            (None, Some("2025-01-01T00:00:00Z"))
        );
        let back =
            Reservation::from_object(&held_by(&gone, &pod("u-2", "pg-0", Some("s-1")))).unwrap();
        assert_eq!(
            (back.holder.as_deref(), back.released_at),
            (Some("u-2"), None)
        );

        let plain = record(ip("10.244.0.8"), &pod("u-3", "web", None), "n1");
        assert_eq!(plain["metadata"]["ownerReferences"][0]["kind"], "Pod");
        assert_eq!(plain["spec"]["parentRef"]["resource"], "pods");
        assert_eq!(
            Reservation::from_object(
                &json!({"kind": "IPAddress", "metadata": {"name": "10.0.0.1"}})
            ),
            None,
            "not berth's"
        );
    }

    #[test]
    fn addresses_are_chosen_by_these_rules() {
        let alive = |uid: &str| uid.starts_with("alive");
        let none = BTreeSet::new();
        let small = cidr("10.244.0.0/29"); // pods: .2 to .6
        let full: Vec<Reservation> = (2..=6)
            .map(|last| {
                reservation(
                    [10, 244, 0, last],
                    Some(&format!("alive-{last}")),
                    &format!("p{last}"),
                    None,
                )
            })
            .collect();
        struct Case {
            name: &'static str,
            pod: PodIdentity,
            reservations: Vec<Reservation>,
            carried: BTreeSet<Ipv4Addr>,
            cursor: &'static str,
            expected: Decision,
        }
        let mut released_sticky = reservation([10, 244, 0, 4], None, "pg-0", Some("s-1"));
        released_sticky.released_at = Some("2025-01-01T00:00:00Z".into());
        let mut older_sticky = reservation([10, 244, 0, 5], None, "pg-1", Some("s-1"));
        older_sticky.released_at = Some("2024-01-01T00:00:00Z".into());
        let cases = vec![
            Case {
                name: "first pod gets the first address after the gateway",
                pod: pod("u", "a", None),
                reservations: vec![],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.2"),
                },
            },
            Case {
                name: "round robin continues after the cursor",
                pod: pod("u", "a", None),
                reservations: vec![],
                carried: none.clone(),
                cursor: "10.244.0.4",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.5"),
                },
            },
            Case {
                name: "the cursor wraps around before the broadcast address",
                pod: pod("u", "a", None),
                reservations: vec![],
                carried: none.clone(),
                cursor: "10.244.0.6",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.2"),
                },
            },
            Case {
                name: "reserved and carried addresses are skipped",
                pod: pod("u", "a", None),
                reservations: vec![reservation([10, 244, 0, 2], Some("alive-1"), "b", None)],
                carried: [ip("10.244.0.3")].into(),
                cursor: "0.0.0.0",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.4"),
                },
            },
            Case {
                name: "a pod attached again keeps its address",
                pod: pod("u", "a", None),
                reservations: vec![reservation([10, 244, 0, 5], Some("u"), "a", None)],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Keep {
                    ip: ip("10.244.0.5"),
                },
            },
            Case {
                name: "a StatefulSet pod's successor reclaims its address",
                pod: pod("u-new", "pg-0", Some("s-1")),
                reservations: vec![released_sticky.clone()],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Reclaim {
                    ip: ip("10.244.0.4"),
                    resource_version: 7,
                },
            },
            Case {
                name: "a reservation held by a dead pod is reclaimed too",
                pod: pod("u-new", "pg-0", Some("s-1")),
                reservations: vec![reservation(
                    [10, 244, 0, 4],
                    Some("dead"),
                    "pg-0",
                    Some("s-1"),
                )],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Reclaim {
                    ip: ip("10.244.0.4"),
                    resource_version: 7,
                },
            },
            Case {
                name: "not while the old pod still runs",
                pod: pod("u-new", "pg-0", Some("s-1")),
                reservations: vec![reservation(
                    [10, 244, 0, 4],
                    Some("alive-old"),
                    "pg-0",
                    Some("s-1"),
                )],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.2"),
                },
            },
            Case {
                name: "not while an interface still carries it",
                pod: pod("u-new", "pg-0", Some("s-1")),
                reservations: vec![released_sticky.clone()],
                carried: [ip("10.244.0.4")].into(),
                cursor: "0.0.0.0",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.2"),
                },
            },
            Case {
                name: "not for a new StatefulSet of the same name",
                pod: pod("u-new", "pg-0", Some("s-2")),
                reservations: vec![released_sticky.clone()],
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.2"),
                },
            },
            Case {
                name: "another pod does not get a kept address while others are free",
                pod: pod("u", "web", None),
                reservations: vec![released_sticky.clone()],
                carried: none.clone(),
                cursor: "10.244.0.3",
                expected: Decision::Fresh {
                    ip: ip("10.244.0.5"),
                },
            },
            Case {
                name: "a full pool is exhausted",
                pod: pod("u", "a", None),
                reservations: full.clone(),
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Exhausted { capacity: 5 },
            },
            Case {
                name: "a full pool gives up a stale record first",
                pod: pod("u", "a", None),
                reservations: {
                    let mut r = full.clone();
                    r[1].holder = Some("dead".into());
                    r[0] = released_sticky.clone();
                    r[0].ip = ip("10.244.0.2");
                    r
                },
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Replace {
                    ip: ip("10.244.0.3"),
                    resource_version: 7,
                },
            },
            Case {
                name: "then the oldest released reservation",
                pod: pod("u", "a", None),
                reservations: {
                    let mut r = full.clone();
                    r[2] = released_sticky.clone();
                    r[3] = older_sticky.clone();
                    r
                },
                carried: none.clone(),
                cursor: "0.0.0.0",
                expected: Decision::Replace {
                    ip: ip("10.244.0.5"),
                    resource_version: 7,
                },
            },
        ];
        for case in cases {
            let got = decide(
                &case.pod,
                small,
                &case.reservations,
                &alive,
                &case.carried,
                ip(case.cursor),
            );
            assert_eq!(got, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn a_cidr_holds_all_but_network_gateway_and_broadcast() {
        assert_eq!(capacity(cidr("10.244.0.0/24")), 253);
        assert_eq!(capacity(cidr("10.244.0.0/30")), 1);
    }

    #[test]
    fn releasing_deletes_ordinary_records_and_keeps_sticky_ones() {
        let mut sticky = reservation([10, 244, 0, 4], Some("u"), "pg-0", Some("s"));
        assert_eq!(
            release(&reservation([10, 244, 0, 4], Some("u"), "a", None)),
            Release::Delete
        );
        assert_eq!(release(&sticky), Release::MarkReleased);
        sticky.holder = None;
        assert_eq!(
            release(&sticky),
            Release::MarkReleased,
            "released by a crash, not yet marked"
        );
        sticky.released_at = Some("t".into());
        assert_eq!(release(&sticky), Release::Nothing);
    }
}

//! Record building: from Services and Pods to the names and records of the zones, kept
//! incrementally.
//!
//! Each source (a Service, a Pod, or the static zone content) contributes *pieces* to
//! names. A change recomputes only the changed sources' contributions, marks the names
//! whose pieces differ, and re-encodes those nodes (and the empty non-terminals that
//! appear or vanish above them). The name table is sharded; publishing clones only the
//! shards that changed since the last version, so an update costs in proportion to what
//! changed, not to the cluster's size.

use std::collections::{BTreeMap, BTreeSet};

/// Hash tables keyed by trusted data (object and record names), with a fast hasher.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::config::Zones;
use crate::endpoints::{self, Endpoint};
use crate::index::{Hasher, Node, RrSetBuilder, SHARDS, Shard, ZoneIndex, ZoneTable};
use crate::model::{Change, ObjectKey, Pod, Service, Snapshot};
use crate::name::{self, Name, NameError};
use crate::wire::{self, rtype};

/// The schema version published at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Who contributes pieces to a name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Source {
    Static,
    /// `<ns>.svc.<zone>` exists while the namespace holds a Service or a Pod.
    Namespace(String),
    Service(Arc<ObjectKey>),
    Pod(Arc<ObjectKey>),
}

/// One fact about a name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Piece {
    /// The name exists (an empty non-terminal unless other pieces add records).
    Exists,
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// An SRV record; the target's addresses go to the additional section.
    Srv {
        target: Name,
        port: u16,
        target_ips: Vec<IpAddr>,
    },
    Ptr(Name),
    Txt(String),
    Ns(Name),
}

type Contribution = BTreeMap<Name, Vec<Piece>>;

/// The mutable side of the authority: inputs, contributions and the sharded name table.
pub(crate) struct Builder {
    zones: Zones,
    table: Arc<ZoneTable>,
    hasher: Hasher,
    svc_apex: Name,
    pod_apex: Name,
    services: HashMap<ObjectKey, Service>,
    /// namespace -> "key\0value" -> names of the Services whose selector has that pair.
    services_by_selector: HashMap<String, HashMap<String, BTreeSet<String>>>,
    pods: HashMap<ObjectKey, Pod>,
    /// namespace -> "key\0value" -> pod names.
    pods_by_label: HashMap<String, HashMap<String, HashSet<String>>>,
    /// The names each source contributes to.
    contributions: HashMap<Source, Vec<Name>>,
    /// Each name's pieces, by source (sorted by source).
    by_name: HashMap<Name, Vec<(Source, Vec<Piece>)>>,
    /// Names whose pieces are counted in their ancestors' `descendants`.
    holders: HashSet<Name>,
    descendants: HashMap<Name, u32>,
    dirty: HashSet<Name>,
    /// Services plus Pods per namespace.
    namespace_members: HashMap<String, usize>,
    shards: Vec<Arc<Shard>>,
    serial: u32,
}

/// What an update did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Names whose answers were re-encoded (added, changed or removed).
    pub names_changed: usize,
    /// Services whose endpoints were recomputed.
    pub services_recomputed: usize,
    /// The SOA serial of the published version.
    pub serial: u32,
}

impl Builder {
    pub(crate) fn new(zones: Zones) -> Self {
        let hasher = Hasher::default();
        let table = Arc::new(ZoneTable::new(
            &zones.apexes().cloned().collect::<Vec<_>>(),
            |_| Vec::new(),
            &hasher,
        ));
        let svc_apex = zones.cluster.child("svc").expect("svc under a valid zone");
        let pod_apex = zones.cluster.child("pod").expect("pod under a valid zone");
        let mut builder = Self {
            shards: (0..SHARDS)
                .map(|_| Arc::new(Shard::with_hasher(hasher.clone())))
                .collect(),
            zones,
            table,
            hasher,
            svc_apex,
            pod_apex,
            services: HashMap::default(),
            services_by_selector: HashMap::default(),
            pods: HashMap::default(),
            pods_by_label: HashMap::default(),
            contributions: HashMap::default(),
            by_name: HashMap::default(),
            holders: HashSet::default(),
            descendants: HashMap::default(),
            dirty: HashSet::default(),
            namespace_members: HashMap::default(),
            serial: 0,
        };
        let statics = builder.static_contribution();
        builder.set_contribution(Source::Static, statics);
        builder
    }

    fn static_contribution(&self) -> Contribution {
        let mut c = Contribution::new();
        let cluster = &self.zones.cluster;
        let ns_name = cluster
            .child("dns")
            .and_then(|dns| dns.child("ns"))
            .expect("ns.dns under a valid zone");
        for apex in self.zones.apexes() {
            add(&mut c, apex.clone(), Piece::Ns(ns_name.clone()));
        }
        for ip in &self.zones.nameserver_ips {
            add(&mut c, ns_name.clone(), address_piece(*ip));
        }
        if let Ok(version) = cluster.child("dns-version") {
            add(&mut c, version, Piece::Txt(SCHEMA_VERSION.into()));
        }
        add(&mut c, self.svc_apex.clone(), Piece::Exists);
        add(&mut c, self.pod_apex.clone(), Piece::Exists);
        c
    }

    /// Replaces all inputs with `snapshot`, touching only what differs.
    pub(crate) fn replace(&mut self, snapshot: Snapshot) -> UpdateStats {
        let mut changes = Vec::new();
        {
            // Deletions: what is held but not in the snapshot (keys borrowed, not cloned).
            let services: HashSet<&ObjectKey> = snapshot.services.iter().map(|s| &s.key).collect();
            let pods: HashSet<&ObjectKey> = snapshot.pods.iter().map(|p| &p.key).collect();
            for key in self.services.keys().filter(|key| !services.contains(key)) {
                changes.push(Change::DeleteService(key.clone()));
            }
            for key in self.pods.keys().filter(|key| !pods.contains(key)) {
                changes.push(Change::DeletePod(key.clone()));
            }
        }
        for pod in snapshot.pods {
            if self.pods.get(&pod.key) != Some(&pod) {
                changes.push(Change::UpsertPod(pod));
            }
        }
        for service in snapshot.services {
            if self.services.get(&service.key) != Some(&service) {
                changes.push(Change::UpsertService(service));
            }
        }
        self.apply(changes)
    }

    /// Applies incremental changes.
    pub(crate) fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> UpdateStats {
        let mut affected: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut pods_changed: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut namespaces: BTreeSet<String> = BTreeSet::new();
        for change in changes {
            match change {
                Change::UpsertService(service) => {
                    let key = service.key.clone();
                    if self.services.get(&key) == Some(&service) {
                        continue;
                    }
                    match self.services.remove(&key) {
                        Some(old) => self.unindex_selector(&old),
                        None => self.count_member(&key.namespace, true, &mut namespaces),
                    }
                    self.index_selector(&service);
                    self.services.insert(key.clone(), service);
                    affected.insert(key);
                }
                Change::DeleteService(key) => {
                    if let Some(old) = self.services.remove(&key) {
                        self.unindex_selector(&old);
                        self.count_member(&key.namespace, false, &mut namespaces);
                        affected.insert(key);
                    }
                }
                Change::UpsertPod(pod) => {
                    let key = pod.key.clone();
                    if self.pods.get(&key) == Some(&pod) {
                        continue;
                    }
                    let old = self.pods.remove(&key);
                    match &old {
                        Some(old) => self.unindex_labels(old),
                        None => self.count_member(&key.namespace, true, &mut namespaces),
                    }
                    self.index_labels(&pod);
                    self.affected_services(old.as_ref(), Some(&pod), &mut affected);
                    self.pods.insert(key.clone(), pod);
                    pods_changed.insert(key);
                }
                Change::DeletePod(key) => {
                    if let Some(old) = self.pods.remove(&key) {
                        self.unindex_labels(&old);
                        self.count_member(&key.namespace, false, &mut namespaces);
                        self.affected_services(Some(&old), None, &mut affected);
                        pods_changed.insert(key);
                    }
                }
            }
        }
        let services_recomputed = affected.len();
        for key in affected {
            let contribution = match self.services.get(&key) {
                Some(service) => self.service_contribution(service),
                None => Contribution::new(),
            };
            self.set_contribution(Source::Service(Arc::new(key)), contribution);
        }
        for key in pods_changed {
            let contribution = match self.pods.get(&key) {
                Some(pod) => self.pod_contribution(pod),
                None => Contribution::new(),
            };
            self.set_contribution(Source::Pod(Arc::new(key)), contribution);
        }
        for namespace in namespaces {
            let mut contribution = Contribution::new();
            if self.namespace_members.contains_key(&namespace)
                && let Ok(name) = self.namespace_name(&namespace)
            {
                add(&mut contribution, name, Piece::Exists);
            }
            self.set_contribution(Source::Namespace(namespace), contribution);
        }
        let names_changed = self.flush();
        UpdateStats {
            names_changed,
            services_recomputed,
            serial: self.serial,
        }
    }

    /// Counts a Service or Pod joining (or leaving) a namespace; notes the namespace when
    /// it starts or stops existing.
    fn count_member(&mut self, namespace: &str, joins: bool, changed: &mut BTreeSet<String>) {
        let count = self
            .namespace_members
            .entry(namespace.to_string())
            .or_default();
        if joins {
            *count += 1;
            if *count == 1 {
                changed.insert(namespace.to_string());
            }
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.namespace_members.remove(namespace);
                changed.insert(namespace.to_string());
            }
        }
    }

    fn affected_services(
        &self,
        old: Option<&Pod>,
        new: Option<&Pod>,
        into: &mut BTreeSet<ObjectKey>,
    ) {
        let Some(namespace) = old.or(new).map(|pod| &pod.key.namespace) else {
            return;
        };
        let Some(by_selector) = self.services_by_selector.get(namespace) else {
            return;
        };
        // A Service selecting the Pod has every selector pair among the Pod's labels, so
        // looking up the Pod's own label pairs finds every candidate.
        for pod in [old, new].into_iter().flatten() {
            for (key, value) in &pod.labels {
                let Some(names) = by_selector.get(&label_key(key, value)) else {
                    continue;
                };
                for name in names {
                    let service_key = ObjectKey::new(namespace.clone(), name.clone());
                    if into.contains(&service_key) {
                        continue;
                    }
                    if let Some(service) = self.services.get(&service_key)
                        && endpoints::selects(service, pod)
                    {
                        into.insert(service_key);
                    }
                }
            }
        }
    }

    fn index_selector(&mut self, service: &Service) {
        let Some(selector) = &service.selector else {
            return;
        };
        let by_selector = self
            .services_by_selector
            .entry(service.key.namespace.clone())
            .or_default();
        for (key, value) in selector {
            by_selector
                .entry(label_key(key, value))
                .or_default()
                .insert(service.key.name.clone());
        }
    }

    fn unindex_selector(&mut self, service: &Service) {
        let Some(selector) = &service.selector else {
            return;
        };
        if let Some(by_selector) = self.services_by_selector.get_mut(&service.key.namespace) {
            for (key, value) in selector {
                let pair = label_key(key, value);
                if let Some(names) = by_selector.get_mut(&pair) {
                    names.remove(&service.key.name);
                    if names.is_empty() {
                        by_selector.remove(&pair);
                    }
                }
            }
            if by_selector.is_empty() {
                self.services_by_selector.remove(&service.key.namespace);
            }
        }
    }

    fn index_labels(&mut self, pod: &Pod) {
        let by_label = self
            .pods_by_label
            .entry(pod.key.namespace.clone())
            .or_default();
        for (key, value) in &pod.labels {
            by_label
                .entry(label_key(key, value))
                .or_default()
                .insert(pod.key.name.clone());
        }
    }

    fn unindex_labels(&mut self, pod: &Pod) {
        if let Some(by_label) = self.pods_by_label.get_mut(&pod.key.namespace) {
            for (key, value) in &pod.labels {
                let label = label_key(key, value);
                if let Some(names) = by_label.get_mut(&label) {
                    names.remove(&pod.key.name);
                    if names.is_empty() {
                        by_label.remove(&label);
                    }
                }
            }
            if by_label.is_empty() {
                self.pods_by_label.remove(&pod.key.namespace);
            }
        }
    }

    /// The endpoints of a Service, found through the label index.
    fn endpoints_of(&self, service: &Service) -> Vec<Endpoint> {
        let Some(selector) = service.selector.as_ref().filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let Some(by_label) = self.pods_by_label.get(&service.key.namespace) else {
            return Vec::new();
        };
        let mut smallest: Option<&HashSet<String>> = None;
        for (key, value) in selector {
            let Some(names) = by_label.get(&label_key(key, value)) else {
                return Vec::new();
            };
            if smallest.is_none_or(|s| names.len() < s.len()) {
                smallest = Some(names);
            }
        }
        let namespace = &service.key.namespace;
        let pods = smallest.into_iter().flatten().filter_map(|name| {
            self.pods
                .get(&ObjectKey::new(namespace.clone(), name.clone()))
        });
        endpoints::select_endpoints(service, pods)
    }

    fn namespace_name(&self, namespace: &str) -> Result<Name, NameError> {
        self.svc_apex.child(namespace)
    }

    fn service_contribution(&self, service: &Service) -> Contribution {
        let mut c = Contribution::new();
        let key = &service.key;
        let service_name = match self
            .namespace_name(&key.namespace)
            .and_then(|ns| ns.child(&key.name))
        {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(service = %key, %error, "service name is not a valid DNS name: no records");
                return c;
            }
        };
        let endpoints = self.endpoints_of(service);
        // Targets: one name per endpoint hostname (or per address without one).
        let mut targets: Vec<(Name, Vec<IpAddr>, &Endpoint)> = Vec::new();
        for endpoint in &endpoints {
            let mut by_label: Vec<(String, Vec<IpAddr>)> = Vec::new();
            match &endpoint.hostname {
                Some(hostname) => by_label.push((hostname.clone(), endpoint.ips.clone())),
                None => {
                    for ip in &endpoint.ips {
                        by_label.push((name::dashed_ip(*ip), vec![*ip]));
                    }
                }
            }
            for (label, ips) in by_label {
                match service_name.child(&label) {
                    Ok(target) => targets.push((target, ips, endpoint)),
                    Err(error) => tracing::warn!(
                        service = %key, pod = %endpoint.pod, %error,
                        "endpoint hostname is not a valid DNS label: endpoint left out"
                    ),
                }
            }
        }
        for (target, ips, endpoint) in &targets {
            for ip in ips {
                add(&mut c, service_name.clone(), address_piece(*ip));
                add(&mut c, target.clone(), address_piece(*ip));
                if self.zones.in_pod_network(*ip) {
                    add(&mut c, Name::reverse(*ip), Piece::Ptr(target.clone()));
                }
            }
            for port in &endpoint.ports {
                let Some(port_name) = &port.name else {
                    continue;
                };
                let srv_name = service_name
                    .child(&format!("_{}", port.protocol.srv_label()))
                    .and_then(|proto| proto.child(&format!("_{port_name}")));
                match srv_name {
                    Ok(srv_name) => add(
                        &mut c,
                        srv_name,
                        Piece::Srv {
                            target: target.clone(),
                            port: port.port,
                            target_ips: ips.clone(),
                        },
                    ),
                    Err(error) => tracing::warn!(
                        service = %key, port = %port_name, %error,
                        "port name is not a valid DNS label: no SRV record"
                    ),
                }
            }
        }
        c
    }

    fn pod_contribution(&self, pod: &Pod) -> Contribution {
        let mut c = Contribution::new();
        if pod.phase.is_terminal() {
            return c;
        }
        // The deprecated but required `<a-b-c-d>.<ns>.pod.<zone>` records, verified
        // against the Pod's own addresses (CoreDNS `pods verified`).
        let Ok(namespace) = self.pod_apex.child(&pod.key.namespace) else {
            return c;
        };
        for ip in &pod.ips {
            if let Ok(name) = namespace.child(&name::dashed_ip(*ip)) {
                add(&mut c, name, address_piece(*ip));
            }
        }
        c
    }

    fn set_contribution(&mut self, source: Source, new: Contribution) {
        let old_names = self.contributions.remove(&source).unwrap_or_default();
        for name in &old_names {
            if new.contains_key(name) {
                continue;
            }
            if let Some(entries) = self.by_name.get_mut(name) {
                entries.retain(|(s, _)| *s != source);
                if entries.is_empty() {
                    self.by_name.remove(name);
                }
            }
            self.dirty.insert(name.clone());
        }
        let mut names = Vec::with_capacity(new.len());
        for (name, pieces) in new {
            let entries = self.by_name.entry(name.clone()).or_default();
            match entries.binary_search_by(|(s, _)| s.cmp(&source)) {
                Ok(at) if entries[at].1 == pieces => {}
                Ok(at) => {
                    entries[at].1 = pieces;
                    self.dirty.insert(name.clone());
                }
                Err(at) => {
                    entries.insert(at, (source.clone(), pieces));
                    self.dirty.insert(name.clone());
                }
            }
            names.push(name);
        }
        if !names.is_empty() {
            self.contributions.insert(source, names);
        }
    }

    /// Re-encodes dirty names and the non-terminals above them; bumps the serial.
    fn flush(&mut self) -> usize {
        let dirty: Vec<Name> = self.dirty.drain().collect();
        let mut rebuild: HashSet<Name> = dirty.iter().cloned().collect();
        for name in &dirty {
            let now = self.by_name.contains_key(name);
            let was = self.holders.contains(name);
            if now == was {
                continue;
            }
            if now {
                self.holders.insert(name.clone());
            } else {
                self.holders.remove(name);
            }
            let mut current = name.wire();
            while !self.table.is_apex(current) {
                let Some(parent) = name::parent(current) else {
                    break;
                };
                match self.descendants.get_mut(parent) {
                    Some(count) if now => *count += 1,
                    Some(count) => {
                        *count -= 1;
                        if *count == 0 {
                            self.descendants.remove(parent);
                            rebuild.insert(Name::from_wire_unchecked(parent));
                        }
                    }
                    None if now => {
                        let parent_name = Name::from_wire_unchecked(parent);
                        self.descendants.insert(parent_name.clone(), 1);
                        rebuild.insert(parent_name);
                    }
                    None => {}
                }
                current = parent;
            }
        }
        let changed = rebuild.len();
        for name in rebuild {
            let node = self.build_node(&name);
            let shard = ZoneIndex::shard_of(&self.hasher, name.wire());
            let shard = Arc::make_mut(&mut self.shards[shard]);
            match node {
                Some(node) => {
                    shard.insert(name, Arc::new(node));
                }
                None => {
                    shard.remove(&name);
                }
            }
        }
        changed
    }

    fn pieces_at(&self, name: &Name) -> Vec<&Piece> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|(_, pieces)| pieces.iter())
            .collect()
    }

    fn build_node(&self, name: &Name) -> Option<Node> {
        let pieces = self.pieces_at(name);
        let apex = self.table.is_apex(name.wire());
        if pieces.is_empty() && !self.descendants.contains_key(name) && !apex {
            return None;
        }
        let zone = self.table.zone_of(name.wire())?;
        let ttl = self.zones.ttl;
        let mut a = BTreeSet::new();
        let mut aaaa = BTreeSet::new();
        let mut srv = BTreeSet::new();
        let mut ptr = BTreeSet::new();
        let mut txt = BTreeSet::new();
        let mut ns = BTreeSet::new();
        for piece in pieces {
            match piece {
                Piece::Exists => {}
                Piece::A(ip) => {
                    a.insert(*ip);
                }
                Piece::Aaaa(ip) => {
                    aaaa.insert(*ip);
                }
                Piece::Srv {
                    target,
                    port,
                    target_ips,
                } => {
                    srv.insert((target, *port, target_ips));
                }
                Piece::Ptr(target) => {
                    ptr.insert(target);
                }
                Piece::Txt(text) => {
                    txt.insert(text);
                }
                Piece::Ns(target) => {
                    ns.insert(target);
                }
            }
        }
        let mut rrsets = Vec::new();
        if !a.is_empty() {
            let mut set = RrSetBuilder::new(name, rtype::A, ttl);
            for ip in a {
                set.answer(|b| b.extend_from_slice(&ip.octets()));
            }
            rrsets.push(set.finish());
        }
        if !aaaa.is_empty() {
            let mut set = RrSetBuilder::new(name, rtype::AAAA, ttl);
            for ip in aaaa {
                set.answer(|b| b.extend_from_slice(&ip.octets()));
            }
            rrsets.push(set.finish());
        }
        if !srv.is_empty() {
            // CoreDNS: priority 0, weight 100/N (at least 1).
            let weight = (100 / srv.len()).max(1) as u16;
            let mut set = RrSetBuilder::new(name, rtype::SRV, ttl);
            let mut additional = Vec::new();
            for (target, port, ips) in &srv {
                let rdata_at = set.answer(|b| {
                    b.extend_from_slice(&0u16.to_be_bytes());
                    b.extend_from_slice(&weight.to_be_bytes());
                    b.extend_from_slice(&port.to_be_bytes());
                    // RFC 2782: the target is never compressed.
                    b.extend_from_slice(target.wire());
                });
                additional.push((*target, rdata_at + 6, *ips));
            }
            // Each target's addresses once, even when it serves several ports.
            let mut seen = HashSet::default();
            for (target, at, ips) in additional {
                if seen.insert(target) {
                    for ip in ips {
                        set.additional_address(target, Some(at), *ip);
                    }
                }
            }
            rrsets.push(set.finish());
        }
        if !ptr.is_empty() {
            let mut set = RrSetBuilder::new(name, rtype::PTR, ttl);
            for target in ptr {
                set.answer(|b| b.extend_from_slice(target.wire()));
            }
            rrsets.push(set.finish());
        }
        if !txt.is_empty() {
            let mut set = RrSetBuilder::new(name, rtype::TXT, ttl);
            for text in txt {
                set.answer(|b| {
                    for chunk in text.as_bytes().chunks(255) {
                        b.push(chunk.len() as u8);
                        b.extend_from_slice(chunk);
                    }
                });
            }
            rrsets.push(set.finish());
        }
        if !ns.is_empty() {
            let mut set = RrSetBuilder::new(name, rtype::NS, ttl);
            let mut glue = Vec::new();
            for target in ns {
                let at = set.answer(|b| b.extend_from_slice(target.wire()));
                glue.push((target, at));
            }
            for (target, at) in glue {
                for piece in self.pieces_at(target) {
                    match piece {
                        Piece::A(ip) => set.additional_address(target, Some(at), IpAddr::V4(*ip)),
                        Piece::Aaaa(ip) => {
                            set.additional_address(target, Some(at), IpAddr::V6(*ip))
                        }
                        _ => {}
                    }
                }
            }
            rrsets.push(set.finish());
        }
        Some(Node { zone, apex, rrsets })
    }

    /// Publishes the current state as a new immutable index.
    pub(crate) fn publish(&mut self, now_unix: u64) -> ZoneIndex {
        // The serial follows the clock (as CoreDNS) but always moves forward.
        self.serial = (now_unix as u32).max(self.serial.wrapping_add(1));
        let cluster = self.zones.cluster.clone();
        let ttl = self.zones.ttl;
        let serial = self.serial;
        let apexes: Vec<Name> = self.zones.apexes().cloned().collect();
        let table = ZoneTable::new(&apexes, |_| soa_tail(&cluster, serial, ttl), &self.hasher);
        ZoneIndex {
            zones: Arc::new(table),
            shards: self.shards.clone(),
            hasher: self.hasher.clone(),
            ttl,
            serial,
        }
    }

    /// The zones' content in master-file format (for comparison servers and debugging).
    pub(crate) fn master_files(&self) -> Vec<(String, String)> {
        let apexes: Vec<Name> = self.zones.apexes().cloned().collect();
        let mut files: Vec<(String, String)> = apexes
            .iter()
            .map(|apex| {
                let soa = format!(
                    "$ORIGIN {apex}\n$TTL {ttl}\n@ IN SOA ns.dns.{c} hostmaster.{c} {serial} 7200 1800 86400 {ttl}\n",
                    ttl = self.zones.ttl,
                    c = self.zones.cluster,
                    serial = self.serial.max(1),
                );
                (apex.to_string(), soa)
            })
            .collect();
        let mut names: Vec<&Name> = self.by_name.keys().collect();
        names.sort();
        for name in names {
            let Some(zone) = self.table.zone_of(name.wire()) else {
                continue;
            };
            let text = &mut files[usize::from(zone)].1;
            let pieces = self.pieces_at(name);
            let srv_count = pieces
                .iter()
                .filter(|p| matches!(p, Piece::Srv { .. }))
                .count();
            let mut lines = BTreeSet::new();
            for piece in pieces {
                let rdata = match piece {
                    Piece::Exists => continue,
                    Piece::A(ip) => format!("A {ip}"),
                    Piece::Aaaa(ip) => format!("AAAA {ip}"),
                    Piece::Srv { target, port, .. } => {
                        format!("SRV 0 {} {port} {target}", (100 / srv_count).max(1))
                    }
                    Piece::Ptr(target) => format!("PTR {target}"),
                    Piece::Txt(text) => format!("TXT \"{text}\""),
                    Piece::Ns(target) => format!("NS {target}"),
                };
                lines.insert(format!("{name} IN {rdata}\n"));
            }
            text.extend(lines);
        }
        files
    }
}

fn add(c: &mut Contribution, name: Name, piece: Piece) {
    let pieces = c.entry(name).or_default();
    if !pieces.contains(&piece) {
        pieces.push(piece);
    }
}

fn address_piece(ip: IpAddr) -> Piece {
    match ip {
        IpAddr::V4(v4) => Piece::A(v4),
        IpAddr::V6(v6) => Piece::Aaaa(v6),
    }
}

fn label_key(key: &str, value: &str) -> String {
    let mut label = String::with_capacity(key.len() + value.len() + 1);
    label.push_str(key);
    label.push('\0');
    label.push_str(value);
    label
}

/// The SOA record after its owner: CoreDNS's values (refresh 7200, retry 1800, expire
/// 86400, minimum = TTL).
fn soa_tail(cluster: &Name, serial: u32, ttl: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    let mname = cluster
        .child("dns")
        .and_then(|dns| dns.child("ns"))
        .unwrap_or_else(|_| cluster.clone());
    let rname = cluster
        .child("hostmaster")
        .unwrap_or_else(|_| cluster.clone());
    wire::push_record(&mut buf, wire::Owner::Name(&[]), rtype::SOA, ttl, |b| {
        b.extend_from_slice(mname.wire());
        b.extend_from_slice(rname.wire());
        for value in [serial, 7200, 1800, 86400, ttl] {
            b.extend_from_slice(&value.to_be_bytes());
        }
    });
    buf
}

//! The immutable answer index: every existing name of the authoritative zones with its
//! pre-encoded answers. Built by `records`, swapped atomically by `Authority`, read by
//! the responder without locks.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::name::Name;
use crate::wire::{self, Owner, rtype};

/// Number of shards of the name table. An update clones only the shards it touches.
pub(crate) const SHARDS: usize = 64;

pub(crate) type Hasher = foldhash::fast::RandomState;
pub(crate) type Shard = HashMap<Name, Arc<Node>, Hasher>;

/// One record set, encoded as it appears in a response whose question is this node's
/// name: owners are pointers to the question (`0xC00C`), so the answer echoes the
/// question's case.
#[derive(Debug)]
pub(crate) struct RrSet {
    pub(crate) rtype: u16,
    /// Answer records, back to back.
    pub(crate) answer: Box<[u8]>,
    /// End offset (in `answer`) of each answer record.
    pub(crate) answer_ends: Box<[u32]>,
    /// Additional records (SRV targets' and NS targets' addresses).
    pub(crate) additional: Box<[u8]>,
    /// End offset (in `additional`) of each additional record.
    pub(crate) additional_ends: Box<[u32]>,
}

/// An existing name. A node without record sets is an empty non-terminal (NODATA for
/// every type).
#[derive(Debug)]
pub(crate) struct Node {
    /// Index of the zone in [`ZoneIndex::zones`].
    pub(crate) zone: u16,
    /// Whether this is the zone apex (answers SOA).
    pub(crate) apex: bool,
    pub(crate) rrsets: Vec<RrSet>,
}

impl Node {
    pub(crate) fn rrset(&self, rr_type: u16) -> Option<&RrSet> {
        self.rrsets.iter().find(|set| set.rtype == rr_type)
    }
}

/// One authoritative zone.
#[derive(Debug)]
pub(crate) struct Zone {
    pub(crate) apex: Name,
    /// The SOA record after its owner name: type, class, TTL, rdlength, rdata.
    pub(crate) soa_tail: Box<[u8]>,
}

/// The zones of an index and how to find which one holds a name.
#[derive(Debug)]
pub(crate) struct ZoneTable {
    pub(crate) zones: Vec<Zone>,
    by_apex: HashMap<Name, u16, Hasher>,
    apex_lengths: Vec<usize>,
}

impl ZoneTable {
    pub(crate) fn new(
        apexes: &[Name],
        soa_tail: impl Fn(&Name) -> Vec<u8>,
        hasher: &Hasher,
    ) -> Self {
        let mut by_apex = HashMap::with_hasher(hasher.clone());
        let mut apex_lengths = Vec::new();
        let zones = apexes
            .iter()
            .enumerate()
            .map(|(i, apex)| {
                by_apex.insert(apex.clone(), i as u16);
                if !apex_lengths.contains(&apex.wire().len()) {
                    apex_lengths.push(apex.wire().len());
                }
                Zone {
                    apex: apex.clone(),
                    soa_tail: soa_tail(apex).into_boxed_slice(),
                }
            })
            .collect();
        Self {
            zones,
            by_apex,
            apex_lengths,
        }
    }

    /// The zone holding `name` (lowercase wire form), if any.
    pub(crate) fn zone_of(&self, name: &[u8]) -> Option<u16> {
        let mut best: Option<(usize, u16)> = None;
        if self.zones.len() <= 8 {
            // Few zones (the usual case): comparing suffixes beats hashing them.
            for (i, zone) in self.zones.iter().enumerate() {
                let apex = zone.apex.wire();
                if name.ends_with(apex)
                    && is_label_boundary(name, name.len() - apex.len())
                    && best.is_none_or(|(best_len, _)| apex.len() > best_len)
                {
                    best = Some((apex.len(), i as u16));
                }
            }
            return best.map(|(_, zone)| zone);
        }
        for &len in &self.apex_lengths {
            if len > name.len() {
                continue;
            }
            let suffix = &name[name.len() - len..];
            if let Some(&zone) = self.by_apex.get(suffix) {
                // The suffix must start at a label boundary: walk the labels to check.
                if is_label_boundary(name, name.len() - len)
                    && best.is_none_or(|(best_len, _)| len > best_len)
                {
                    best = Some((len, zone));
                }
            }
        }
        best.map(|(_, zone)| zone)
    }

    pub(crate) fn is_apex(&self, name: &[u8]) -> bool {
        self.by_apex.contains_key(name)
    }
}

fn is_label_boundary(name: &[u8], offset: usize) -> bool {
    let mut at = 0;
    while at < offset {
        at += 1 + usize::from(name[at]);
    }
    at == offset
}

/// A consistent, immutable view of everything the authority answers.
#[derive(Debug)]
pub struct ZoneIndex {
    pub(crate) zones: Arc<ZoneTable>,
    pub(crate) shards: Vec<Arc<Shard>>,
    pub(crate) hasher: Hasher,
    pub(crate) ttl: u32,
    pub(crate) serial: u32,
}

impl ZoneIndex {
    pub(crate) fn shard_of(hasher: &Hasher, name: &[u8]) -> usize {
        (hasher.hash_one(name) as usize) % SHARDS
    }

    /// The node of an existing name (lowercase wire form).
    pub(crate) fn node(&self, name: &[u8]) -> Option<&Node> {
        self.shards[Self::shard_of(&self.hasher, name)]
            .get(name)
            .map(|node| &**node)
    }

    /// Number of existing names, empty non-terminals included.
    pub fn name_count(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    /// The TTL of every record in this index.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The SOA serial of this version.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Whether `name` (dotted, any case) exists in the index.
    pub fn contains(&self, name: &str) -> bool {
        Name::from_dotted(name).is_ok_and(|name| self.node(name.wire()).is_some())
    }
}

/// Builds one record set for the node `owner`.
pub(crate) struct RrSetBuilder {
    rtype: u16,
    ttl: u32,
    /// Offset of the answer section in a response to `owner`.
    base: usize,
    answer: Vec<u8>,
    answer_ends: Vec<u32>,
    additional: Vec<u8>,
    additional_ends: Vec<u32>,
}

impl RrSetBuilder {
    pub(crate) fn new(owner: &Name, rtype: u16, ttl: u32) -> Self {
        Self {
            rtype,
            ttl,
            base: wire::HEADER_LEN + owner.wire().len() + 4,
            answer: Vec::new(),
            answer_ends: Vec::new(),
            additional: Vec::new(),
            additional_ends: Vec::new(),
        }
    }

    /// Adds an answer record; `rdata` writes its data. Returns the message offset at which
    /// the rdata starts (for pointers from additional records).
    pub(crate) fn answer(&mut self, rdata: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.answer.len();
        wire::push_record(
            &mut self.answer,
            Owner::Pointer(wire::QNAME_OFFSET),
            self.rtype,
            self.ttl,
            rdata,
        );
        self.answer_ends.push(self.answer.len() as u32);
        self.base + start + 2 + 10
    }

    /// Adds an address record for `name`, written as a pointer to `at` when that offset is
    /// reachable by a compression pointer, else in full.
    pub(crate) fn additional_address(
        &mut self,
        name: &Name,
        at: Option<usize>,
        ip: std::net::IpAddr,
    ) {
        // An additional record follows every answer; its pointer target lies in the answer
        // section, which precedes it, so the offset is final.
        let owner = match at {
            Some(at) if at < 0x3FFF => Owner::Pointer(at as u16),
            _ => Owner::Name(name.wire()),
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                wire::push_record(&mut self.additional, owner, rtype::A, self.ttl, |b| {
                    b.extend_from_slice(&v4.octets())
                })
            }
            std::net::IpAddr::V6(v6) => {
                wire::push_record(&mut self.additional, owner, rtype::AAAA, self.ttl, |b| {
                    b.extend_from_slice(&v6.octets())
                })
            }
        }
        self.additional_ends.push(self.additional.len() as u32);
    }

    pub(crate) fn finish(self) -> RrSet {
        RrSet {
            rtype: self.rtype,
            answer: self.answer.into_boxed_slice(),
            answer_ends: self.answer_ends.into_boxed_slice(),
            additional: self.additional.into_boxed_slice(),
            additional_ends: self.additional_ends.into_boxed_slice(),
        }
    }
}

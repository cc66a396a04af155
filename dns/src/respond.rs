//! The request path: one query in, one response out (or "forward", or silence).
//!
//! Pure and synchronous: no I/O, no allocation beyond the caller's output buffer. The
//! server calls it for every datagram and stream message; the fuzz target calls it with
//! arbitrary bytes.

use crate::index::{Node, RrSet, ZoneIndex};
use crate::wire::{self, CLASS_ANY, CLASS_IN, Header, Owner, Parsed, Query, rcode, rtype};

/// How the query arrived; decides the size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: responses are limited to the client's EDNS size (512 bytes without EDNS),
    /// capped by the server's maximum, and truncated with TC beyond it.
    Udp,
    /// TCP: responses up to 65535 bytes.
    Tcp,
}

/// Per-request facts the responder needs from the server.
#[derive(Clone, Copy, Debug)]
pub struct RequestContext {
    /// How the query arrived.
    pub transport: Transport,
    /// The client may use this server as a recursive resolver (forwarding).
    pub recursion_allowed: bool,
    /// Largest UDP response the server sends, whatever the client offers.
    pub max_udp_payload: u16,
}

/// What to do with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the bytes now in the output buffer.
    Reply,
    /// The name is outside the authoritative zones and the client may recurse: forward.
    Forward,
    /// Send nothing (not a query, or too short to answer).
    Drop,
}

/// Handles one request, writing any response into `out` (cleared first).
pub fn respond(
    index: &ZoneIndex,
    request: &[u8],
    ctx: &RequestContext,
    out: &mut Vec<u8>,
) -> Outcome {
    out.clear();
    let query = match wire::parse_query(request) {
        Parsed::Drop => return Outcome::Drop,
        Parsed::Error {
            id,
            opcode,
            rd,
            rcode,
        } => {
            out.resize(wire::HEADER_LEN, 0);
            Header {
                id,
                recursion_desired: rd,
                recursion_available: ctx.recursion_allowed,
                rcode,
                ..Header::default()
            }
            .write(out);
            // Keep the opcode of the request (RFC 1035 4.1.1).
            out[2] |= (opcode & 0x0F) << 3;
            return Outcome::Reply;
        }
        Parsed::Query(query) => query,
    };
    let limit = match (ctx.transport, query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => wire::CLASSIC_UDP_SIZE,
        (Transport::Udp, Some(edns)) => {
            usize::from(edns.udp_size.min(ctx.max_udp_payload)).max(wire::CLASSIC_UDP_SIZE)
        }
    };
    let mut response = Response::start(request, &query, ctx, limit, out);

    if let Some(edns) = query.edns
        && edns.version > 0
    {
        // BADVERS (16): upper bits in the OPT record, lower bits (0) in the header.
        response.extended_rcode = 1;
        return response.finish(rcode::NOERROR, false);
    }

    let qname = query.qname();
    let node = index.node(qname);
    let zone = match node {
        Some(node) => Some(node.zone),
        None => index.zones.zone_of(qname),
    };
    let Some(zone) = zone else {
        // Not ours: forward for allowed clients, refuse everyone else. Zone transfers are
        // never forwarded.
        let transfer = matches!(query.qtype, rtype::AXFR | rtype::IXFR);
        if ctx.recursion_allowed && !transfer {
            out.clear();
            return Outcome::Forward;
        }
        return response.finish(rcode::REFUSED, false);
    };
    if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
        return response.finish(rcode::REFUSED, false);
    }
    if matches!(query.qtype, rtype::AXFR | rtype::IXFR) {
        return response.finish(rcode::REFUSED, false);
    }
    let apex_len = index.zones.zones[usize::from(zone)].apex.wire().len();
    let soa_owner = wire::QNAME_OFFSET + (qname.len() - apex_len) as u16;
    let soa_tail = &index.zones.zones[usize::from(zone)].soa_tail;

    let Some(node) = node else {
        response.authority_soa(soa_owner, soa_tail);
        return response.finish(rcode::NXDOMAIN, true);
    };
    match query.qtype {
        rtype::ANY => {
            let mut any = false;
            if node.apex {
                response.answer_soa(soa_tail);
                any = true;
            }
            for set in &node.rrsets {
                response.answers(set);
                any = true;
            }
            if !any {
                response.authority_soa(soa_owner, soa_tail);
            }
        }
        rtype::SOA if node.apex => response.answer_soa(soa_tail),
        qtype => match node_rrset(node, qtype) {
            Some(set) => {
                response.answers(set);
                response.additionals(set);
            }
            None => response.authority_soa(soa_owner, soa_tail),
        },
    }
    response.finish(rcode::NOERROR, true)
}

fn node_rrset(node: &Node, qtype: u16) -> Option<&RrSet> {
    node.rrset(qtype)
}

/// A response being assembled within a size limit.
struct Response<'a> {
    out: &'a mut Vec<u8>,
    header: Header,
    limit: usize,
    /// Bytes kept free for the OPT record.
    reserve: usize,
    edns: Option<wire::Edns>,
    max_udp_payload: u16,
    extended_rcode: u8,
    truncated_answers: bool,
}

impl<'a> Response<'a> {
    fn start(
        request: &[u8],
        query: &Query,
        ctx: &RequestContext,
        limit: usize,
        out: &'a mut Vec<u8>,
    ) -> Self {
        out.resize(wire::HEADER_LEN, 0);
        out.extend_from_slice(&request[wire::HEADER_LEN..query.question_end]);
        Self {
            out,
            header: Header {
                id: query.id,
                recursion_desired: query.recursion_desired,
                recursion_available: ctx.recursion_allowed,
                checking_disabled: query.checking_disabled,
                qdcount: 1,
                ..Header::default()
            },
            limit,
            reserve: if query.edns.is_some() {
                wire::OPT_LEN
            } else {
                0
            },
            edns: query.edns,
            max_udp_payload: ctx.max_udp_payload,
            extended_rcode: 0,
            truncated_answers: false,
        }
    }

    fn room(&self) -> usize {
        self.limit
            .saturating_sub(self.out.len())
            .saturating_sub(self.reserve)
    }

    /// Adds whole records from `bytes` (ends in `ends`) while they fit; returns how many.
    fn push_records(&mut self, bytes: &[u8], ends: &[u32]) -> (u16, bool) {
        let room = self.room();
        if bytes.len() <= room {
            self.out.extend_from_slice(bytes);
            return (ends.len() as u16, true);
        }
        let fitting = ends.partition_point(|&end| end as usize <= room);
        let end = if fitting == 0 {
            0
        } else {
            ends[fitting - 1] as usize
        };
        self.out.extend_from_slice(&bytes[..end]);
        (fitting as u16, false)
    }

    fn answers(&mut self, set: &RrSet) {
        if self.truncated_answers {
            return;
        }
        let (count, all) = self.push_records(&set.answer, &set.answer_ends);
        self.header.ancount += count;
        if !all {
            self.truncated_answers = true;
        }
    }

    fn additionals(&mut self, set: &RrSet) {
        // Additional records point into the answer section: only with every answer present.
        // Dropping them never sets TC (RFC 2181 9).
        if self.truncated_answers {
            return;
        }
        let (count, _) = self.push_records(&set.additional, &set.additional_ends);
        self.header.arcount += count;
    }

    fn answer_soa(&mut self, soa_tail: &[u8]) {
        if 2 + soa_tail.len() > self.room() {
            self.truncated_answers = true;
            return;
        }
        wire::push_owner(self.out, Owner::Pointer(wire::QNAME_OFFSET));
        self.out.extend_from_slice(soa_tail);
        self.header.ancount += 1;
    }

    fn authority_soa(&mut self, owner: u16, soa_tail: &[u8]) {
        if 2 + soa_tail.len() > self.room() {
            self.truncated_answers = true;
            return;
        }
        wire::push_owner(self.out, Owner::Pointer(owner));
        self.out.extend_from_slice(soa_tail);
        self.header.nscount += 1;
    }

    fn finish(mut self, rcode: u8, authoritative: bool) -> Outcome {
        self.header.rcode = rcode;
        self.header.authoritative = authoritative;
        self.header.truncated = self.truncated_answers;
        if let Some(edns) = self.edns {
            wire::push_opt(
                self.out,
                self.max_udp_payload,
                self.extended_rcode,
                edns.dnssec_ok,
            );
            self.header.arcount += 1;
        }
        self.header.write(&mut self.out[..wire::HEADER_LEN]);
        Outcome::Reply
    }
}

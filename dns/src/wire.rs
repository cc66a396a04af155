//! DNS wire format: parsing a query and the low-level pieces of a response.
//!
//! Hand-written rather than hickory-proto's `Message` so the hot path neither allocates
//! nor copies records: answers are pre-encoded when the index is built and a response is
//! header + the question as received + those bytes (see `respond`). Everything here is
//! bounds-checked and fuzzed (`dns/fuzz`).

/// Record type numbers used here.
pub(crate) mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const OPT: u16 = 41;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Class IN.
pub(crate) const CLASS_IN: u16 = 1;
/// Class ANY (`*`).
pub(crate) const CLASS_ANY: u16 = 255;

/// Response codes used here.
pub(crate) mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

/// Length of the DNS header.
pub(crate) const HEADER_LEN: usize = 12;
/// The offset of the question name in every message: the target of `0xC00C`.
pub(crate) const QNAME_OFFSET: u16 = 12;
/// Largest message over UDP without EDNS.
pub(crate) const CLASSIC_UDP_SIZE: usize = 512;

/// EDNS data from the query's OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query. `qname_lower` holds the lowercased wire name; the question as the client
/// sent it (original case) is `raw[12..question_end]`.
#[derive(Debug)]
pub(crate) struct Query {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub qname_lower: [u8; 255],
    pub qname_len: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl Query {
    pub(crate) fn qname(&self) -> &[u8] {
        &self.qname_lower[..self.qname_len]
    }
}

/// What parsing a datagram gave.
// The query variant is large (the lowercased name is inline) on purpose: it lives on the
// stack for one request, and boxing it would allocate on every query.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A well-formed standard query.
    Query(Query),
    /// A header we can answer with an error: `FORMERR` or `NOTIMP` (unknown opcode).
    Error {
        id: u16,
        opcode: u8,
        rd: bool,
        rcode: u8,
    },
    /// Not worth an answer (too short for a header, or a response: never reflect).
    Drop,
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// Skips a possibly compressed name starting at `at`; returns the offset after it.
fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    let mut length = 0usize;
    loop {
        let len = *buf.get(at)?;
        match len & 0xC0 {
            0x00 => {
                at += 1;
                if len == 0 {
                    return Some(at);
                }
                at += usize::from(len);
                length += usize::from(len) + 1;
                if length > 255 || at > buf.len() {
                    return None;
                }
            }
            // A pointer ends the name in place; where it points is irrelevant for skipping.
            0xC0 => {
                buf.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Parses a query datagram or stream message.
pub(crate) fn parse_query(buf: &[u8]) -> Parsed {
    if buf.len() < HEADER_LEN {
        return Parsed::Drop;
    }
    let id = u16::from_be_bytes([buf[0], buf[1]]);
    let flags = buf[2];
    if flags & 0x80 != 0 {
        return Parsed::Drop;
    }
    let opcode = (flags >> 3) & 0x0F;
    let rd = flags & 0x01 != 0;
    let error = |rcode| Parsed::Error {
        id,
        opcode,
        rd,
        rcode,
    };
    if opcode != 0 {
        return error(rcode::NOTIMP);
    }
    let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
    let ancount = u16::from_be_bytes([buf[6], buf[7]]);
    let nscount = u16::from_be_bytes([buf[8], buf[9]]);
    let arcount = u16::from_be_bytes([buf[10], buf[11]]);
    if qdcount != 1 {
        return error(rcode::FORMERR);
    }

    let mut qname_lower = [0u8; 255];
    let mut qname_len = 0usize;
    let mut at = HEADER_LEN;
    loop {
        let Some(&len) = buf.get(at) else {
            return error(rcode::FORMERR);
        };
        if len & 0xC0 != 0 {
            // Compression in the question (or extended label types) is not accepted.
            return error(rcode::FORMERR);
        }
        let len = usize::from(len);
        if qname_len + 1 + len > 255 || at + 1 + len > buf.len() {
            return error(rcode::FORMERR);
        }
        qname_lower[qname_len] = len as u8;
        for (i, b) in buf[at + 1..at + 1 + len].iter().enumerate() {
            qname_lower[qname_len + 1 + i] = b.to_ascii_lowercase();
        }
        qname_len += 1 + len;
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let (Some(qtype), Some(qclass)) = (u16_at(buf, at), u16_at(buf, at + 2)) else {
        return error(rcode::FORMERR);
    };
    at += 4;
    let question_end = at;

    let mut edns = None;
    let records = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
    for index in 0..records {
        let Some(after_name) = skip_name(buf, at) else {
            return error(rcode::FORMERR);
        };
        let (Some(rr_type), Some(rr_class), Some(rdlen)) = (
            u16_at(buf, after_name),
            u16_at(buf, after_name + 2),
            u16_at(buf, after_name + 8),
        ) else {
            return error(rcode::FORMERR);
        };
        let rdata_end = after_name + 10 + usize::from(rdlen);
        if rdata_end > buf.len() {
            return error(rcode::FORMERR);
        }
        let in_additional = index >= u32::from(ancount) + u32::from(nscount);
        if rr_type == rtype::OPT {
            // One OPT, in the additional section, owned by the root.
            if !in_additional || edns.is_some() || after_name != at + 1 || buf[at] != 0 {
                return error(rcode::FORMERR);
            }
            edns = Some(Edns {
                udp_size: rr_class,
                version: buf[after_name + 5],
                dnssec_ok: buf[after_name + 6] & 0x80 != 0,
            });
        }
        at = rdata_end;
    }

    Parsed::Query(Query {
        id,
        recursion_desired: rd,
        checking_disabled: flags_cd(buf),
        qname_lower,
        qname_len,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

fn flags_cd(buf: &[u8]) -> bool {
    buf[3] & 0x10 != 0
}

/// Where a record's owner name comes from.
#[derive(Clone, Copy)]
pub(crate) enum Owner<'a> {
    /// A compression pointer to an earlier name at this offset.
    Pointer(u16),
    /// The full wire name.
    Name(&'a [u8]),
}

/// Writes an owner name.
pub(crate) fn push_owner(buf: &mut Vec<u8>, owner: Owner<'_>) {
    match owner {
        Owner::Pointer(offset) => buf.extend_from_slice(&(0xC000 | offset).to_be_bytes()),
        Owner::Name(wire) => buf.extend_from_slice(wire),
    }
}

/// Writes a record: owner, type, class IN, TTL, then `rdata` (its length is filled in).
pub(crate) fn push_record(
    buf: &mut Vec<u8>,
    owner: Owner<'_>,
    rr_type: u16,
    ttl: u32,
    rdata: impl FnOnce(&mut Vec<u8>),
) {
    push_owner(buf, owner);
    buf.extend_from_slice(&rr_type.to_be_bytes());
    buf.extend_from_slice(&CLASS_IN.to_be_bytes());
    buf.extend_from_slice(&ttl.to_be_bytes());
    let rdlen_at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    rdata(buf);
    let rdlen = (buf.len() - rdlen_at - 2) as u16;
    buf[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
}

/// The 11-byte OPT record a response carries when the query had EDNS.
pub(crate) fn push_opt(buf: &mut Vec<u8>, udp_size: u16, extended_rcode: u8, dnssec_ok: bool) {
    buf.push(0);
    buf.extend_from_slice(&rtype::OPT.to_be_bytes());
    buf.extend_from_slice(&udp_size.to_be_bytes());
    buf.push(extended_rcode);
    buf.push(0); // version
    buf.push(if dnssec_ok { 0x80 } else { 0 });
    buf.push(0);
    buf.extend_from_slice(&[0, 0]); // no options
}

/// Length of the OPT record written by [`push_opt`].
pub(crate) const OPT_LEN: usize = 11;

/// Response header fields.
#[derive(Clone, Copy, Default)]
pub(crate) struct Header {
    pub id: u16,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    pub checking_disabled: bool,
    pub rcode: u8,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub(crate) fn write(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&self.id.to_be_bytes());
        buf[2] = 0x80
            | if self.authoritative { 0x04 } else { 0 }
            | if self.truncated { 0x02 } else { 0 }
            | if self.recursion_desired { 0x01 } else { 0 };
        buf[3] = if self.recursion_available { 0x80 } else { 0 }
            | if self.checking_disabled { 0x10 } else { 0 }
            | (self.rcode & 0x0F);
        buf[4..6].copy_from_slice(&self.qdcount.to_be_bytes());
        buf[6..8].copy_from_slice(&self.ancount.to_be_bytes());
        buf[8..10].copy_from_slice(&self.nscount.to_be_bytes());
        buf[10..12].copy_from_slice(&self.arcount.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16, additional: &[u8], arcount: u16) -> Vec<u8> {
        let mut buf = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        buf.extend_from_slice(&arcount.to_be_bytes());
        buf.extend_from_slice(name);
        buf.extend_from_slice(&qtype.to_be_bytes());
        buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        buf.extend_from_slice(additional);
        buf
    }

    #[test]
    fn a_plain_query_parses_with_its_name_lowercased() {
        let Parsed::Query(q) = parse_query(&query(b"\x03WeB\x05LoCaL\x00", rtype::A, &[], 0))
        else {
            panic!("not a query");
        };
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired);
        assert_eq!(q.qname(), b"\x03web\x05local\x00");
        assert_eq!(q.qtype, rtype::A);
        assert_eq!(q.question_end, 12 + 11 + 4);
        assert_eq!(q.edns, None);
    }

    #[test]
    fn edns_is_read_from_the_opt_record() {
        let opt = [0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 0];
        let Parsed::Query(q) = parse_query(&query(b"\x00", rtype::A, &opt, 1)) else {
            panic!("not a query");
        };
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
    }

    #[test]
    fn malformed_queries_get_formerr_or_are_dropped() {
        let opt = [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0];
        let mut two_opts = opt.to_vec();
        two_opts.extend_from_slice(&opt);
        let mut response = query(b"\x00", rtype::A, &[], 0);
        response[2] |= 0x80;
        let mut two_questions = query(b"\x00", rtype::A, &[], 0);
        two_questions[5] = 2;
        let mut notify = query(b"\x00", rtype::A, &[], 0);
        notify[2] = 4 << 3;
        let cases: Vec<(&str, Vec<u8>, Option<u8>)> = vec![
            ("short header", vec![0; 11], None),
            ("a response", response, None),
            ("two questions", two_questions, Some(rcode::FORMERR)),
            (
                "cut name",
                query(b"\x05ab", 0, &[], 0)[..14].to_vec(),
                Some(rcode::FORMERR),
            ),
            (
                "pointer in question",
                query(b"\xC0\x0C", rtype::A, &[], 0),
                Some(rcode::FORMERR),
            ),
            (
                "missing type",
                query(b"\x00", 1, &[], 0)[..13].to_vec(),
                Some(rcode::FORMERR),
            ),
            (
                "two opt records",
                query(b"\x00", rtype::A, &two_opts, 2),
                Some(rcode::FORMERR),
            ),
            (
                "missing additional",
                query(b"\x00", rtype::A, &[], 1),
                Some(rcode::FORMERR),
            ),
            ("opcode notify", notify, Some(rcode::NOTIMP)),
        ];
        for (name, buf, want) in cases {
            let got = match parse_query(&buf) {
                Parsed::Drop => None,
                Parsed::Error { rcode, .. } => Some(rcode),
                Parsed::Query(_) => panic!("{name}: parsed as a query"),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_name_longer_than_255_bytes_is_formerr() {
        let mut name = Vec::new();
        for _ in 0..5 {
            name.push(60);
            name.extend_from_slice(&[b'a'; 60]);
        }
        name.push(0);
        assert!(matches!(
            parse_query(&query(&name, rtype::A, &[], 0)),
            Parsed::Error {
                rcode: rcode::FORMERR,
                ..
            }
        ));
    }
}

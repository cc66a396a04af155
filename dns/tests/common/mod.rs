//! Shared test helpers: snapshots, queries encoded and answers decoded with hickory-proto
//! (an independent DNS implementation), and blocking UDP/TCP clients.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use berth_dns::{
    Authority, ContainerPort, ObjectKey, Pod, PodPhase, Protocol, RequestContext, Service,
    ServicePort, TargetPort, Transport, ZoneConfig,
};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

pub fn zone_config() -> ZoneConfig {
    ZoneConfig {
        cluster_domain: "cluster.local".into(),
        pod_networks: vec!["10.244.0.0/16".parse().unwrap()],
        ttl: 5,
        nameserver_ips: vec!["10.244.0.1".parse().unwrap()],
    }
}

pub fn service(ns: &str, name: &str, app: &str) -> Service {
    Service {
        key: ObjectKey::new(ns, name),
        headless: true,
        selector: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
        publish_not_ready_addresses: false,
        ports: vec![
            ServicePort {
                name: Some("sql".into()),
                protocol: Protocol::Tcp,
                port: 5432,
                target_port: Some(TargetPort::Name("postgres".into())),
            },
            ServicePort {
                name: None,
                protocol: Protocol::Tcp,
                port: 9000,
                target_port: None,
            },
        ],
    }
}

/// A ready StatefulSet-style pod `<set>-<ordinal>` with hostname and subdomain.
pub fn pod(ns: &str, set: &str, ordinal: u32, ip: &str) -> Pod {
    let name = format!("{set}-{ordinal}");
    Pod {
        key: ObjectKey::new(ns, name.clone()),
        labels: BTreeMap::from([("app".to_string(), set.to_string())]),
        hostname: Some(name),
        subdomain: Some(set.to_string()),
        ips: vec![ip.parse().unwrap()],
        ready: true,
        terminating: false,
        phase: PodPhase::Running,
        container_ports: vec![ContainerPort {
            name: Some("postgres".into()),
            protocol: Protocol::Tcp,
            container_port: 5432,
        }],
    }
}

/// Encodes a query, keeping the case of `name` exactly as given.
pub fn query_message(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut bytes = encode_query(name, rtype, edns);
    let mut wire = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    bytes[12..12 + wire.len()].copy_from_slice(&wire);
    bytes
}

fn encode_query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        message.set_edns(e);
    }
    message.to_vec().unwrap()
}

/// A decoded response, records rendered as text for easy comparison.
#[derive(Debug)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_available: bool,
    pub answers: Vec<String>,
    pub authority: Vec<String>,
    pub additional: Vec<String>,
    pub question: String,
    pub size: usize,
}

impl Answer {
    /// Answer rdata only, sorted.
    pub fn rdata(&self) -> Vec<String> {
        let mut data: Vec<String> = self
            .answers
            .iter()
            .map(|r| r.splitn(5, ' ').nth(4).unwrap_or("").to_string())
            .collect();
        data.sort();
        data
    }
}

pub fn decode(bytes: &[u8]) -> Answer {
    let message = Message::from_vec(bytes).expect("response decodes");
    let render =
        |records: &[hickory_proto::rr::Record]| records.iter().map(|r| r.to_string()).collect();
    Answer {
        rcode: message.metadata.response_code,
        authoritative: message.metadata.authoritative,
        truncated: message.metadata.truncation,
        recursion_available: message.metadata.recursion_available,
        answers: render(&message.answers),
        authority: render(&message.authorities),
        additional: render(&message.additionals),
        question: message
            .queries
            .first()
            .map(|q| q.name().to_string())
            .unwrap_or_default(),
        size: bytes.len(),
    }
}

/// Asks the authority directly through the request path (no sockets).
pub fn ask(authority: &Authority, name: &str, rtype: RecordType) -> Answer {
    let request = query_message(name, rtype, Some(4096));
    let mut out = Vec::new();
    let ctx = RequestContext {
        transport: Transport::Tcp,
        recursion_allowed: false,
        max_udp_payload: 1232,
    };
    let outcome = berth_dns::respond(&authority.index(), &request, &ctx, &mut out);
    assert_eq!(outcome, berth_dns::Outcome::Reply, "{name} {rtype}");
    decode(&out)
}

pub fn udp_exchange(server: SocketAddr, bind: &str, request: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind(bind).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(request, server).unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = socket.recv_from(&mut buf).expect("udp answer in time");
    buf.truncate(len);
    buf
}

pub fn udp_query(server: SocketAddr, name: &str, rtype: RecordType, edns: Option<u16>) -> Answer {
    decode(&udp_exchange(
        server,
        "127.0.0.1:0",
        &query_message(name, rtype, edns),
    ))
}

pub fn tcp_exchange(server: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).unwrap();
    buf
}

pub fn tcp_query(server: SocketAddr, name: &str, rtype: RecordType) -> Answer {
    decode(&tcp_exchange(server, &query_message(name, rtype, None)))
}

//! berth's own nftables table, through nftables' JSON API (libnftables-json(5)).
//!
//! Why JSON through libnftables rather than a crate: the table is a handful of fixed chains
//! plus one rule per published port, built here as `serde_json` values; the `nftables` crate
//! would add schemars and strum to the build for the same JSON, and netlink-level crates
//! (rustables, nftnl) re-implement nft's expression encoding, which is where bugs hide. The
//! JSON goes to libnftables in-process ([`super::libnftables`] says why not the `nft` binary)
//! through one [`Nft`] context per node, kept open. A transaction is one call: all or
//! nothing. (nft 1.0.6's JSON parser cannot express concatenated map data, so ports are
//! rules, not map elements.)
//!
//! ```text
//! table ip <name> {
//!   set pod_networks { type ipv4_addr; flags interval }   # this node's and peers' pod CIDRs
//!   chain prerouting  { type nat hook prerouting priority dstnat;  fib daddr type local jump hostports }
//!   chain output      { type nat hook output priority dstnat;      fib daddr type local jump hostports }
//!   chain hostports   { [ip daddr <hostIP>] tcp dport 8080 dnat to 10.244.0.5:80 comment "<uid> ..." }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!                       ct status dnat ip saddr <cidr> oifname <bridge> masquerade   # hairpin
//!                       ip saddr <cidr> ip daddr != @pod_networks masquerade }       # egress
//! }
//! ```
//!
//! Nothing outside this table is read or changed.

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::hostports::{HostPortRule, InstalledRules};
use super::libnftables::{self, Context, LibraryError};
use super::netns::{Netns, run_in};

/// The chain holding one DNAT rule per published port.
pub const HOSTPORTS_CHAIN: &str = "hostports";
/// The set of destinations not masqueraded: this node's and the peers' pod CIDRs.
pub const POD_NETWORKS_SET: &str = "pod_networks";

/// An nftables transaction or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// libnftables could not be loaded or set up.
    #[error("cannot use nftables (is the nftables package installed?)")]
    Library(#[source] LibraryError),
    /// The network namespace to open the context in could not be entered.
    #[error("cannot enter the network namespace")]
    Netns(#[source] std::io::Error),
    /// nftables refused the transaction; nothing of it was applied.
    #[error("nft refused the change: {message}")]
    Refused { message: String },
    /// nftables' output is not the JSON expected.
    #[error("unreadable nft output: {0}")]
    Output(String),
}

/// berth's table on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table's name (family `ip`).
    pub name: String,
    /// This node's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// The pods' bridge.
    pub bridge: String,
}

fn matches(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn fib_daddr_local() -> Value {
    matches(
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        json!("local"),
    )
}

fn saddr_in(cidr: Ipv4Net) -> Value {
    matches(
        json!({"payload": {"protocol": "ip", "field": "saddr"}}),
        json!({"prefix": {"addr": cidr.network().to_string(), "len": cidr.prefix_len()}}),
    )
}

impl Table {
    fn object(&self, kind: &str, name: &str) -> Value {
        json!({kind: {"family": "ip", "table": self.name, "name": name}})
    }

    fn rule(&self, chain: &str, expr: Vec<Value>, comment: Option<String>) -> Value {
        let mut rule = json!({"family": "ip", "table": self.name, "chain": chain, "expr": expr});
        if let Some(comment) = comment {
            rule["comment"] = json!(comment);
        }
        json!({"add": {"rule": rule}})
    }

    fn base_chain(&self, name: &str, hook: &str, priority: i32) -> Value {
        json!({"add": {"chain": {
            "family": "ip", "table": self.name, "name": name,
            "type": "nat", "hook": hook, "prio": priority, "policy": "accept"
        }}})
    }

    /// The transaction that (re)creates the whole table: the old one, if any, is deleted and
    /// the new one built in the same transaction, so packets never see a half-built table.
    /// `rules` are the published ports to keep (read from the old table).
    pub fn replace(&self, pod_networks: &[Ipv4Net], rules: &[HostPortRule]) -> Vec<Value> {
        let table = json!({"table": {"family": "ip", "name": self.name}});
        let mut commands = vec![
            json!({"add": table.clone()}),
            json!({"delete": table.clone()}),
            json!({"add": table}),
            json!({"add": {"set": {
                "family": "ip", "table": self.name, "name": POD_NETWORKS_SET,
                "type": "ipv4_addr", "flags": ["interval"],
                "comment": "pod CIDRs of this node and its peers: not masqueraded"
            }}}),
            json!({"add": self.object("chain", HOSTPORTS_CHAIN)}),
            self.base_chain("prerouting", "prerouting", -100),
            self.base_chain("output", "output", -100),
            self.base_chain("postrouting", "postrouting", 100),
        ];
        let jump = json!({"jump": {"target": HOSTPORTS_CHAIN}});
        commands.push(self.rule("prerouting", vec![fib_daddr_local(), jump.clone()], None));
        commands.push(self.rule("output", vec![fib_daddr_local(), jump], None));
        commands.push(self.rule(
            "postrouting",
            vec![
                matches(json!({"ct": {"key": "status"}}), json!("dnat")),
                saddr_in(self.pod_cidr),
                matches(json!({"meta": {"key": "oifname"}}), json!(self.bridge)),
                json!({"masquerade": null}),
            ],
            Some("pods reaching a hostPort on their own node".into()),
        ));
        commands.push(self.rule(
            "postrouting",
            vec![
                saddr_in(self.pod_cidr),
                json!({"match": {"op": "!=",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": format!("@{POD_NETWORKS_SET}")}}),
                json!({"masquerade": null}),
            ],
            Some("pods reaching beyond the pod networks".into()),
        ));
        commands.extend(self.set_pod_networks(pod_networks));
        commands.extend(self.add_host_ports(rules));
        commands
    }

    /// Replaces the members of `pod_networks`.
    pub fn set_pod_networks(&self, networks: &[Ipv4Net]) -> Vec<Value> {
        let mut commands = vec![json!({"flush": self.object("set", POD_NETWORKS_SET)})];
        let mut networks: Vec<Ipv4Net> = networks.iter().map(|n| n.trunc()).collect();
        networks.push(self.pod_cidr);
        // An interval set refuses overlapping elements: keep the widest of nested networks.
        let networks = Ipv4Net::aggregate(&networks);
        let elements: Vec<Value> = networks
            .iter()
            .map(|n| json!({"prefix": {"addr": n.network().to_string(), "len": n.prefix_len()}}))
            .collect();
        commands.push(json!({"add": {"element": {
            "family": "ip", "table": self.name, "name": POD_NETWORKS_SET, "elem": elements
        }}}));
        commands
    }

    /// Adds one DNAT rule per published port.
    pub fn add_host_ports(&self, rules: &[HostPortRule]) -> Vec<Value> {
        rules
            .iter()
            .map(|rule| {
                let mut expr = Vec::new();
                if let Some(ip) = rule.port.host_ip {
                    expr.push(matches(
                        json!({"payload": {"protocol": "ip", "field": "daddr"}}),
                        json!(ip.to_string()),
                    ));
                }
                expr.push(matches(
                    json!({"payload": {"protocol": rule.port.protocol.nft_name(), "field": "dport"}}),
                    json!(rule.port.host_port),
                ));
                expr.push(json!({"dnat": {
                    "family": "ip", "addr": rule.pod_ip.to_string(), "port": rule.port.container_port
                }}));
                self.rule(HOSTPORTS_CHAIN, expr, Some(rule.comment()))
            })
            .collect()
    }

    /// Deletes rules of the `hostports` chain by handle.
    pub fn delete_rules(&self, handles: impl IntoIterator<Item = u64>) -> Vec<Value> {
        handles
            .into_iter()
            .map(|handle| {
                json!({"delete": {"rule": {
                    "family": "ip", "table": self.name, "chain": HOSTPORTS_CHAIN, "handle": handle
                }}})
            })
            .collect()
    }

    /// Deletes the whole table (whether or not it exists).
    pub fn delete(&self) -> Vec<Value> {
        let table = json!({"table": {"family": "ip", "name": self.name}});
        vec![json!({"add": table.clone()}), json!({"delete": table})]
    }

    /// True when `listing` (of `nft -j list tables`) has this table.
    pub fn listed_in(&self, listing: &Value) -> bool {
        objects(listing).any(|(kind, object)| {
            kind == "table" && object["family"] == "ip" && object["name"] == self.name.as_str()
        })
    }
}

/// The `(kind, object)` pairs of an nft JSON document, looking through `add` wrappers (as
/// a transaction or `--echo` writes them).
fn objects(document: &Value) -> impl Iterator<Item = (&str, &Value)> {
    document["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.as_object())
        .filter_map(|entry| entry.iter().next())
        .filter_map(|(kind, object)| match kind.as_str() {
            "add" | "insert" => object
                .as_object()
                .and_then(|inner| inner.iter().next())
                .map(|(kind, object)| (kind.as_str(), object)),
            _ => Some((kind.as_str(), object)),
        })
}

/// The published-port rules in an nft JSON document (a listing), by handle. Rules without a
/// berth comment are skipped.
pub fn host_port_rules(document: &Value, table: &str) -> InstalledRules {
    objects(document)
        .filter(|(kind, rule)| {
            *kind == "rule"
                && rule["family"] == "ip"
                && rule["table"] == table
                && rule["chain"] == HOSTPORTS_CHAIN
        })
        .filter_map(|(_, rule)| {
            let handle = rule["handle"].as_u64()?;
            let parsed = HostPortRule::from_comment(rule["comment"].as_str()?)?;
            Some((handle, parsed))
        })
        .collect()
}

/// berth's connection to nftables in one network namespace: a libnftables context opened
/// there and kept open (its socket stays in that namespace whichever thread uses it).
#[derive(Debug)]
pub struct Nft {
    context: Context,
}

impl Nft {
    /// Opens a context in `netns` (the process's namespace when `None`).
    pub fn open(netns: Option<&Netns>) -> Result<Nft, NftError> {
        let context = run_in(netns, Context::open)
            .map_err(NftError::Netns)?
            .map_err(NftError::Library)?;
        Ok(Nft { context })
    }

    /// Runs a listing command in nft syntax (e.g. `list tables`) and returns its JSON.
    pub fn list(&mut self, command: &str) -> Result<Value, NftError> {
        let outcome = self.context.run(command, libnftables::OUTPUT_JSON);
        if !outcome.success {
            return Err(refused(&outcome.errors));
        }
        parse_output(outcome.output.as_bytes())
    }

    /// Applies `commands` as one transaction: all of it, or (on an error) none of it.
    ///
    /// Never with nft's echo: libnftables 1.0.6 (Debian 12) keeps the JSON commands it
    /// echoes in a process-wide list that a refused transaction leaves behind, freed; the
    /// next echo anywhere in the process then reads freed memory and can hand back an add
    /// without its handle. [`Nft::host_ports`] reads the handles back from a listing instead.
    pub fn apply(&mut self, commands: Vec<Value>) -> Result<(), NftError> {
        if commands.is_empty() {
            return Ok(());
        }
        let document = serde_json::to_string(&json!({"nftables": commands}))
            .map_err(|error| NftError::Output(error.to_string()))?;
        let outcome = self.context.run(&document, libnftables::OUTPUT_JSON);
        if !outcome.success {
            return Err(refused(&outcome.errors));
        }
        Ok(())
    }

    /// The published-port rules now in `table`'s `hostports` chain, by handle.
    pub fn host_ports(&mut self, table: &Table) -> Result<InstalledRules, NftError> {
        let listing = self.list(&format!("list chain ip {} {HOSTPORTS_CHAIN}", table.name))?;
        Ok(host_port_rules(&listing, &table.name))
    }
}

fn refused(errors: &str) -> NftError {
    let message = errors
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    NftError::Refused { message }
}

fn parse_output(stdout: &[u8]) -> Result<Value, NftError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({"nftables": []}));
    }
    serde_json::from_slice(stdout).map_err(|error| NftError::Output(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::hostports::{HostPort, Protocol};
    use std::net::Ipv4Addr;

    fn table() -> Table {
        Table {
            name: "berth".into(),
            pod_cidr: "10.244.0.0/24".parse().unwrap(),
            bridge: "berth0".into(),
        }
    }

    fn rule(uid: &str, host_ip: Option<Ipv4Addr>) -> HostPortRule {
        HostPortRule {
            pod_uid: uid.into(),
            pod_ip: Ipv4Addr::new(10, 244, 0, 5),
            port: HostPort {
                protocol: Protocol::Tcp,
                host_ip,
                host_port: 8080,
                container_port: 80,
            },
        }
    }

    #[test]
    fn a_published_port_is_a_dnat_rule_carrying_its_owner() {
        let commands = table().add_host_ports(&[rule("uid-1", Some(Ipv4Addr::new(192, 0, 2, 2)))]);
        assert_eq!(
            commands[0],
            json!({"add": {"rule": {
                "family": "ip", "table": "berth", "chain": "hostports",
                "comment": "uid-1 tcp 192.0.2.2:8080 10.244.0.5:80",
                "expr": [
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "192.0.2.2"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                    {"dnat": {"family": "ip", "addr": "10.244.0.5", "port": 80}}
                ]
            }}})
        );
    }

    #[test]
    fn the_pod_networks_set_holds_this_node_and_its_peers_without_overlaps() {
        let commands = table().set_pod_networks(&[
            "10.244.1.0/24".parse().unwrap(),
            "10.244.0.0/25".parse().unwrap(),
        ]);
        assert_eq!(commands[0]["flush"]["set"]["name"], "pod_networks");
        let elements = &commands[1]["add"]["element"]["elem"];
        assert_eq!(
            *elements,
            json!([{"prefix": {"addr": "10.244.0.0", "len": 23}}]),
            "adjacent /24s aggregate and the nested /25 disappears"
        );
    }

    #[test]
    fn the_replacement_deletes_and_rebuilds_the_table_keeping_published_ports() {
        let commands = table().replace(&[], &[rule("uid-1", None)]);
        assert_eq!(
            commands[0],
            json!({"add": {"table": {"family": "ip", "name": "berth"}}})
        );
        assert_eq!(
            commands[1],
            json!({"delete": {"table": {"family": "ip", "name": "berth"}}})
        );
        let last = commands.last().unwrap();
        assert_eq!(
            last["add"]["rule"]["comment"],
            "uid-1 tcp *:8080 10.244.0.5:80"
        );
        let masquerade = commands
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == "postrouting")
            .count();
        assert_eq!(masquerade, 2, "hairpin and egress masquerade");
    }

    #[test]
    fn rules_are_read_back_from_an_echo_or_a_listing_by_handle() {
        let echo = json!({"nftables": [
            {"add": {"rule": {"family": "ip", "table": "berth", "chain": "hostports",
                "comment": "uid-1 tcp *:8080 10.244.0.5:80", "handle": 7, "expr": []}}},
            {"add": {"rule": {"family": "ip", "table": "other", "chain": "hostports",
                "comment": "uid-2 tcp *:8080 10.244.0.5:80", "handle": 8, "expr": []}}},
        ]});
        let listing = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"rule": {"family": "ip", "table": "berth", "chain": "hostports",
                "comment": "uid-1 tcp *:8080 10.244.0.5:80", "handle": 7, "expr": []}},
            {"rule": {"family": "ip", "table": "berth", "chain": "hostports",
                "comment": "someone else's", "handle": 9, "expr": []}},
        ]});
        for document in [echo, listing] {
            let rules = host_port_rules(&document, "berth");
            assert_eq!(rules.len(), 1);
            assert_eq!(rules[&7], rule("uid-1", None));
        }
    }

    /// Runs `work` with an nftables context in a network namespace of its own (made for a
    /// thread, gone when it ends).
    fn in_own_namespace<T: Send>(work: impl FnOnce(&mut Nft) -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    work(&mut Nft::open(None).unwrap())
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn a_kept_context_builds_lists_publishes_and_removes_in_transactions() {
        in_own_namespace(|nft| {
            let table = table();
            nft.apply(table.replace(&[], &[])).unwrap();
            assert!(nft.host_ports(&table).unwrap().is_empty());
            assert!(table.listed_in(&nft.list("list tables").unwrap()));

            nft.apply(table.add_host_ports(&[rule("uid-1", None)]))
                .unwrap();
            let rules = nft.host_ports(&table).unwrap();
            assert_eq!(rules.values().collect::<Vec<_>>(), [&rule("uid-1", None)]);
            let listing = nft.list("list table ip berth").unwrap();
            assert_eq!(host_port_rules(&listing, "berth"), rules);

            let handle = *rules.keys().next().unwrap();
            nft.apply(table.delete_rules([handle])).unwrap();
            assert!(nft.host_ports(&table).unwrap().is_empty());
            nft.apply(table.delete()).unwrap();
            assert!(!table.listed_in(&nft.list("list tables").unwrap()));
        });
    }

    #[test]
    fn rules_added_after_a_refused_transaction_are_read_back_with_their_handles() {
        // Two contexts in one process, as the agent and a test host have: a refusal in one
        // must not disturb what the other reads back (nft 1.0.6's JSON echo did).
        in_own_namespace(|first| {
            let mut second = Nft::open(None).unwrap();
            let mut other = table();
            other.name = "other".into();
            first.apply(table().replace(&[], &[])).unwrap();
            second.apply(other.replace(&[], &[])).unwrap();
            for round in 0..20 {
                let mut refused = table().add_host_ports(&[rule("uid-x", None)]);
                refused.extend(table().delete_rules([99_999]));
                first.apply(refused).unwrap_err();

                let uid = format!("uid-{round}");
                second
                    .apply(other.add_host_ports(&[rule(&uid, None)]))
                    .unwrap();
                let rules = second.host_ports(&other).unwrap();
                assert_eq!(
                    rules.values().collect::<Vec<_>>(),
                    [&rule(&uid, None)],
                    "round {round}"
                );
                second.apply(other.delete_rules(rules.into_keys())).unwrap();
            }
            assert!(first.host_ports(&table()).unwrap().is_empty());
        });
    }

    #[test]
    fn a_refused_transaction_changes_nothing_and_says_why() {
        in_own_namespace(|nft| {
            let table = table();
            nft.apply(table.replace(&[], &[])).unwrap();
            // One good rule and one delete of a rule that does not exist: all or nothing.
            let mut commands = table.add_host_ports(&[rule("uid-1", None)]);
            commands.extend(table.delete_rules([9999]));
            let error = nft.apply(commands).unwrap_err();
            let NftError::Refused { message } = &error else {
                panic!("not a refusal: {error:?}");
            };
            assert!(message.contains("No such file or directory"), "{message}");
            assert!(!message.contains('\n'));
            assert!(nft.host_ports(&table).unwrap().is_empty());
        });
    }

    #[test]
    fn nft_errors_are_folded_onto_one_line() {
        let error =
            refused("internal:0:0-0: Error: Could not process rule: No such file or directory\n\n");
        assert_eq!(
            error.to_string(),
            "nft refused the change: internal:0:0-0: Error: Could not process rule: No such file or directory"
        );
    }
}

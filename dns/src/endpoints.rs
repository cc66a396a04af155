//! Endpoint selection: which Pods a Service publishes, as the EndpointSlice controller
//! would compute them, with the readiness rules of the DNS schema.
//!
//! One deliberate difference from EndpointSlices: a terminating Pod is never published,
//! even when the Service sets `publishNotReadyAddresses` (Kubernetes keeps it). A Pod that
//! is going away should stop receiving new peers; berth's users asked for that.

use std::net::IpAddr;

use crate::model::{ObjectKey, Pod, Protocol, Service, TargetPort};

/// A published endpoint of one Service: one Pod with its addresses and resolved ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The Pod behind the endpoint.
    pub pod: ObjectKey,
    /// The endpoint hostname: the Pod's `spec.hostname` when its `spec.subdomain` names
    /// this Service, else `None` (DNS then uses the dashed IP, as CoreDNS does).
    pub hostname: Option<String>,
    /// The Pod's addresses.
    pub ips: Vec<IpAddr>,
    /// The Service's ports as resolved on this Pod. A named `targetPort` the Pod does not
    /// declare is left out, as EndpointSlices leave it out.
    pub ports: Vec<EndpointPort>,
}

/// One port of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointPort {
    /// The Service port's name (SRV records exist only for named ports).
    pub name: Option<String>,
    /// The Service port's protocol.
    pub protocol: Protocol,
    /// The port on the Pod (the resolved `targetPort`).
    pub port: u16,
}

/// Whether the Service's selector selects the Pod (same namespace, every selector label
/// present with the same value). A Service without a selector, or with an empty one,
/// selects nothing.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    if service.key.namespace != pod.key.namespace {
        return false;
    }
    match &service.selector {
        Some(selector) if !selector.is_empty() => selector
            .iter()
            .all(|(key, value)| pod.labels.get(key) == Some(value)),
        _ => false,
    }
}

/// Whether a selected Pod is published: it has an address, has not finished, is not
/// terminating, and is ready (or the Service publishes not-ready addresses).
pub fn is_published(service: &Service, pod: &Pod) -> bool {
    !pod.ips.is_empty()
        && !pod.phase.is_terminal()
        && !pod.terminating
        && (pod.ready || service.publish_not_ready_addresses)
}

/// The endpoint a Pod contributes to a Service, if it contributes one.
pub fn endpoint_for(service: &Service, pod: &Pod) -> Option<Endpoint> {
    if !selects(service, pod) || !is_published(service, pod) {
        return None;
    }
    let hostname = match (&pod.hostname, &pod.subdomain) {
        (Some(hostname), Some(subdomain))
            if !hostname.is_empty() && *subdomain == service.key.name =>
        {
            Some(hostname.clone())
        }
        _ => None,
    };
    let ports = service
        .ports
        .iter()
        .filter_map(|service_port| {
            let port = match &service_port.target_port {
                None => service_port.port,
                Some(TargetPort::Number(0)) => service_port.port,
                Some(TargetPort::Number(number)) => *number,
                Some(TargetPort::Name(name)) => {
                    pod.container_ports
                        .iter()
                        .find(|cp| {
                            cp.name.as_deref() == Some(name.as_str())
                                && cp.protocol == service_port.protocol
                        })?
                        .container_port
                }
            };
            Some(EndpointPort {
                name: service_port.name.clone(),
                protocol: service_port.protocol,
                port,
            })
        })
        .collect();
    Some(Endpoint {
        pod: pod.key.clone(),
        hostname,
        ips: pod.ips.clone(),
        ports,
    })
}

/// All endpoints of a Service among `pods`, ordered by Pod name.
pub fn select_endpoints<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = pods
        .into_iter()
        .filter_map(|pod| endpoint_for(service, pod))
        .collect();
    endpoints.sort_by(|a, b| a.pod.cmp(&b.pod));
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerPort, PodPhase, ServicePort};
    use std::collections::BTreeMap;

    fn service() -> Service {
        Service {
            key: ObjectKey::new("db", "pg"),
            headless: true,
            selector: Some(BTreeMap::from([("app".into(), "pg".into())])),
            publish_not_ready_addresses: false,
            ports: vec![
                ServicePort {
                    name: Some("sql".into()),
                    protocol: Protocol::Tcp,
                    port: 5432,
                    target_port: Some(TargetPort::Name("postgres".into())),
                },
                ServicePort {
                    name: Some("metrics".into()),
                    protocol: Protocol::Tcp,
                    port: 9187,
                    target_port: None,
                },
                ServicePort {
                    name: Some("repl".into()),
                    protocol: Protocol::Tcp,
                    port: 7000,
                    target_port: Some(TargetPort::Number(7001)),
                },
            ],
        }
    }

    fn pod() -> Pod {
        Pod {
            key: ObjectKey::new("db", "pg-0"),
            labels: BTreeMap::from([("app".into(), "pg".into()), ("tier".into(), "data".into())]),
            hostname: Some("pg-0".into()),
            subdomain: Some("pg".into()),
            ips: vec!["10.244.1.5".parse().unwrap()],
            ready: true,
            terminating: false,
            phase: PodPhase::Running,
            container_ports: vec![ContainerPort {
                name: Some("postgres".into()),
                protocol: Protocol::Tcp,
                container_port: 15432,
            }],
        }
    }

    #[test]
    fn publication_follows_selector_readiness_and_lifecycle() {
        type Case = (&'static str, fn(&mut Service, &mut Pod), bool);
        let cases: &[Case] = &[
            ("a ready running pod is published", |_, _| {}, true),
            ("a not-ready pod is not", |_, p| p.ready = false, false),
            (
                "a not-ready pod is with publishNotReadyAddresses",
                |s, p| {
                    p.ready = false;
                    s.publish_not_ready_addresses = true;
                },
                true,
            ),
            (
                "a terminating pod is not",
                |_, p| p.terminating = true,
                false,
            ),
            (
                "a terminating pod is not even with publishNotReadyAddresses",
                |s, p| {
                    p.terminating = true;
                    s.publish_not_ready_addresses = true;
                },
                false,
            ),
            (
                "a failed pod is not",
                |_, p| p.phase = PodPhase::Failed,
                false,
            ),
            (
                "a succeeded pod is not",
                |_, p| p.phase = PodPhase::Succeeded,
                false,
            ),
            (
                "a pending ready pod with an ip is",
                |_, p| p.phase = PodPhase::Pending,
                true,
            ),
            ("a pod without an ip is not", |_, p| p.ips.clear(), false),
            (
                "a pod in another namespace is not",
                |_, p| p.key.namespace = "other".into(),
                false,
            ),
            (
                "a pod missing a selector label is not",
                |_, p| {
                    p.labels.remove("app");
                },
                false,
            ),
            (
                "a pod with a different label value is not",
                |_, p| {
                    p.labels.insert("app".into(), "mysql".into());
                },
                false,
            ),
            (
                "a service without selector selects nothing",
                |s, _| s.selector = None,
                false,
            ),
            (
                "a service with an empty selector selects nothing",
                |s, _| s.selector = Some(BTreeMap::new()),
                false,
            ),
        ];
        for (name, mutate, want) in cases {
            let (mut s, mut p) = (service(), pod());
            mutate(&mut s, &mut p);
            assert_eq!(endpoint_for(&s, &p).is_some(), *want, "{name}");
        }
    }

    #[test]
    fn hostname_is_set_only_when_the_subdomain_names_the_service() {
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            ("matching subdomain", Some("pg-0"), Some("pg"), Some("pg-0")),
            ("other subdomain", Some("pg-0"), Some("other"), None),
            ("no subdomain", Some("pg-0"), None, None),
            ("no hostname", None, Some("pg"), None),
            ("empty hostname", Some(""), Some("pg"), None),
        ];
        for (name, hostname, subdomain, want) in cases {
            let mut p = pod();
            p.hostname = hostname.map(String::from);
            p.subdomain = subdomain.map(String::from);
            let endpoint = endpoint_for(&service(), &p).expect(name);
            assert_eq!(endpoint.hostname.as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn target_ports_resolve_per_pod_by_number_default_and_name() {
        let endpoint = endpoint_for(&service(), &pod()).unwrap();
        let ports: Vec<(Option<&str>, u16)> = endpoint
            .ports
            .iter()
            .map(|p| (p.name.as_deref(), p.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                (Some("sql"), 15432),
                (Some("metrics"), 9187),
                (Some("repl"), 7001)
            ]
        );
    }

    #[test]
    fn a_named_target_port_the_pod_lacks_is_left_out_for_that_pod() {
        type Case = (&'static str, Vec<ContainerPort>);
        let cases: Vec<Case> = vec![
            ("no container ports", vec![]),
            (
                "same name, other protocol",
                vec![ContainerPort {
                    name: Some("postgres".into()),
                    protocol: Protocol::Udp,
                    container_port: 15432,
                }],
            ),
            (
                "other name",
                vec![ContainerPort {
                    name: Some("pg".into()),
                    protocol: Protocol::Tcp,
                    container_port: 15432,
                }],
            ),
        ];
        for (name, container_ports) in cases {
            let mut p = pod();
            p.container_ports = container_ports;
            let endpoint = endpoint_for(&service(), &p).expect(name);
            let names: Vec<_> = endpoint.ports.iter().map(|p| p.name.clone()).collect();
            assert_eq!(
                names,
                vec![Some("metrics".to_string()), Some("repl".to_string())],
                "{name}"
            );
        }
    }

    #[test]
    fn select_endpoints_orders_by_pod_name_and_skips_unpublished() {
        let mut pods = Vec::new();
        for (name, ready) in [("pg-2", true), ("pg-0", true), ("pg-1", false)] {
            let mut p = pod();
            p.key.name = name.into();
            p.ready = ready;
            pods.push(p);
        }
        let names: Vec<_> = select_endpoints(&service(), &pods)
            .into_iter()
            .map(|e| e.pod.name)
            .collect();
        assert_eq!(names, vec!["pg-0", "pg-2"]);
    }
}

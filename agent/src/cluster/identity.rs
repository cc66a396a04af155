//! This host's cluster identity on disk: the CA, its node certificate and `pki/cluster.json`
//! (the cluster CIDR, its pod CIDR, whether it founded the cluster). Prepared before the
//! state opens; a joining host gets it from the leader (see [`super::join`]).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::pki::{Ca, CertifiedKey, PkiDir, PkiError, write_atomic};
use super::tls::{self, TlsError};

/// What `pki/cluster.json` records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    /// The network pod CIDRs are taken from.
    pub cluster_cidr: Ipv4Net,
    /// This host's pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// Whether this host founded the cluster (it starts a one-member raft group on first
    /// start); a joined host waits for the leader instead.
    pub founder: bool,
}

/// This host's CA, node certificate and record.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The cluster CA (with its key on hosts that hold it).
    pub ca: Ca,
    /// This host's node certificate.
    pub node: CertifiedKey,
    /// The record.
    pub record: ClusterRecord,
}

/// Why the identity could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Certificates or files.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// TLS settings.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `pki/cluster.json` is unreadable.
    #[error("{path} is invalid")]
    Record {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The CA exists but the node certificate is missing and cannot be made.
    #[error("{dir} holds the CA but no node certificate, and no CA key to make one")]
    NoNodeCertificate {
        /// The PKI directory.
        dir: std::path::PathBuf,
    },
    /// No pod CIDR could be chosen.
    #[error(transparent)]
    Cidr(#[from] super::cidr::CidrError),
}

impl Identity {
    /// Loads the identity if this host is in a cluster already; re-signs its node
    /// certificate for `node_name` and `address` when this host holds the CA key (so that a
    /// changed address is covered).
    pub fn load(
        pki: &PkiDir,
        node_name: &str,
        address: IpAddr,
    ) -> Result<Option<Identity>, IdentityError> {
        if !pki.has_ca() {
            return Ok(None);
        }
        let ca = pki.load_ca()?;
        let record = read_record(pki)?;
        let node = if ca.key_pem().is_some() {
            let node = ca.sign_node(node_name, &[address])?;
            pki.store_pair("node", &node)?;
            node
        } else {
            pki.load_pair("node")?
                .ok_or_else(|| IdentityError::NoNodeCertificate {
                    dir: pki.path().to_path_buf(),
                })?
        };
        Ok(Some(Identity { ca, node, record }))
    }

    /// Founds a cluster: a new CA, this host's node certificate and record.
    pub fn found(
        pki: &PkiDir,
        node_name: &str,
        address: IpAddr,
        cluster_cidr: Ipv4Net,
        pod_cidr: Option<Ipv4Net>,
    ) -> Result<Identity, IdentityError> {
        let pod_cidr = super::cidr::first_host(cluster_cidr, pod_cidr)?;
        let ca = Ca::generate(node_name)?;
        let node = ca.sign_node(node_name, &[address])?;
        let identity = Identity {
            ca,
            node,
            record: ClusterRecord {
                cluster_cidr,
                pod_cidr,
                founder: true,
            },
        };
        identity.store(pki)?;
        Ok(identity)
    }

    /// Writes the identity: node certificate, record, then the CA last (its presence marks a
    /// complete identity).
    pub fn store(&self, pki: &PkiDir) -> Result<(), IdentityError> {
        pki.store_pair("node", &self.node)?;
        let text = serde_json::to_vec_pretty(&self.record).expect("records serialise");
        write_atomic(&pki.file("cluster.json"), &text, 0o644)?;
        pki.store_ca(&self.ca)?;
        Ok(())
    }

    /// Client settings for peers: the node certificate, servers verified against the CA.
    pub fn peer_client_config(&self) -> Result<Arc<rustls::ClientConfig>, IdentityError> {
        Ok(tls::client_config(self.ca.cert_pem(), Some(&self.node))?)
    }

    /// Server settings for the peer port.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, IdentityError> {
        Ok(tls::server_config(&self.ca, &self.node)?)
    }
}

fn read_record(pki: &PkiDir) -> Result<ClusterRecord, IdentityError> {
    let path = pki.file("cluster.json");
    let text = std::fs::read(&path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| IdentityError::Record { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_founded_identity_is_loaded_back_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        assert!(
            Identity::load(&pki, "host-a", "10.0.0.1".parse().unwrap())
                .unwrap()
                .is_none()
        );
        let founded = Identity::found(
            &pki,
            "host-a",
            "10.0.0.1".parse().unwrap(),
            "10.244.0.0/16".parse().unwrap(),
            None,
        )
        .unwrap();
        let loaded = Identity::load(&pki, "host-a", "10.0.0.2".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(loaded.ca.fingerprint(), founded.ca.fingerprint());
        assert_eq!(loaded.record, founded.record);
        assert_eq!(
            loaded.record.pod_cidr,
            "10.244.0.0/24".parse::<Ipv4Net>().unwrap()
        );
        loaded.peer_client_config().unwrap();
        loaded.server_config().unwrap();
    }
}

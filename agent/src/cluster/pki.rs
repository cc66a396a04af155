//! The cluster's certificate authority and the certificates it signs.
//!
//! The first host generates the CA (ECDSA P-256, ten years) and keeps it under
//! `<data-dir>/pki/`; joining hosts receive it with their node certificate, so that whichever
//! host leads can sign certificates for the next joiner. Files:
//!
//! | file | what |
//! | --- | --- |
//! | `ca.crt`, `ca.key` | the cluster CA |
//! | `node.crt`, `node.key` | this host's certificate: CN = node name, O = `berth:nodes`, SAN = advertise address + node name; server and client use |
//! | `admin.crt`, `admin.key` | the administrator's client certificate (CN = `admin`, O = `system:masters`), for the CLI and kubectl |
//!
//! Keys are written mode 0600, every file atomically (temporary file, fsync, rename), and kept
//! across restarts.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

/// The Organization of node certificates: peers accept raft and cluster requests only from it.
pub const NODES_GROUP: &str = "berth:nodes";
/// The Organization of administrator client certificates.
pub const ADMIN_GROUP: &str = "system:masters";

/// A PKI failure.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file of the PKI directory could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// read, write, create...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be generated, parsed or signed.
    #[error("cannot {action}")]
    Certificate {
        /// What was being done.
        action: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A stored PEM file holds no certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The CA's private key is not on this host.
    #[error("this host has no cluster CA key in {dir}")]
    NoCaKey {
        /// The PKI directory.
        dir: PathBuf,
    },
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// The cluster CA: its certificate, and its key when this host holds it.
#[derive(Clone, Debug)]
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: Option<String>,
}

impl Ca {
    /// Generates a new CA for a cluster (the first host does this once).
    pub fn generate(cluster_name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(cert_error("generate the CA key"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("berth-ca@{cluster_name}"));
        name.push(DnType::OrganizationName, "berth");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params
            .self_signed(&key)
            .map_err(cert_error("self-sign the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: Some(key.serialize_pem()),
        })
    }

    /// A CA from its PEM certificate and, optionally, its PEM key.
    pub fn from_pem(cert_pem: &str, key_pem: Option<String>) -> Result<Ca, PkiError> {
        let cert_der = first_certificate_der(cert_pem).ok_or_else(|| PkiError::NoCertificate {
            path: PathBuf::from("<pem>"),
        })?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key_pem,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA key, PEM, when this host has it.
    pub fn key_pem(&self) -> Option<&str> {
        self.key_pem.as_deref()
    }

    /// The fingerprint join tokens carry: SHA-256 of the certificate's DER, lowercase hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key_pem = self.key_pem.as_deref().ok_or_else(|| PkiError::NoCaKey {
            dir: PathBuf::new(),
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(cert_error("read the CA key"))?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(cert_error("read the CA certificate"))
    }

    /// Signs a node certificate: CN = `node_name`, O = [`NODES_GROUP`], SAN = the node name,
    /// `addresses`, `localhost` and 127.0.0.1 (so the local CLI can use it), one year.
    pub fn sign_node(
        &self,
        node_name: &str,
        addresses: &[IpAddr],
    ) -> Result<CertifiedKey, PkiError> {
        let mut names = vec![node_name.to_string(), "localhost".to_string()];
        names.dedup();
        let mut params = CertificateParams::new(names).map_err(cert_error(format!(
            "use {node_name:?} as a certificate name"
        )))?;
        for address in addresses.iter().chain(&[IpAddr::from([127, 0, 0, 1])]) {
            let san = SanType::IpAddress(*address);
            if !params.subject_alt_names.contains(&san) {
                params.subject_alt_names.push(san);
            }
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, node_name, NODES_GROUP)
    }

    /// Signs a client certificate (CN = `user`, O = `group`), one year.
    pub fn sign_client(&self, user: &str, group: &str) -> Result<CertifiedKey, PkiError> {
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, user, group)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        group: &str,
    ) -> Result<CertifiedKey, PkiError> {
        let issuer = self.issuer()?;
        let key = KeyPair::generate().map_err(cert_error("generate a key"))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name.push(DnType::OrganizationName, group);
        params.distinguished_name = name;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(365);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(
            &rand::random::<[u8; 16]>().map(|b| b & 0x7f),
        ));
        let cert = params.signed_by(&key, &issuer).map_err(cert_error(format!(
            "sign a certificate for {common_name:?}"
        )))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The DER of the first certificate in a PEM text.
pub fn first_certificate_der(pem_text: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem_text.as_bytes())
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

/// The subject of a certificate: its CN and O values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The CommonName (a node name, or a user).
    pub common_name: String,
    /// The Organization values (groups).
    pub groups: Vec<String>,
}

/// Reads the subject of a DER certificate.
pub fn subject_of(der: &[u8]) -> Option<Subject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Subject {
        common_name,
        groups,
    })
}

/// The `pki/` directory of a data dir.
#[derive(Clone, Debug)]
pub struct PkiDir {
    dir: PathBuf,
}

impl PkiDir {
    /// `<data_dir>/pki`.
    pub fn new(data_dir: &Path) -> PkiDir {
        PkiDir {
            dir: data_dir.join("pki"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether this host has a CA certificate (it created or joined a cluster).
    pub fn has_ca(&self) -> bool {
        self.file("ca.crt").exists()
    }

    /// Loads the CA (with its key when present).
    pub fn load_ca(&self) -> Result<Ca, PkiError> {
        let path = self.file("ca.crt");
        let cert_pem = read(&path)?;
        let key_pem = match std::fs::read_to_string(self.file("ca.key")) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(PkiError::Io {
                    action: "read",
                    path: self.file("ca.key"),
                    source,
                });
            }
        };
        let cert_der = first_certificate_der(&cert_pem).ok_or(PkiError::NoCertificate { path })?;
        Ok(Ca {
            cert_pem,
            cert_der,
            key_pem,
        })
    }

    /// Stores the CA (key 0600).
    pub fn store_ca(&self, ca: &Ca) -> Result<(), PkiError> {
        if let Some(key) = ca.key_pem() {
            write_atomic(&self.file("ca.key"), key.as_bytes(), 0o600)?;
        }
        write_atomic(&self.file("ca.crt"), ca.cert_pem().as_bytes(), 0o644)
    }

    /// Loads a certificate and key stored as `<name>.crt` and `<name>.key`, if both exist.
    pub fn load_pair(&self, name: &str) -> Result<Option<CertifiedKey>, PkiError> {
        let (cert, key) = (
            self.file(&format!("{name}.crt")),
            self.file(&format!("{name}.key")),
        );
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        Ok(Some(CertifiedKey {
            cert_pem: read(&cert)?,
            key_pem: read(&key)?,
        }))
    }

    /// Stores a certificate and key as `<name>.crt` and `<name>.key` (key 0600, key first).
    pub fn store_pair(&self, name: &str, pair: &CertifiedKey) -> Result<(), PkiError> {
        write_atomic(
            &self.file(&format!("{name}.key")),
            pair.key_pem.as_bytes(),
            0o600,
        )?;
        write_atomic(
            &self.file(&format!("{name}.crt")),
            pair.cert_pem.as_bytes(),
            0o644,
        )
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` atomically with `mode`: a temporary file in the same directory
/// (created with the mode, so a key is never readable by others), fsync, rename, fsync of the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}

fn cert_error(action: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let action = action.into();
    move |source| PkiError::Certificate { action, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_node_certificate_names_the_node_and_its_group() {
        let ca = Ca::generate("lab").unwrap();
        let node = ca
            .sign_node("host-a", &["10.0.0.1".parse().unwrap()])
            .unwrap();
        let der = first_certificate_der(&node.cert_pem).unwrap();
        let subject = subject_of(&der).unwrap();
        assert_eq!(subject.common_name, "host-a");
        assert_eq!(subject.groups, vec![NODES_GROUP.to_string()]);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        assert!(sans.iter().any(|s| s.contains("host-a")), "{sans:?}");
        assert!(sans.iter().any(|s| s.contains("0a:00:00:01")), "{sans:?}");
        assert_eq!(
            cert.issuer().to_string(),
            x509_parser::parse_x509_certificate(ca.cert_der())
                .unwrap()
                .1
                .subject()
                .to_string()
        );
    }

    #[test]
    fn a_certificate_signed_by_the_ca_verifies_and_one_from_another_ca_does_not() {
        let ca = Ca::generate("lab").unwrap();
        let other = Ca::generate("lab").unwrap();
        let good = ca.sign_node("host-a", &[]).unwrap();
        let forged = other.sign_node("host-a", &[]).unwrap();
        let verify = |pair: &CertifiedKey| {
            let der = first_certificate_der(&pair.cert_pem).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let (_, issuer) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
            cert.verify_signature(Some(issuer.public_key())).is_ok()
        };
        assert!(verify(&good));
        assert!(!verify(&forged));
        assert_ne!(ca.fingerprint(), other.fingerprint());
    }

    #[test]
    fn the_ca_is_kept_across_loads_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        let ca = Ca::generate("lab").unwrap();
        pki.store_ca(&ca).unwrap();
        let loaded = pki.load_ca().unwrap();
        assert_eq!(loaded.fingerprint(), ca.fingerprint());
        assert!(loaded.key_pem().is_some());
        let mode = std::fs::metadata(pki.file("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // A CA loaded from disk still signs.
        loaded.sign_client("admin", ADMIN_GROUP).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(pki.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_ca_without_its_key_cannot_sign() {
        let ca = Ca::generate("lab").unwrap();
        let public = Ca::from_pem(ca.cert_pem(), None).unwrap();
        assert!(matches!(
            public.sign_node("host-b", &[]),
            Err(PkiError::NoCaKey { .. })
        ));
    }
}

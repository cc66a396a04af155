//! Join tokens, in k3s' shape: `K10<sha256 of the CA certificate's DER, hex>::<id>.<secret>`.
//!
//! The fingerprint lets a joining host trust the CA it fetches without trusting the network;
//! the secret authorises the join. Tokens live in the cluster state (so any host that leads
//! can check them) as Secrets `berth-join-token-<id>` in `kube-system`, of type
//! `berth.io/join-token`, holding only the SHA-256 of the secret and the expiry: reading the
//! state (or a backup of it) never reveals a usable token. Parsing, generation and checking
//! are pure; `now` is passed in.

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The namespace holding join tokens.
pub const TOKEN_NAMESPACE: &str = "kube-system";
/// The Secret type of join tokens.
pub const TOKEN_SECRET_TYPE: &str = "berth.io/join-token";
const PREFIX: &str = "K10";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a join token.
    #[error("the join token is malformed: {reason} (expected K10<ca-sha256>::<id>.<secret>)")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No token with that id exists (never created, deleted or expired and collected).
    #[error("join token {id} is not known to this cluster")]
    Unknown {
        /// The token id.
        id: String,
    },
    /// The secret does not match.
    #[error("join token {id} has a wrong secret")]
    WrongSecret {
        /// The token id.
        id: String,
    },
    /// The token expired.
    #[error("join token {id} expired at {expired}")]
    Expired {
        /// The token id.
        id: String,
        /// When it expired (RFC 3339).
        expired: String,
    },
}

/// A join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA certificate (DER), lowercase hex.
    pub ca_fingerprint: String,
    /// The public id (names the stored record).
    pub id: String,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}::{}.{}",
            self.ca_fingerprint, self.id, self.secret
        )
    }
}

impl JoinToken {
    /// A fresh token for the CA with `ca_fingerprint`.
    pub fn generate(ca_fingerprint: &str) -> JoinToken {
        JoinToken {
            ca_fingerprint: ca_fingerprint.to_string(),
            id: random_text(ID_LEN),
            secret: random_text(SECRET_LEN),
        }
    }

    /// Parses `K10<hex>::<id>.<secret>`.
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let malformed = |reason| TokenError::Malformed { reason };
        let rest = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(malformed("it does not start with K10"))?;
        let (fingerprint, credentials) = rest
            .split_once("::")
            .ok_or(malformed("there is no '::' separator"))?;
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("the CA fingerprint is not 64 hexadecimal digits"));
        }
        let (id, secret) = credentials
            .split_once('.')
            .ok_or(malformed("the credentials are not <id>.<secret>"))?;
        let valid = |s: &str, len| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !valid(id, ID_LEN) {
            return Err(malformed("the id is not 6 lowercase letters or digits"));
        }
        if !valid(secret, SECRET_LEN) {
            return Err(malformed(
                "the secret is not 16 lowercase letters or digits",
            ));
        }
        Ok(JoinToken {
            ca_fingerprint: fingerprint.to_ascii_lowercase(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The record stored in the cluster state for this token, expiring at `expires_unix`.
    pub fn record(&self, expires_unix: i64) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            secret_sha256: sha256_hex(&self.secret),
            expires_unix,
        }
    }
}

/// What the cluster state keeps of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token id.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Expiry, seconds since the epoch.
    pub expires_unix: i64,
}

impl TokenRecord {
    /// The Secret's name for a token id.
    pub fn object_name(id: &str) -> String {
        format!("berth-join-token-{id}")
    }

    /// The Secret object holding this record.
    pub fn to_object(&self) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": TokenRecord::object_name(&self.id), "namespace": TOKEN_NAMESPACE,
                         "labels": {"berth.io/join-token": "true"}},
            "type": TOKEN_SECRET_TYPE,
            "data": {
                "token-id": b64(&self.id),
                "secret-sha256": b64(&self.secret_sha256),
                "expiration": b64(&rfc3339(self.expires_unix)),
            },
        })
    }

    /// Reads a record back from its Secret object.
    pub fn from_object(object: &Value) -> Option<TokenRecord> {
        if object.get("type").and_then(Value::as_str) != Some(TOKEN_SECRET_TYPE) {
            return None;
        }
        let field = |name: &str| {
            let text = object.pointer(&format!("/data/{name}"))?.as_str()?;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()?,
            )
            .ok()
        };
        let expires = chrono::DateTime::parse_from_rfc3339(&field("expiration")?)
            .ok()?
            .timestamp();
        Some(TokenRecord {
            id: field("token-id")?,
            secret_sha256: field("secret-sha256")?,
            expires_unix: expires,
        })
    }

    /// Whether `token` is this record's and unexpired at `now_unix`.
    pub fn check(&self, token: &JoinToken, now_unix: i64) -> Result<(), TokenError> {
        if token.id != self.id {
            return Err(TokenError::Unknown {
                id: token.id.clone(),
            });
        }
        if sha256_hex(&token.secret) != self.secret_sha256 {
            return Err(TokenError::WrongSecret {
                id: token.id.clone(),
            });
        }
        if now_unix >= self.expires_unix {
            return Err(TokenError::Expired {
                id: token.id.clone(),
                expired: rfc3339(self.expires_unix),
            });
        }
        Ok(())
    }
}

/// Parses a TTL like `24h`, `90m`, `3600s`, `7d` (a number alone is seconds).
pub fn parse_ttl(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    if number == 0 {
        return None;
    }
    Some(std::time::Duration::from_secs(number.checked_mul(seconds)?))
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn random_text(len: usize) -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "ab12000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_generated_token_parses_back_to_itself() {
        let token = JoinToken::generate(FP);
        let text = token.to_string();
        assert!(text.starts_with("K10ab12"), "{text}");
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        let cases = [
            ("", "does not start with K10"),
            ("K10abc::abcdef.0123456789abcdef", "fingerprint"),
            (&format!("K10{FP}abcdef.0123456789abcdef"), "'::'"),
            (&format!("K10{FP}::abcdef0123456789abcdef"), "<id>.<secret>"),
            (&format!("K10{FP}::ABCDEF.0123456789abcdef"), "id"),
            (&format!("K10{FP}::abcdef.short"), "secret"),
        ];
        for (text, reason) in cases {
            let error = JoinToken::parse(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn a_record_accepts_its_secret_until_it_expires() {
        let token = JoinToken::generate(FP);
        let record = token.record(1_000);
        let round_trip = TokenRecord::from_object(&record.to_object()).unwrap();
        assert_eq!(round_trip, record);
        assert!(!record.to_object().to_string().contains(&token.secret));
        assert_eq!(record.check(&token, 999), Ok(()));
        assert!(matches!(
            record.check(&token, 1_000),
            Err(TokenError::Expired { .. })
        ));
        let mut wrong = token.clone();
        wrong.secret = "0000000000000000".into();
        assert_eq!(
            record.check(&wrong, 10),
            Err(TokenError::WrongSecret {
                id: token.id.clone()
            })
        );
        let mut other = token.clone();
        other.id = "zzzzzz".into();
        assert!(matches!(
            record.check(&other, 10),
            Err(TokenError::Unknown { .. })
        ));
    }

    #[test]
    fn ttls_are_read_in_seconds_minutes_hours_and_days() {
        let table = [
            ("24h", Some(86400)),
            ("90m", Some(5400)),
            ("30", Some(30)),
            ("2d", Some(172800)),
            ("0h", None),
            ("1w", None),
            ("h", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_ttl(text).map(|d| d.as_secs()), want, "{text}");
        }
    }
}

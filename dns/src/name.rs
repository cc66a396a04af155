//! Domain names in lowercase wire format, the key of every lookup.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Errors building a domain name from text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// A label between two dots (or at an end) is empty.
    #[error("name {name:?} has an empty label")]
    EmptyLabel {
        /// The offending name.
        name: String,
    },
    /// A label is longer than 63 bytes.
    #[error("label {label:?} of name {name:?} is longer than 63 bytes")]
    LabelTooLong {
        /// The offending name.
        name: String,
        /// The offending label.
        label: String,
    },
    /// The name is longer than 255 bytes in wire format.
    #[error("name {name:?} is longer than 255 bytes")]
    NameTooLong {
        /// The offending name.
        name: String,
    },
    /// A character outside letters, digits, `-` and `_`.
    #[error("name {name:?} contains {character:?}: only letters, digits, '-' and '_' are allowed")]
    InvalidCharacter {
        /// The offending name.
        name: String,
        /// The first offending character.
        character: char,
    },
}

/// A domain name: lowercase labels in wire format, ending with the root label.
///
/// Cheap to clone (shared bytes). Ordering and equality are bytewise on the wire form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<[u8]>);

impl Name {
    /// The root name `.`.
    pub fn root() -> Self {
        Name(Arc::from(&[0u8][..]))
    }

    /// Parses a dotted name (`web-0.web.db.svc.cluster.local`, trailing dot optional),
    /// lowercasing it. Only letters, digits, `-` and `_` are accepted in labels.
    pub fn from_dotted(text: &str) -> Result<Self, NameError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        let mut wire = Vec::with_capacity(trimmed.len() + 2);
        for label in trimmed.split('.') {
            push_label(&mut wire, label, text)?;
        }
        wire.push(0);
        if wire.len() > 255 {
            return Err(NameError::NameTooLong { name: text.into() });
        }
        Ok(Name(Arc::from(wire)))
    }

    /// This name with `label` prepended (`label.self`).
    pub fn child(&self, label: &str) -> Result<Self, NameError> {
        let mut wire = Vec::with_capacity(label.len() + 1 + self.0.len());
        push_label(&mut wire, label, label)?;
        wire.extend_from_slice(&self.0);
        if wire.len() > 255 {
            let mut name = label.to_string();
            name.push('.');
            name.push_str(&self.to_string());
            return Err(NameError::NameTooLong { name });
        }
        Ok(Name(Arc::from(wire)))
    }

    /// Builds a name from wire bytes already known to be valid and lowercase.
    pub(crate) fn from_wire_unchecked(wire: &[u8]) -> Self {
        Name(Arc::from(wire))
    }

    /// The wire form (length-prefixed labels, ending in 0).
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// Number of labels, not counting the root.
    pub fn label_count(&self) -> usize {
        labels(&self.0).count()
    }

    /// The reverse-lookup name of an address (`5.1.244.10.in-addr.arpa.` or the
    /// nibble form under `ip6.arpa.`).
    pub fn reverse(ip: IpAddr) -> Self {
        let mut text = String::with_capacity(72);
        match ip {
            IpAddr::V4(v4) => {
                for octet in v4.octets().iter().rev() {
                    text.push_str(&octet.to_string());
                    text.push('.');
                }
                text.push_str("in-addr.arpa");
            }
            IpAddr::V6(v6) => {
                for octet in v6.octets().iter().rev() {
                    text.push(char::from_digit(u32::from(octet & 0xf), 16).unwrap_or('0'));
                    text.push('.');
                    text.push(char::from_digit(u32::from(octet >> 4), 16).unwrap_or('0'));
                    text.push('.');
                }
                text.push_str("ip6.arpa");
            }
        }
        Self::from_dotted(&text).unwrap_or_else(|_| Self::root())
    }
}

fn push_label(wire: &mut Vec<u8>, label: &str, name: &str) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::EmptyLabel { name: name.into() });
    }
    if label.len() > 63 {
        return Err(NameError::LabelTooLong {
            name: name.into(),
            label: label.into(),
        });
    }
    if let Some(character) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(NameError::InvalidCharacter {
            name: name.into(),
            character,
        });
    }
    wire.push(label.len() as u8);
    wire.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    Ok(())
}

/// Iterates over the labels of a valid wire-format name (without the root).
pub(crate) fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*wire.get(at)?);
        if len == 0 || at + 1 + len > wire.len() {
            return None;
        }
        let label = &wire[at + 1..at + 1 + len];
        at += 1 + len;
        Some(label)
    })
}

/// The parent of a valid wire-format name, or `None` for the root.
pub(crate) fn parent(wire: &[u8]) -> Option<&[u8]> {
    let len = usize::from(*wire.first()?);
    if len == 0 {
        return None;
    }
    wire.get(1 + len..)
}

// Hash and Eq of `Name` are those of its wire bytes, so tables keyed by `Name` can be
// probed with a `&[u8]` straight from a query.
impl std::borrow::Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() <= 1 {
            return f.write_str(".");
        }
        for label in labels(&self.0) {
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", b as char)?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// The label CoreDNS uses for an endpoint without a hostname: the address with `.` or `:`
/// replaced by `-` (`10-244-1-5`, `fd00--5`).
pub fn dashed_ip(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_parse_to_lowercase_wire_form() {
        let cases: &[(&str, &[u8])] = &[
            ("Web-0.Cluster.Local.", b"\x05web-0\x07cluster\x05local\x00"),
            ("_sql._tcp.pg", b"\x04_sql\x04_tcp\x02pg\x00"),
            ("", b"\x00"),
            (".", b"\x00"),
        ];
        for (text, wire) in cases {
            assert_eq!(Name::from_dotted(text).unwrap().wire(), *wire, "{text}");
        }
    }

    #[test]
    fn bad_names_are_rejected_with_the_reason() {
        let long_label = "a".repeat(64);
        let long_name = vec!["a".repeat(60); 5].join(".");
        let cases: Vec<(&str, NameError)> = vec![
            (
                "a..b",
                NameError::EmptyLabel {
                    name: "a..b".into(),
                },
            ),
            (
                &long_label,
                NameError::LabelTooLong {
                    name: long_label.clone(),
                    label: long_label.clone(),
                },
            ),
            (
                &long_name,
                NameError::NameTooLong {
                    name: long_name.clone(),
                },
            ),
            (
                "a b.c",
                NameError::InvalidCharacter {
                    name: "a b.c".into(),
                    character: ' ',
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Name::from_dotted(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn reverse_names_cover_both_families() {
        assert_eq!(
            Name::reverse("10.244.1.5".parse().unwrap()).to_string(),
            "5.1.244.10.in-addr.arpa."
        );
        let v6 = Name::reverse("fd00::5".parse().unwrap()).to_string();
        assert!(v6.starts_with("5.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("0.0.d.f.ip6.arpa."), "{v6}");
    }

    #[test]
    fn dashed_ips_follow_coredns() {
        assert_eq!(dashed_ip("10.244.1.5".parse().unwrap()), "10-244-1-5");
        assert_eq!(dashed_ip("fd00::5".parse().unwrap()), "fd00--5");
    }

    #[test]
    fn parent_and_children_walk_the_tree() {
        let zone = Name::from_dotted("cluster.local").unwrap();
        let child = zone.child("SVC").unwrap();
        assert_eq!(child.to_string(), "svc.cluster.local.");
        assert_eq!(parent(child.wire()), Some(zone.wire()));
        assert_eq!(child.label_count(), 3);
    }
}

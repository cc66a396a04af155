//! Image reference normalisation, as docker, podman and containerd do it: `busybox` is
//! `docker.io/library/busybox:latest`, `foo/bar` is `docker.io/foo/bar:latest`, a first
//! component with a dot, a port or `localhost` is a registry, digests are kept.
//!
//! Parsing is oci-spec's distribution reference (a port of Docker's grammar); this module adds
//! errors that name the rejected input and the few questions the store asks of a reference.

use oci_spec::distribution::{ParseError, Reference};

/// A string that is not a valid image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}")]
pub struct ReferenceError {
    /// The rejected input, as given.
    pub reference: String,
    #[source]
    pub source: ParseError,
}

/// Parses and normalises an image reference. The result's `whole()` is the canonical form
/// the store keeps (`docker.io/library/busybox:latest`).
pub fn normalize(reference: &str) -> Result<Reference, ReferenceError> {
    let trimmed = reference.trim();
    let error = |source| ReferenceError {
        reference: reference.to_owned(),
        source,
    };
    if trimmed.is_empty() {
        return Err(error(ParseError::NameEmpty));
    }
    // The grammar only accepts lowercase repositories; say so rather than "invalid format".
    let name = name_part(trimmed);
    let repository = registry_part(name).map_or(name, |registry| &name[registry.len() + 1..]);
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(error(ParseError::NameContainsUppercase));
    }
    Reference::try_from(trimmed).map_err(error)
}

/// The canonical string of a normalised reference (`docker.io/library/busybox:latest`).
pub fn canonical(reference: &str) -> Result<String, ReferenceError> {
    normalize(reference).map(|r| r.whole())
}

/// Whether `reference` names a tag explicitly (`busybox:1.36`, `localhost:5000/x:1`) rather
/// than leaving it to default to `latest` (`busybox`, `localhost:5000/x`).
pub fn has_explicit_tag(reference: &str) -> bool {
    let name_and_tag = name_and_tag_part(reference.trim());
    let last_component = name_and_tag.rsplit('/').next().unwrap_or(name_and_tag);
    last_component.contains(':')
}

/// Whether `reference` carries a digest (`busybox@sha256:...`).
pub fn has_digest(reference: &str) -> bool {
    reference.contains('@')
}

/// `repo[:tag]` without any `@digest`.
fn name_and_tag_part(reference: &str) -> &str {
    reference
        .split_once('@')
        .map_or(reference, |(name, _)| name)
}

/// The repository path with registry, without tag or digest.
fn name_part(reference: &str) -> &str {
    let name_and_tag = name_and_tag_part(reference);
    if has_explicit_tag(name_and_tag) {
        let (name, _tag) = name_and_tag
            .rsplit_once(':')
            .expect("an explicit tag has a colon");
        name
    } else {
        name_and_tag
    }
}

/// The registry component of a repository path, if its first component is one (contains a
/// dot or a port, or is `localhost`).
fn registry_part(name: &str) -> Option<&str> {
    let (first, _rest) = name.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    #[test]
    fn references_normalise_as_container_tools_do() {
        let table: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("foo/bar", "docker.io/foo/bar:latest"),
            ("foo/bar/baz:v2", "docker.io/foo/bar/baz:v2"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost:5000/x:1", "localhost:5000/x:1"),
            ("127.0.0.1:5555/team/app:2.0", "127.0.0.1:5555/team/app:2.0"),
            ("quay.io/coreos/etcd:v3.5.9", "quay.io/coreos/etcd:v3.5.9"),
            ("registry.example.com/db", "registry.example.com/db:latest"),
            ("  busybox  ", "docker.io/library/busybox:latest"),
            ("busybox:Latest", "docker.io/library/busybox:Latest"),
        ];
        for (input, want) in table {
            assert_eq!(canonical(input).unwrap(), *want, "input {input:?}");
        }
    }

    #[test]
    fn digests_are_kept_with_or_without_a_tag() {
        assert_eq!(
            canonical(&format!("busybox@{DIGEST}")).unwrap(),
            format!("docker.io/library/busybox@{DIGEST}")
        );
        assert_eq!(
            canonical(&format!("localhost:5000/x:1@{DIGEST}")).unwrap(),
            format!("localhost:5000/x:1@{DIGEST}")
        );
        let parsed = normalize(&format!("busybox@{DIGEST}")).unwrap();
        assert_eq!(parsed.digest(), Some(DIGEST));
        assert_eq!(parsed.tag(), None);
    }

    #[test]
    fn invalid_references_are_rejected_naming_the_input() {
        let table: &[(&str, ParseError)] = &[
            ("", ParseError::NameEmpty),
            ("   ", ParseError::NameEmpty),
            ("BusyBox", ParseError::NameContainsUppercase),
            ("docker.io/Foo/bar:1", ParseError::NameContainsUppercase),
            ("busybox:", ParseError::ReferenceInvalidFormat),
            ("-busybox", ParseError::ReferenceInvalidFormat),
            ("foo/../bar", ParseError::ReferenceInvalidFormat),
            ("a b", ParseError::ReferenceInvalidFormat),
            ("busybox@sha256:abc", ParseError::ReferenceInvalidFormat),
            ("busybox:bad tag", ParseError::ReferenceInvalidFormat),
        ];
        for (input, want) in table {
            let err = normalize(input).expect_err(input);
            assert_eq!(err.reference, *input);
            assert_eq!(&err.source, want, "input {input:?}");
            assert_eq!(
                err.to_string(),
                format!("invalid image reference {input:?}")
            );
        }
    }

    #[test]
    fn registry_hosts_may_be_uppercase_but_repositories_may_not() {
        assert_eq!(
            canonical("Registry.Example.com/db").unwrap(),
            "Registry.Example.com/db:latest"
        );
        assert!(normalize("registry.example.com/DB").is_err());
    }

    #[test]
    fn explicit_tags_are_told_apart_from_registry_ports() {
        let table: &[(&str, bool)] = &[
            ("busybox", false),
            ("busybox:1.36", true),
            ("localhost:5000/x", false),
            ("localhost:5000/x:1", true),
            (&format!("busybox@{DIGEST}"), false),
            (&format!("busybox:1@{DIGEST}"), true),
        ];
        for (input, want) in table {
            assert_eq!(has_explicit_tag(input), *want, "input {input:?}");
        }
    }
}

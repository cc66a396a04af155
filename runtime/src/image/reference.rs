//! Image reference normalisation, as docker, podman and containerd do it: `busybox` is
//! `docker.io/library/busybox:latest`, `foo/bar` is `docker.io/foo/bar:latest`, a first
//! component with a dot, a port or `localhost` is a registry, digests are kept.
//!
//! The grammar is Docker's (distribution/reference), the same one oci-spec's
//! `Reference::try_from` checks, and the result is oci-spec's [`Reference`]. The match itself
//! is done here, with ASCII classes as Go's regexp has them: oci-spec compiles the grammar with
//! Unicode `\w`, and its tag part (`[\w][\w.-]{0,127}`) then becomes an automaton of about
//! 7 MiB that stays in the agent's heap for good after the first image reference. This one is
//! a few KiB.

use std::sync::OnceLock;

use oci_spec::distribution::{ParseError, Reference};
use regex::{Regex, RegexBuilder};

/// Docker's reference grammar, anchored; groups: name, tag, digest.
const GRAMMAR: &str = concat!(
    r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
    r"(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?",
    r"(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)",
    r"(?::([\w][\w.-]{0,127}))?",
    r"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$",
);

/// The longest repository path accepted (`NAME_TOTAL_LENGTH_MAX`).
const NAME_MAX: usize = 255;

fn grammar() -> &'static Regex {
    static GRAMMAR_REGEX: OnceLock<Regex> = OnceLock::new();
    GRAMMAR_REGEX.get_or_init(|| {
        RegexBuilder::new(GRAMMAR)
            .unicode(false)
            .build()
            .expect("the reference grammar compiles")
    })
}

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
    let captures = grammar()
        .captures(trimmed)
        .ok_or_else(|| error(ParseError::ReferenceInvalidFormat))?;
    let (registry, repository) = split_registry(&captures[1]);
    if repository.len() > NAME_MAX {
        return Err(error(ParseError::NameTooLong));
    }
    let tag = captures.get(2).map(|m| m.as_str().to_owned());
    let digest = captures.get(3).map(|m| m.as_str().to_owned());
    if let Some(digest) = &digest {
        check_digest(digest).map_err(error)?;
    }
    Ok(match (tag, digest) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag, digest)
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest),
        (tag, None) => {
            Reference::with_tag(registry, repository, tag.unwrap_or_else(|| "latest".into()))
        }
    })
}

/// Registry and repository of a matched name, Docker Hub's defaults filled in (Docker's
/// `splitDomain`).
fn split_registry(name: &str) -> (String, String) {
    let (registry, repository) = match registry_part(name) {
        Some(registry) => (registry, &name[registry.len() + 1..]),
        None => ("docker.io", name),
    };
    let registry = match registry {
        "index.docker.io" => "docker.io",
        other => other,
    };
    if registry == "docker.io" && !repository.contains('/') {
        (registry.into(), format!("library/{repository}"))
    } else {
        (registry.into(), repository.into())
    }
}

/// A digest's algorithm is one the registries use and its hex has that algorithm's length.
fn check_digest(digest: &str) -> Result<(), ParseError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(ParseError::DigestInvalidFormat)?;
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ParseError::DigestUnsupported),
    };
    if hex.len() == length {
        Ok(())
    } else {
        Err(ParseError::DigestInvalidLength)
    }
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
    fn the_grammar_agrees_with_oci_specs_parser() {
        let long_name = format!("a/{}", "b".repeat(260));
        let long_tag = format!("busybox:{}", "t".repeat(128));
        let too_long_tag = format!("busybox:{}", "t".repeat(129));
        let inputs: Vec<String> = [
            "busybox",
            "busybox:1.36",
            "busybox:latest",
            "busybox:_under",
            "busybox:.dot",
            "library/busybox",
            "docker.io/busybox",
            "index.docker.io/busybox:1",
            "index.docker.io/foo/bar",
            "foo/bar/baz:v2",
            "foo__bar/baz---qux.x_y",
            "foo___bar",
            "foo_.bar",
            "localhost/x",
            "localhost:5000/x:1",
            "127.0.0.1:5555/team/app:2.0",
            "my-registry.example.com:443/a/b/c:tag-1",
            "-reg.example.com/x",
            "reg-.example.com/x",
            "test.com:tag",
            "test.com:5000",
            "busybox:",
            "busybox::1",
            ":1",
            "/busybox",
            "busybox/",
            "a//b",
            "foo/../bar",
            "a b",
            "busybox:bad tag",
            "busybox@sha256:abc",
            "busybox@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "busybox@sha256:fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "busybox@sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "busybox@md5:ffffffffffffffffffffffffffffffff",
            "busybox:1@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "busybox@sha256",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([long_name, long_tag, too_long_tag])
        .collect();
        for input in &inputs {
            let ours = normalize(input).map_err(|e| e.source);
            let theirs = Reference::try_from(input.as_str());
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(
                    (a.whole(), a.registry(), a.repository(), a.tag(), a.digest()),
                    (b.whole(), b.registry(), b.repository(), b.tag(), b.digest()),
                    "input {input:?}"
                ),
                // Uppercase repositories get a more precise error here than oci-spec's.
                (Err(ParseError::NameContainsUppercase), Err(_)) => {}
                _ => assert_eq!(ours, theirs, "input {input:?}"),
            }
        }
    }

    #[test]
    fn tags_are_ascii_as_in_dockers_grammar() {
        assert_eq!(
            canonical("busybox:v1_x").unwrap(),
            "docker.io/library/busybox:v1_x"
        );
        for input in ["busybox:vé", "busybox:版本"] {
            let err = normalize(input).expect_err(input);
            assert_eq!(
                err.source,
                ParseError::ReferenceInvalidFormat,
                "input {input:?}"
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

//! Identifiers and the on-disk layout.
//!
//! ```text
//! <run>/                                   tmpfs (default /run/berth): cleared by a reboot
//!   shims/<container-id>/
//!     shim-config.json                     what the agent asked for (ShimConfig)
//!     bundle/config.json                   the OCI runtime spec
//!     start.lock                           made by the agent before the spawn; locked by the
//!                                          shim for its life (shim::start_lock)
//!     pid                                  "<shim pid> <start time>", written by the shim
//!     started.json                         init pid and start time, once running
//!     exit.json                            the exit record (atomic: tmp, fsync, rename)
//!     control.sock                         stop / signal requests to the shim
//!     shim.log                             the shim's own stderr
//!     exec-<pid>.json                      an exec's process spec, while it starts
//!   libcontainer/<container-id>/           libcontainer's state root
//! cgroups (each hierarchy): <parent>/shims (every shim), <parent>/pod<uid>/<container-id>
//!   sandboxes/<pod-uid>/
//!     sandbox.json                         the sandbox's configuration
//!     ns/{net,uts,ipc}                     namespace files (nsfs bind mounts)
//!     shm/                                 the pod's /dev/shm (tmpfs)
//! <data>/                                  disk (default /var/lib/berth): survives reboots
//!   containers/<container-id>/{upper,work,rootfs}   overlay dirs and mount point
//!   volumes/claims/<claim-name>/           claim directories, never removed implicitly
//!   pods/<pod-uid>/volumes/<kind>/<name>/  emptyDir, configmap, secret volumes
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The longest identifier accepted. File names are limited to 255 bytes; this leaves room for
/// suffixes such as `.tmp`.
pub const MAX_ID_LEN: usize = 200;

/// A bad identifier (container id, pod uid, claim or volume name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} {value:?} is longer than {MAX_ID_LEN} characters")]
    TooLong { kind: &'static str, value: String },
    #[error(
        "{kind} {value:?} contains {found:?}: only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit"
    )]
    BadCharacter {
        kind: &'static str,
        value: String,
        found: char,
    },
}

/// Checks an identifier used as a single path component: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_ID_LEN`] long. This excludes `.`, `..`, `/` and anything a shell or a path could
/// misread.
pub fn validate_name(kind: &'static str, value: &str) -> Result<(), IdError> {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return Err(IdError::Empty { kind });
    };
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            value: value.to_owned(),
        });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_owned(),
            found: first,
        });
    }
    if let Some(found) =
        chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadCharacter {
            kind,
            value: value.to_owned(),
            found,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate_name($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A container id, chosen by the caller (the agent), unique on the host. Used as a
    /// directory name, a libcontainer id and a cgroup name.
    ContainerId,
    "container id"
);
name_type!(
    /// A pod's uid: names the pod's sandbox and per-pod directories.
    PodUid,
    "pod uid"
);

/// The two directory trees the runtime owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDirs {
    /// Volatile state (tmpfs in production): shims, namespace files, libcontainer state.
    pub run_dir: PathBuf,
    /// Persistent data: container upper dirs, claims, pod volumes.
    pub data_dir: PathBuf,
}

impl Default for RuntimeDirs {
    fn default() -> Self {
        Self {
            run_dir: PathBuf::from("/run/berth"),
            data_dir: PathBuf::from("/var/lib/berth"),
        }
    }
}

impl RuntimeDirs {
    /// Directory tree with every shim's state.
    pub fn shims_dir(&self) -> PathBuf {
        self.run_dir.join("shims")
    }

    /// One shim's state directory.
    pub fn shim_dir(&self, id: &ContainerId) -> PathBuf {
        self.shims_dir().join(id.as_str())
    }

    /// libcontainer's state root.
    pub fn libcontainer_root(&self) -> PathBuf {
        self.run_dir.join("libcontainer")
    }

    /// Directory tree with every pod sandbox.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.run_dir.join("sandboxes")
    }

    /// One pod sandbox's directory.
    pub fn sandbox_dir(&self, pod: &PodUid) -> PathBuf {
        self.sandboxes_dir().join(pod.as_str())
    }

    /// A container's persistent directory (overlay upper, work and mount point).
    pub fn container_data_dir(&self, id: &ContainerId) -> PathBuf {
        self.data_dir.join("containers").join(id.as_str())
    }

    /// Where claim directories live.
    pub fn claims_dir(&self) -> PathBuf {
        self.data_dir.join("volumes").join("claims")
    }

    /// A pod's persistent directory (emptyDir and projected volumes).
    pub fn pod_data_dir(&self, pod: &PodUid) -> PathBuf {
        self.data_dir.join("pods").join(pod.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_safe_characters_are_accepted() {
        for ok in ["a", "web-0", "pod_1.2", "0abc", &"x".repeat(MAX_ID_LEN)] {
            assert!(ContainerId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_that_could_escape_a_directory_are_rejected() {
        let cases: &[(&str, IdError)] = &[
            (
                "",
                IdError::Empty {
                    kind: "container id",
                },
            ),
            (
                "..",
                IdError::BadCharacter {
                    kind: "container id",
                    value: "..".into(),
                    found: '.',
                },
            ),
            (
                "a/b",
                IdError::BadCharacter {
                    kind: "container id",
                    value: "a/b".into(),
                    found: '/',
                },
            ),
            (
                "-x",
                IdError::BadCharacter {
                    kind: "container id",
                    value: "-x".into(),
                    found: '-',
                },
            ),
            (
                "a b",
                IdError::BadCharacter {
                    kind: "container id",
                    value: "a b".into(),
                    found: ' ',
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(ContainerId::new(*input).unwrap_err(), *want, "{input:?}");
        }
        assert!(matches!(
            ContainerId::new("y".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn error_message_names_the_identifier() {
        let err = PodUid::new("a/b").unwrap_err().to_string();
        assert!(err.contains("pod uid \"a/b\""), "{err}");
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: ContainerId = serde_json::from_str("\"c1\"").unwrap();
        assert_eq!(ok.as_str(), "c1");
        assert!(serde_json::from_str::<ContainerId>("\"../x\"").is_err());
    }
}

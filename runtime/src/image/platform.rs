//! Platforms (`linux/amd64`, `linux/arm/v7`) and choosing this host's manifest from a
//! multi-platform image index.

use std::fmt;

use oci_spec::image::{Arch, Descriptor, ImageIndex, Os};
use serde::{Deserialize, Serialize};

/// The operating system and CPU an image is built for, in OCI (Go) spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// CPU variant: `v8` for arm64, `v7` for arm, `v2` for amd64, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine this runs on: `linux` and the Go name of
    /// `std::env::consts::ARCH`, with the variant the OCI spec expects for ARM.
    pub fn host() -> Platform {
        let architecture = go_arch(std::env::consts::ARCH).unwrap_or(std::env::consts::ARCH);
        let variant = match architecture {
            "arm64" => Some("v8".to_owned()),
            "arm" => Some("v7".to_owned()),
            _ => None,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant,
        }
    }

    /// Builds a platform from oci-spec's typed fields.
    pub fn from_oci(os: &Os, architecture: &Arch, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_owned),
        }
    }

    /// How well an image for `self` runs on `host`: `None` if it cannot, higher is better.
    /// The variant may be absent, equal, or (for `arm`) an older variant the host also runs.
    pub fn suitability_on(&self, host: &Platform) -> Option<u8> {
        if self.os != host.os || self.architecture != host.architecture {
            return None;
        }
        match (self.variant.as_deref(), host.variant.as_deref()) {
            (None, _) => Some(2),
            (Some(want), Some(have)) if want == have => Some(3),
            // amd64 micro-architecture levels v1/v2 run on any x86-64 this decade; v3 and v4
            // need AVX2/AVX-512, which cannot be assumed.
            (Some("v1" | "v2"), None) if self.architecture == "amd64" => Some(1),
            (Some(want), Some(have)) if self.architecture == "arm" => {
                // v5 < v6 < v7 < v8: an older variant runs on a newer core.
                (want < have).then_some(1)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The Go (OCI) name of a Rust `target_arch`.
pub fn go_arch(rust_arch: &str) -> Option<&'static str> {
    Some(match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips64" => "mips64",
        _ => return None,
    })
}

/// The manifest in `index` that suits `host` best, or the list of platforms it does offer.
pub fn select_manifest<'a>(
    index: &'a ImageIndex,
    host: &Platform,
) -> Result<&'a Descriptor, Vec<Platform>> {
    let mut best: Option<(u8, &Descriptor)> = None;
    let mut offered = Vec::new();
    for descriptor in index.manifests() {
        let Some(p) = descriptor.platform() else {
            continue;
        };
        let platform = Platform::from_oci(p.os(), p.architecture(), p.variant().as_deref());
        if let Some(score) = platform.suitability_on(host)
            && best.is_none_or(|(best_score, _)| score > best_score)
        {
            best = Some((score, descriptor));
        }
        offered.push(platform);
    }
    best.map(|(_, d)| d).ok_or(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    #[test]
    fn host_platform_uses_go_architecture_names() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert_eq!(
            Some(host.architecture.as_str()),
            go_arch(std::env::consts::ARCH)
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn suitability_follows_os_architecture_and_variant_rules() {
        let amd64 = platform("linux", "amd64", None);
        let arm64 = platform("linux", "arm64", Some("v8"));
        let armv7 = platform("linux", "arm", Some("v7"));
        let table: &[(Platform, &Platform, Option<u8>)] = &[
            (platform("linux", "amd64", None), &amd64, Some(2)),
            (platform("linux", "amd64", Some("v2")), &amd64, Some(1)),
            (platform("linux", "amd64", Some("v3")), &amd64, None),
            (platform("windows", "amd64", None), &amd64, None),
            (platform("linux", "arm64", None), &amd64, None),
            (platform("linux", "arm64", Some("v8")), &arm64, Some(3)),
            (platform("linux", "arm64", None), &arm64, Some(2)),
            (platform("linux", "arm", Some("v6")), &armv7, Some(1)),
            (platform("linux", "arm", Some("v8")), &armv7, None),
        ];
        for (image, host, want) in table {
            assert_eq!(image.suitability_on(host), *want, "{image} on {host}");
        }
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i),
                    "size": 100,
                    "platform": platform,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap()
    }

    #[test]
    fn index_selection_picks_the_best_match_for_the_host() {
        let idx = index(&[
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", Some("v2")),
            ("linux", "amd64", None),
            ("unknown", "unknown", None),
        ]);
        let chosen = select_manifest(&idx, &platform("linux", "amd64", None)).unwrap();
        assert_eq!(chosen.digest().to_string(), format!("sha256:{:064x}", 2));
    }

    #[test]
    fn index_without_the_host_platform_lists_what_it_offers() {
        let idx = index(&[("linux", "arm64", Some("v8")), ("linux", "s390x", None)]);
        let offered = select_manifest(&idx, &platform("linux", "amd64", None)).unwrap_err();
        let names: Vec<String> = offered.iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["linux/arm64/v8", "linux/s390x"]);
    }
}

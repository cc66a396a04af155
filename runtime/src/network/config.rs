//! How a node's pod network is laid out, and the checks that need no kernel.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::NetworkError;

/// The default pod CIDR of a single host.
pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/24";
/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default nft table name (family `ip`).
pub const DEFAULT_NFT_TABLE: &str = "berth";
/// The MTU used when the host has no default route to take it from.
pub const FALLBACK_MTU: u32 = 1500;

/// A node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetworkConfig {
    /// The node's pod CIDR: the bridge takes its first address (the pods' gateway), pods the
    /// rest.
    pub pod_cidr: Ipv4Net,
    /// The bridge's name.
    pub bridge: String,
    /// berth's nft table (family `ip`); nothing outside it is touched.
    pub nft_table: String,
    /// The pods' MTU; `None` takes the MTU of the interface of the host's default route.
    pub mtu: Option<u32>,
    /// The host's network namespace, as a file; `None` is the calling process's namespace.
    /// Tests use it to run a whole node inside a namespace of their own.
    pub netns: Option<PathBuf>,
}

impl Default for NodeNetworkConfig {
    /// [`DEFAULT_POD_CIDR`] with the other defaults of [`NodeNetworkConfig::new`].
    fn default() -> NodeNetworkConfig {
        NodeNetworkConfig::new(
            DEFAULT_POD_CIDR
                .parse()
                .expect("the default pod CIDR parses"),
        )
    }
}

impl NodeNetworkConfig {
    /// The defaults around `pod_cidr`: bridge `berth0`, table `berth`, the uplink's MTU, the
    /// process's namespace.
    pub fn new(pod_cidr: Ipv4Net) -> NodeNetworkConfig {
        NodeNetworkConfig {
            pod_cidr,
            bridge: DEFAULT_BRIDGE.into(),
            nft_table: DEFAULT_NFT_TABLE.into(),
            mtu: None,
            netns: None,
        }
    }

    /// The gateway: the pod CIDR's first address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        first_host(self.pod_cidr)
    }

    /// Checks every field; the error names the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), NetworkError> {
        check_pod_cidr(self.pod_cidr)?;
        check_interface_name("bridge", &self.bridge)?;
        check_table_name(&self.nft_table)?;
        if let Some(mtu) = self.mtu
            && !(576..=65535).contains(&mtu)
        {
            return Err(invalid(
                "mtu",
                mtu.to_string(),
                "must be between 576 and 65535",
            ));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, value: String, reason: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig {
        field,
        value,
        reason: reason.into(),
    }
}

/// The first usable address of `cidr`.
pub fn first_host(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// A pod CIDR must be IPv4 without host bits, with room for a gateway and at least one pod.
pub fn check_pod_cidr(cidr: Ipv4Net) -> Result<(), NetworkError> {
    if cidr.trunc() != cidr {
        return Err(invalid(
            "pod CIDR",
            cidr.to_string(),
            format!("host bits are set (did you mean {}?)", cidr.trunc()),
        ));
    }
    if cidr.prefix_len() > 30 {
        return Err(invalid(
            "pod CIDR",
            cidr.to_string(),
            "is too small: a /30 or larger is needed (gateway plus at least one pod)",
        ));
    }
    if cidr.prefix_len() < 8 {
        return Err(invalid(
            "pod CIDR",
            cidr.to_string(),
            "is larger than a /8; give each node a smaller range",
        ));
    }
    let network = cidr.network();
    if network.is_loopback()
        || network.is_multicast()
        || network.is_unspecified()
        || u32::from(network) >= 0xf000_0000
    {
        return Err(invalid(
            "pod CIDR",
            cidr.to_string(),
            "must be a unicast range (not loopback, multicast or reserved)",
        ));
    }
    Ok(())
}

/// Interface names: 1 to 15 bytes, no '/', ':' or whitespace (the kernel's rules).
pub fn check_interface_name(field: &'static str, name: &str) -> Result<(), NetworkError> {
    if name.is_empty() || name.len() > 15 {
        return Err(invalid(
            field,
            name.into(),
            "must be 1 to 15 characters long",
        ));
    }
    if name == "." || name == ".." {
        return Err(invalid(field, name.into(), "is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(
            field,
            name.into(),
            format!("contains {c:?}: only letters, digits, '-', '_' and '.' are allowed"),
        ));
    }
    Ok(())
}

fn check_table_name(name: &str) -> Result<(), NetworkError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        && name.len() <= 64;
    if valid {
        Ok(())
    } else {
        Err(invalid(
            "nft table",
            name.into(),
            "must start with a letter and hold only letters, digits, '_' and '-' (at most 64)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cidr: &str) -> NodeNetworkConfig {
        NodeNetworkConfig::new(cidr.parse().unwrap())
    }

    #[test]
    fn the_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(
            config("10.244.0.0/24").gateway(),
            Ipv4Addr::new(10, 244, 0, 1)
        );
        assert_eq!(
            config("10.244.8.0/21").gateway(),
            Ipv4Addr::new(10, 244, 8, 1)
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let mut with_bridge = config("10.244.0.0/24");
        with_bridge.bridge = "a-name-that-is-too-long".into();
        let mut with_table = config("10.244.0.0/24");
        with_table.nft_table = "1table".into();
        let mut with_mtu = config("10.244.0.0/24");
        with_mtu.mtu = Some(100);
        let mut with_slash = config("10.244.0.0/24");
        with_slash.bridge = "br/0".into();
        let cases = [
            (
                config("10.244.0.5/24"),
                "pod CIDR \"10.244.0.5/24\" is invalid: host bits are set (did you mean 10.244.0.0/24?)",
            ),
            (
                config("10.244.0.0/31"),
                "pod CIDR \"10.244.0.0/31\" is invalid: is too small: a /30 or larger is needed (gateway plus at least one pod)",
            ),
            (
                config("10.0.0.0/7"),
                "pod CIDR \"10.0.0.0/7\" is invalid: is larger than a /8; give each node a smaller range",
            ),
            (
                config("127.0.0.0/24"),
                "pod CIDR \"127.0.0.0/24\" is invalid: must be a unicast range (not loopback, multicast or reserved)",
            ),
            (
                config("224.0.0.0/24"),
                "pod CIDR \"224.0.0.0/24\" is invalid: must be a unicast range (not loopback, multicast or reserved)",
            ),
            (
                with_bridge,
                "bridge \"a-name-that-is-too-long\" is invalid: must be 1 to 15 characters long",
            ),
            (
                with_slash,
                "bridge \"br/0\" is invalid: contains '/': only letters, digits, '-', '_' and '.' are allowed",
            ),
            (
                with_table,
                "nft table \"1table\" is invalid: must start with a letter and hold only letters, digits, '_' and '-' (at most 64)",
            ),
            (
                with_mtu,
                "mtu \"100\" is invalid: must be between 576 and 65535",
            ),
        ];
        for (config, message) in cases {
            assert_eq!(config.validate().unwrap_err().to_string(), message);
        }
        assert!(config("10.244.0.0/30").validate().is_ok());
        assert!(config(DEFAULT_POD_CIDR).validate().is_ok());
    }
}

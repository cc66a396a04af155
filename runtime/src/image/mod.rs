//! Content-addressed image store: import of OCI layouts and archives, layer unpacking and
//! reference normalisation.

/// The parts of an image's configuration that decide how a container runs, as the OCI image
/// config gives them. Kubernetes' rules for combining them with a container's `command` and
/// `args` live in [`crate::spec`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE` strings, in image order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
}

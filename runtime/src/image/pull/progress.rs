//! What a pull is doing, for progress bars and the node API: a [`PullProgress`] snapshot the
//! puller updates through a `tokio::sync::watch` channel.

use serde::Serialize;
use tokio::sync::watch;

/// Where a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum PullPhase {
    /// Fetching the manifest (and choosing this host's from an index).
    #[default]
    Resolving,
    /// Downloading and unpacking layers.
    Downloading,
    /// Moving the content into the store.
    Committing,
    /// The image is in the store.
    Done,
    /// The pull failed.
    Failed,
}

/// Where one layer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum LayerState {
    /// Not started yet (waiting for a download slot).
    #[default]
    Waiting,
    /// Another pull (this process or another) is downloading it; `current` shows its
    /// progress.
    WaitingForOtherPull,
    /// Downloading; `current` bytes so far.
    Downloading,
    /// Downloaded and verified; being unpacked.
    Unpacking,
    /// Downloaded and unpacked by this pull.
    Done,
    /// Already in the store (or fetched by another pull): nothing downloaded.
    AlreadyPresent,
}

/// One layer of the image being pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LayerProgress {
    /// The layer blob's digest.
    pub digest: String,
    /// Its size in bytes (compressed, as in the manifest).
    pub size: u64,
    /// Bytes downloaded so far.
    pub current: u64,
    /// Where it is.
    pub state: LayerState,
}

/// A snapshot of one pull.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullProgress {
    /// The canonical reference being pulled.
    pub reference: String,
    /// The endpoint serving the image, once the manifest is found (`https://mirror:5000`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The manifest digest, once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Layers, bottom first (each distinct blob once).
    pub layers: Vec<LayerProgress>,
    /// Where the pull is.
    pub phase: PullPhase,
    /// Why it failed, once `phase` is `Failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PullProgress {
    /// Bytes downloaded so far over all layers, and the total of layers to download.
    pub fn bytes(&self) -> (u64, u64) {
        self.layers.iter().fold((0, 0), |(c, t), l| {
            if l.state == LayerState::AlreadyPresent {
                (c, t)
            } else {
                (c + l.current, t + l.size)
            }
        })
    }
}

/// Updates one layer's entry.
pub(crate) fn update_layer(
    progress: &watch::Sender<PullProgress>,
    index: usize,
    change: impl FnOnce(&mut LayerProgress),
) {
    progress.send_modify(|p| {
        if let Some(layer) = p.layers.get_mut(index) {
            change(layer);
        }
    });
}

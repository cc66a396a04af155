//! The node's pod network as the kubelet's [`super::PodNetwork`].

use std::net::IpAddr;
use std::path::Path;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::network::NodeNetwork;

/// Adapts [`NodeNetwork`] to the kubelet.
pub struct Hook(pub NodeNetwork);

impl super::PodNetwork for Hook {
    fn attach<'a>(
        &'a self,
        pod: &'a Value,
        netns: &'a Path,
    ) -> BoxFuture<'a, Result<IpAddr, String>> {
        Box::pin(async move {
            self.0
                .attach(pod, netns)
                .await
                .map(|a| a.ip)
                .map_err(|e| super::images::error_chain(&e))
        })
    }

    fn detach<'a>(&'a self, pod_uid: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.0.detach(pod_uid).await {
                tracing::warn!(pod = %pod_uid, error = %super::images::error_chain(&e), "releasing the pod's network failed");
            }
        })
    }
}

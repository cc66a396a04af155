//! The statefulset controller: to be built by its issue. Until then it does nothing and objects of
//! its kind are stored but not acted upon.

/// Runs the controller until shutdown.
pub async fn run(_ctx: super::Context, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

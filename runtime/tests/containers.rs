//! Containers through the shim, as root: output, exec, stop, claims.

mod common;

use std::time::Duration;

use berth_runtime::{ContainerExit, ExecRequest};
use common::*;

#[tokio::test]
async fn a_started_container_writes_its_output_to_the_log() {
    let mut t = TestRuntime::new("output_log");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request("c-out", &pod, "echo hello; echo oops >&2; printf 'no newline'"))
        .await;
    let exit = shim.wait().await.unwrap();
    let ContainerExit::Exited(record) = exit else {
        panic!("expected an exit record: {exit:?}");
    };
    assert_eq!(record.exit_code, 0);
    assert_eq!(record.signal, None);
    let lines = berth_runtime::logs::read_log(&t.log_path("c-out"), None).unwrap();
    let text: Vec<(String, &str)> = lines
        .iter()
        .map(|l| (l.text(), l.stream.as_str()))
        .collect();
    assert!(text.contains(&("hello".to_string(), "stdout")), "{text:?}");
    assert!(text.contains(&("oops".to_string(), "stderr")), "{text:?}");
    assert!(text.contains(&("no newline".to_string(), "stdout")), "{text:?}");
}

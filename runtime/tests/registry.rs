//! Pulling from a real registry: Debian's `docker-registry`, started by each test on
//! 127.0.0.1 with its own storage, images made with umoci and pushed with skopeo. Needs root
//! (unpacking keeps ownership; containers run) and the tools `docker-registry`, `skopeo`,
//! `umoci`, `htpasswd` (apt-get install docker-registry skopeo umoci apache2-utils).

mod common;
mod image_support;
mod registry_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_runtime::image::ImageStore;
use berth_runtime::image::pull::{
    Keyring, PullError, PullProgress, Puller, Registries, error_chain,
};
use image_support::{
    assert_store_empty, busybox_layout, gnu_tar_layer, host_arch, put_blob, read_blob_json, run,
};
use registry_support::{Proxy, Registry, have_registry_tools};
use tokio::sync::watch;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("berth-pull-{}", common::unique(test)));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn puller(data_dir: &Path, registries: Registries) -> Puller {
    Puller::new(ImageStore::open(data_dir).unwrap(), registries)
}

fn progress() -> watch::Sender<PullProgress> {
    watch::channel(PullProgress::default()).0
}

async fn pull(
    puller: &Puller,
    reference: &str,
) -> Result<berth_runtime::image::pull::Pulled, PullError> {
    puller.pull(reference, &Keyring::new(), &progress()).await
}

/// A layer tar holding `files` (path, content), made with GNU tar.
fn layer(work: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let root = work.join(format!("rootfs-{name}"));
    for (path, content) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    let tar = work.join(format!("{name}.tar"));
    gnu_tar_layer(&root, &tar);
    tar
}

/// Bytes that do not compress (a simple xorshift stream), so layer sizes are what they say.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image in `layout` tagged `tag` for `arch`, one layer per tar (bottom first).
fn image(layout: &Path, tag: &str, arch: &str, layers: &[PathBuf]) {
    let image = format!("{}:{tag}", layout.display());
    if !layout.join("oci-layout").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    run(Command::new("umoci").args(["new", "--image", &image]));
    for layer in layers {
        run(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &image])
            .arg(layer));
    }
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        arch,
        "--config.cmd",
        "sh",
    ]));
}

/// The manifest descriptor tagged `tag` in a layout's index.json.
fn tagged(layout: &Path, tag: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} in {}", layout.display()))
        .clone()
}

/// Adds to the layout an OCI index tagged `tag` over the images tagged `members`, each with
/// the platform given; returns the index digest.
fn index(layout: &Path, tag: &str, members: &[(&str, &str, Option<&str>)]) -> String {
    let manifests: Vec<serde_json::Value> = members
        .iter()
        .map(|(member, arch, variant)| {
            let d = tagged(layout, member);
            let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = (*v).into();
            }
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d["digest"], "size": d["size"], "platform": platform,
            })
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = put_blob(layout, &body);
    let path = layout.join("index.json");
    let mut top: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": body.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    fs::write(path, serde_json::to_vec(&top).unwrap()).unwrap();
    digest
}

/// The layer digests of the image tagged `tag`.
fn layer_digests(layout: &Path, tag: &str) -> Vec<String> {
    let manifest = read_blob_json(layout, tagged(layout, tag)["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The registries file text that routes `registry` through `mirror` (both plain HTTP).
fn registries(text: &str) -> Registries {
    Registries::parse(text, Path::new("/test/registries.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_and_docker_format_images_pull_and_run() {
    if !have_registry_tools() {
        return;
    }
    let registry = Registry::start("oci_and_docker_format");
    let layout = busybox_layout();
    registry.push(&layout, "busybox:latest", "team/busybox-oci:1", "oci", &[]);
    registry.push(
        &layout,
        "busybox:latest",
        "team/busybox-docker:1",
        "v2s2",
        &[],
    );

    let mut t = common::TestRuntime::new("oci_and_docker_format_images_pull");
    let puller = puller(&t.dirs().data_dir.clone(), Registries::default());
    let pod = t.sandbox(&format!("p-{}", t.name), "pullrun").await;
    for (i, repo) in ["team/busybox-oci:1", "team/busybox-docker:1"]
        .iter()
        .enumerate()
    {
        let reference = format!("{}/{repo}", registry.host());
        let pulled = pull(&puller, &reference)
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        assert_eq!(pulled.record.references, [reference.clone()]);
        assert_eq!(pulled.endpoint, format!("http://{}", registry.host()));
        let image = puller.store().resolve(&reference).unwrap();
        assert_eq!(image.config.cmd, ["sh"]);
        let id = format!("c{i}");
        let mut request = t.request(&id, &pod, "echo pulled-image-runs; test -x /bin/busybox");
        request.rootfs = berth_runtime::RootfsSource::Overlay {
            lower_dirs: image.layer_dirs(),
        };
        request.image = image.config.clone();
        let shim = t.start(request).await;
        match shim.wait().await.expect("container exits") {
            berth_runtime::ContainerExit::Exited(record) => {
                assert_eq!(
                    record.exit_code,
                    0,
                    "{:?}",
                    common::log_text(&t.log_path(&id))
                )
            }
            other => panic!("container ended unknown: {other:?}"),
        }
        assert!(
            common::log_text(&t.log_path(&id))
                .iter()
                .any(|l| l.contains("pulled-image-runs"))
        );
    }
    // Both formats carry the same layer blobs: the second pull fetched none of them.
    for digest in layer_digests(&layout, "busybox:latest") {
        assert_eq!(registry.blob_gets(&digest), 1, "layer {digest}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_layers_pull_like_gzip_ones() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("zstd_layers");
    let registry = Registry::start("zstd_layers");
    let layout = scratch.0.join("layout");
    let tar = layer(
        &scratch.0,
        "z",
        &[("etc/zstd-test", b"hello zstd\n".to_vec())],
    );
    image(&layout, "z", host_arch(), &[tar]);
    registry.push(
        &layout,
        "z",
        "x/zstd:1",
        "oci",
        &["--dest-compress-format", "zstd", "--dest-compress"],
    );
    let manifest_types = {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/x/zstd:1", registry.host())));
        out
    };
    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let pulled = pull(&puller, &format!("{}/x/zstd:1", registry.host()))
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let image = puller
        .store()
        .resolve(&pulled.record.references[0])
        .unwrap();
    assert_eq!(
        fs::read(image.layer_dirs()[0].join("etc/zstd-test")).unwrap(),
        b"hello zstd\n"
    );
    assert!(
        manifest_types.contains("zstd"),
        "skopeo pushed zstd layers: {manifest_types}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_with_two_platforms_picks_the_hosts() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("index_two_platforms");
    let registry = Registry::start("index_two_platforms");
    let layout = scratch.0.join("layout");
    let foreign = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let native = layer(
        &scratch.0,
        "native",
        &[("etc/arch", host_arch().as_bytes().to_vec())],
    );
    let other = layer(
        &scratch.0,
        "other",
        &[("etc/arch", foreign.as_bytes().to_vec())],
    );
    image(&layout, "native", host_arch(), &[native]);
    image(&layout, "other", foreign, &[other]);
    let index_digest = index(
        &layout,
        "multi",
        &[("other", foreign, None), ("native", host_arch(), None)],
    );
    registry.push(&layout, "multi", "x/multi:1", "oci", &["--all"]);

    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let reference = format!("{}/x/multi:1", registry.host());
    let pulled = pull(&puller, &reference)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(
        pulled.index_digest.as_ref().map(|d| d.to_string()),
        Some(index_digest.clone())
    );
    assert_eq!(pulled.record.platform.architecture, host_arch());
    assert_eq!(
        pulled.record.manifest_digest.to_string(),
        tagged(&layout, "native")["digest"].as_str().unwrap()
    );
    let image = puller.store().resolve(&reference).unwrap();
    assert_eq!(
        fs::read_to_string(image.layer_dirs()[0].join("etc/arch")).unwrap(),
        host_arch()
    );
    // The other platform's layer was never fetched.
    assert_eq!(registry.blob_gets(&layer_digests(&layout, "other")[0]), 0);
    // Pulled by the index's digest, the same image is found (and nothing is downloaded).
    let by_digest = format!("{}/x/multi@{index_digest}", registry.host());
    let again = pull(&puller, &by_digest)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(again.downloaded, 0);
    assert_eq!(
        puller.store().resolve(&by_digest).unwrap().manifest_digest,
        pulled.record.manifest_digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_for_another_platform_only_is_refused_and_leaves_nothing() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("another_platform_only");
    let registry = Registry::start("another_platform_only");
    let layout = scratch.0.join("layout");
    let foreign = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let tar = layer(&scratch.0, "f", &[("etc/f", b"f".to_vec())]);
    image(&layout, "a", foreign, std::slice::from_ref(&tar));
    image(&layout, "b", "s390x", std::slice::from_ref(&tar));
    index(
        &layout,
        "multi",
        &[("a", foreign, None), ("b", "s390x", None)],
    );
    registry.push(&layout, "multi", "x/foreign:index", "oci", &["--all"]);
    registry.push(&layout, "a", "x/foreign:single", "oci", &[]);

    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let host = berth_runtime::image::Platform::host();
    let error = pull(&puller, &format!("{}/x/foreign:index", registry.host()))
        .await
        .unwrap_err();
    assert!(matches!(error, PullError::NoPlatform { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "image {}/x/foreign:index has no manifest for this host's platform {host} (it offers linux/{foreign}, linux/s390x)",
            registry.host()
        )
    );
    let error = pull(&puller, &format!("{}/x/foreign:single", registry.host()))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "image {}/x/foreign:single is for linux/{foreign}, not this host's platform {host}",
            registry.host()
        )
    );
    assert_store_empty(&data);
    assert_eq!(registry.blob_gets(&layer_digests(&layout, "a")[0]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_blob_is_rejected_and_not_stored() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("corrupted_blob");
    let registry = Registry::start("corrupted_blob");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "c", &[("data/blob", noise(7, 256 * 1024))]);
    image(&layout, "c", host_arch(), &[tar]);
    registry.push(&layout, "c", "x/corrupt:1", "oci", &[]);
    let digest = layer_digests(&layout, "c")[0].clone();
    // Flip bytes in the middle of the stored layer, keeping its length.
    let stored = registry.blob_data(&digest);
    let mut bytes = fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    fs::write(&stored, bytes).unwrap();

    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let error = pull(&puller, &format!("{}/x/corrupt:1", registry.host()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PullError::DigestMismatch { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("layer {digest} has digest"))
            && message.contains("it was not stored"),
        "{message}"
    );
    assert_store_empty_but_incoming(&data);
}

/// The store holds nothing, and its incoming area holds no blob or layer (lock files may
/// stay).
fn assert_store_empty_but_incoming(data: &Path) {
    let incoming = data.join("images/incoming");
    let left: Vec<String> = fs::read_dir(&incoming)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "active" && n != "boot_id" && !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in incoming: {left:?}");
    let _ = fs::remove_dir_all(&incoming);
    assert_store_empty(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_registries_take_the_right_credentials_and_name_the_refusal_of_wrong_ones() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("basic_auth");
    let registry = Registry::start_with_auth("basic_auth", "alice", "s3cret");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "a", &[("etc/private", b"private\n".to_vec())]);
    image(&layout, "a", host_arch(), &[tar]);
    registry.push(&layout, "a", "private/app:1", "oci", &[]);
    let reference = format!("{}/private/app:1", registry.host());
    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());

    // No credentials: the registry asks for them.
    let error = pull(&puller, &reference).await.unwrap_err();
    assert!(error.is_unauthorized(), "{error:?}");
    assert_eq!(
        error_chain(&error),
        format!(
            "cannot pull {reference} from http://{}: unauthorized: the registry refused anonymous access (authentication required)",
            registry.host()
        )
    );
    // Wrong password in a pull secret.
    let config = |user: &str, password: &str| {
        let auth = base64_encode(&format!("{user}:{password}"));
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host()
        )
    };
    let mut wrong = Keyring::new();
    wrong
        .add_docker_config_json(config("alice", "nope").as_bytes(), "secret default/regcred")
        .unwrap();
    let error = puller
        .pull(&reference, &wrong, &progress())
        .await
        .unwrap_err();
    assert!(error.is_unauthorized());
    assert!(
        error_chain(&error).ends_with("unauthorized: the registry refused the credentials of user \"alice\" (from secret default/regcred)"),
        "{}",
        error_chain(&error)
    );
    assert_store_empty_but_incoming(&data);
    // The right one, after a wrong one for the same registry: each is tried.
    let mut keyring = Keyring::new();
    keyring
        .add_docker_config_json(config("alice", "nope").as_bytes(), "secret default/old")
        .unwrap();
    keyring
        .add_docker_config_json(
            config("alice", "s3cret").as_bytes(),
            "secret default/regcred",
        )
        .unwrap();
    let pulled = puller
        .pull(&reference, &keyring, &progress())
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(pulled.record.references, [reference.clone()]);
    // The node's registries file works as well.
    let data2 = scratch.0.join("data2");
    let node = puller_with_file(
        &data2,
        &format!(
            "[registry.\"{}\"]\nusername = \"alice\"\npassword = \"s3cret\"\n",
            registry.host()
        ),
    );
    pull(&node, &reference)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
}

fn puller_with_file(data: &Path, text: &str) -> Puller {
    puller(data, registries(text))
}

fn base64_encode(text: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_is_used_before_the_upstream_and_the_upstream_after_a_mirror_miss() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("mirror_first");
    let upstream = Registry::start("mirror_upstream");
    let mirror = Registry::start("mirror_mirror");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "m", &[("etc/m", b"m\n".to_vec())]);
    image(&layout, "m", host_arch(), std::slice::from_ref(&tar));
    let only_upstream = layer(&scratch.0, "u", &[("etc/u", b"u\n".to_vec())]);
    image(&layout, "u", host_arch(), &[only_upstream]);
    upstream.push(&layout, "m", "lib/app:1", "oci", &[]);
    mirror.push(&layout, "m", "lib/app:1", "oci", &[]);
    upstream.push(&layout, "u", "lib/other:1", "oci", &[]);
    let before = upstream.requests();

    let data = scratch.0.join("data");
    let puller = puller_with_file(
        &data,
        &format!(
            "[registry.\"{}\"]\nmirrors = [\"http://{}\"]\n",
            upstream.host(),
            mirror.host()
        ),
    );
    let pulled = pull(&puller, &format!("{}/lib/app:1", upstream.host()))
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(pulled.endpoint, format!("http://{}", mirror.host()));
    assert_eq!(
        pulled.record.references,
        [format!("{}/lib/app:1", upstream.host())]
    );
    assert_eq!(upstream.requests(), before, "the upstream was not asked");
    assert_eq!(mirror.blob_gets(&layer_digests(&layout, "m")[0]), 1);

    let other = pull(&puller, &format!("{}/lib/other:1", upstream.host()))
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(other.endpoint, format!("http://{}", upstream.host()));
    assert!(
        mirror.access_log().contains("/v2/lib/other/manifests/1"),
        "the mirror was asked first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_images_sharing_a_layer_download_it_once_one_after_the_other_or_at_once() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("shared_layer");
    let registry = Registry::start("shared_layer");
    let layout = scratch.0.join("layout");
    let base = layer(&scratch.0, "base", &[("base/data", noise(1, 2 << 20))]);
    let base2 = layer(&scratch.0, "base2", &[("base/data", noise(2, 2 << 20))]);
    for (tag, bottom) in [("a", &base), ("b", &base), ("c", &base2), ("d", &base2)] {
        let top = layer(
            &scratch.0,
            tag,
            &[(&format!("etc/{tag}"), tag.as_bytes().to_vec())],
        );
        image(&layout, tag, host_arch(), &[bottom.clone(), top]);
        registry.push(&layout, tag, &format!("x/{tag}:1"), "oci", &[]);
    }
    let data = scratch.0.join("data");
    let first = puller(&data, Registries::default());
    pull(&first, &format!("{}/x/a:1", registry.host()))
        .await
        .unwrap();
    let b = pull(&first, &format!("{}/x/b:1", registry.host()))
        .await
        .unwrap();
    let shared = &layer_digests(&layout, "a")[0];
    assert_eq!(registry.blob_gets(shared), 1);
    assert_eq!(
        b.downloaded,
        fs::metadata(registry.blob_data(&layer_digests(&layout, "b")[1]))
            .unwrap()
            .len()
    );

    // At once, through a slow proxy so the downloads overlap, from two pullers (two
    // separate lock holders, as two processes would be).
    let proxy = Proxy::start(registry.port);
    proxy.throttle(2 << 20);
    let second = puller(&data, Registries::default());
    let (c_ref, d_ref) = (
        format!("{}/x/c:1", proxy.host()),
        format!("{}/x/d:1", proxy.host()),
    );
    let (c, d) = tokio::join!(pull(&first, &c_ref), pull(&second, &d_ref));
    c.unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    d.unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let shared2 = &layer_digests(&layout, "c")[0];
    assert_eq!(registry.blob_gets(shared2), 1, "{}", registry.access_log());
    let store = ImageStore::open(&data).unwrap();
    assert_eq!(
        store
            .resolve(&format!("{}/x/c:1", proxy.host()))
            .unwrap()
            .layer_dirs()[1],
        store
            .resolve(&format!("{}/x/d:1", proxy.host()))
            .unwrap()
            .layer_dirs()[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_an_image_already_present_downloads_no_layer() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("already_present");
    let registry = Registry::start("already_present");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "p", &[("etc/p", b"p".to_vec())]);
    image(&layout, "p", host_arch(), &[tar]);
    registry.push(&layout, "p", "x/p:1", "v2s2", &[]);
    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let reference = format!("{}/x/p:1", registry.host());
    let first = pull(&puller, &reference).await.unwrap();
    assert!(first.downloaded > 0);
    let again = pull(&puller, &reference).await.unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(again.record.manifest_digest, first.record.manifest_digest);
    assert_eq!(registry.blob_gets(&layer_digests(&layout, "p")[0]), 1);
}

/// Environment of the child pull process: `<data dir>|<reference>`.
const CHILD_ENV: &str = "BERTH_TEST_PULL_CHILD";

/// Not a test of its own: the process `a_pull_killed_halfway_resumes` kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child of a_pull_killed_halfway_resumes_and_completes"]
async fn pull_child_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (data, reference) = spec.split_once('|').unwrap();
    let puller = puller(Path::new(data), Registries::default());
    let result = pull(&puller, reference).await;
    println!(
        "CHILD RESULT {:?}",
        result
            .map(|p| p.record.manifest_digest.to_string())
            .map_err(|e| error_chain(&e))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_halfway_resumes_and_completes() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("killed_halfway");
    let registry = Registry::start("killed_halfway");
    let layout = scratch.0.join("layout");
    let big = noise(42, 6 << 20);
    let tar = layer(&scratch.0, "big", &[("data/big", big.clone())]);
    image(&layout, "big", host_arch(), &[tar]);
    registry.push(&layout, "big", "x/big:1", "oci", &[]);
    let digest = layer_digests(&layout, "big")[0].clone();
    let blob_size = fs::metadata(registry.blob_data(&digest)).unwrap().len();

    // The child pulls through a proxy that stalls halfway through the layer.
    let stalling = Proxy::start(registry.port);
    stalling.stall_after(blob_size / 2);
    let data = scratch.0.join("data");
    let reference = format!("{}/x/big:1", stalling.host());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pull_child_process", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{reference}", data.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let partial = data.join("images/incoming").join(format!(
        "{}.partial",
        digest.strip_prefix("sha256:").unwrap()
    ));
    let got = common::eventually("a partial download", Duration::from_secs(60), || {
        fs::metadata(&partial)
            .ok()
            .map(|m| m.len())
            .filter(|n| *n > blob_size / 4)
    })
    .await;
    // The layer is unpacked while it downloads: its first file is being written already.
    let hex = digest.strip_prefix("sha256:").unwrap();
    let incoming = data.join("images/incoming");
    let streamed = incoming.join(format!("unpack-{hex}/data/big"));
    common::eventually(
        "the layer unpacking during its download",
        Duration::from_secs(60),
        || fs::metadata(&streamed).ok().filter(|m| m.len() > 0),
    )
    .await;
    // Give the writer a moment to drain what the proxy let through, then kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let kept = fs::metadata(&partial).unwrap().len();
    assert!(
        kept >= got && kept < blob_size,
        "kept {kept} of {blob_size}"
    );

    // Restarted (here, in this process) through a proxy that lets everything through and
    // records the requests: the layer is fetched from where the first pull stopped.
    let open = Proxy::start(registry.port);
    let puller = puller(&data, Registries::default());
    let reference = format!("{}/x/big:1", open.host());
    let pulled = pull(&puller, &reference)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(pulled.downloaded, blob_size - kept);
    let ranged: Vec<String> = open
        .requests()
        .into_iter()
        .filter(|r| r.contains(&format!("/blobs/{digest}")))
        .collect();
    assert_eq!(ranged.len(), 1, "{ranged:?}");
    assert!(
        ranged[0]
            .to_ascii_lowercase()
            .contains(&format!("range: bytes={kept}-")),
        "{}",
        ranged[0]
    );
    let image = puller.store().resolve(&reference).unwrap();
    assert_eq!(
        fs::read(image.layer_dirs()[0].join("data/big")).unwrap(),
        big
    );
    assert!(!partial.exists());
    // Nothing of the unpack the kill interrupted is left, in the incoming area or the store.
    let left: Vec<String> = fs::read_dir(&incoming)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("unpack-") || n.starts_with("layer-") || n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "left in the incoming area: {left:?}");
    let layers: Vec<String> = fs::read_dir(data.join("images/layers/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_missing_tags_and_unreachable_registries_fail_clearly_and_leave_nothing() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("bad_input");
    let registry = Registry::start("bad_input");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "b", &[("etc/b", b"b".to_vec())]);
    image(&layout, "b", host_arch(), &[tar]);
    registry.push(&layout, "b", "x/b:1", "oci", &[]);
    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let host = registry.host();
    let closed = format!("127.0.0.1:{}", registry_support::free_port());
    let table: Vec<(String, String)> = vec![
        (
            "Not A/Reference".to_owned(),
            "invalid image reference \"Not A/Reference\"".to_owned(),
        ),
        (
            format!("{host}/x/b:nope"),
            format!(
                "cannot pull {host}/x/b:nope from http://{host}: manifest nope not found: the registry answered \"manifest unknown\""
            ),
        ),
        (
            format!("{host}/x/missing:1"),
            format!(
                "cannot pull {host}/x/missing:1 from http://{host}: manifest 1 not found: the registry answered \"manifest unknown\""
            ),
        ),
        (
            format!("{closed}/x/b:1"),
            format!("cannot pull {closed}/x/b:1 from http://{closed}: cannot reach the registry"),
        ),
    ];
    for (reference, want) in table {
        let error = pull(&puller, &reference).await.unwrap_err();
        let chain = error_chain(&error);
        assert!(chain.starts_with(&want), "{reference}: {chain}");
    }
    assert_store_empty_but_incoming(&data);
}

#[test]
fn an_unknown_registry_host_fails_naming_the_host() {
    if !image_support::have_tools(&["unshare"]) {
        return;
    }
    // In a network namespace of its own, so the name lookup cannot leave this machine.
    let output = Command::new("unshare")
        .arg("-n")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unknown_host_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("CHILD ERROR cannot pull registry.invalid/x/app:1 from https://registry.invalid: cannot reach the registry"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "run as a child of an_unknown_registry_host_fails_naming_the_host"]
async fn unknown_host_child() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let scratch = Scratch::new("unknown_host_child");
    let puller = puller(&scratch.0.join("data"), Registries::default());
    let error = pull(&puller, "registry.invalid/x/app:1").await.unwrap_err();
    println!("CHILD ERROR {}", error_chain(&error));
    assert_store_empty(&scratch.0.join("data"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_what_an_abandoned_pull_left_and_a_new_pull_still_completes() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("abandoned_pull");
    let registry = Registry::start("abandoned_pull");
    let layout = scratch.0.join("layout");
    let tar = layer(&scratch.0, "a", &[("data/a", noise(9, 3 << 20))]);
    image(&layout, "a", host_arch(), &[tar]);
    registry.push(&layout, "a", "x/a:1", "oci", &[]);
    let digest = layer_digests(&layout, "a")[0].clone();
    let proxy = Proxy::start(registry.port);
    proxy.stall_after(1 << 20);
    let data = scratch.0.join("data");
    let puller = puller(&data, Registries::default());
    let partial = data.join("images/incoming").join(format!(
        "{}.partial",
        digest.strip_prefix("sha256:").unwrap()
    ));
    let reference = format!("{}/x/a:1", proxy.host());
    // The pull is abandoned (its future dropped, as when a pod is deleted mid-pull).
    let abandoned = tokio::time::timeout(Duration::from_secs(3), pull(&puller, &reference)).await;
    assert!(abandoned.is_err(), "the stalled pull cannot have finished");
    common::eventually("the partial download", Duration::from_secs(10), || {
        fs::metadata(&partial).ok().filter(|m| m.len() > 0)
    })
    .await;
    let report = puller.store().prune(&[]).unwrap();
    assert!(report.blobs.is_empty());
    assert!(!partial.exists(), "prune removed the partial download");
    assert_store_empty_but_incoming(&data);
    let pulled = pull(&puller, &format!("{}/x/a:1", registry.host()))
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(pulled.record.references.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_pulling_the_same_image_at_once_download_each_layer_once() {
    if !have_registry_tools() {
        return;
    }
    let scratch = Scratch::new("two_processes");
    let registry = Registry::start("two_processes");
    let layout = scratch.0.join("layout");
    let bottom = layer(&scratch.0, "bottom", &[("data/b", noise(5, 2 << 20))]);
    let top = layer(&scratch.0, "top", &[("data/t", noise(6, 1 << 20))]);
    image(&layout, "p", host_arch(), &[bottom, top]);
    registry.push(&layout, "p", "x/p:1", "oci", &[]);
    // Slow enough that the two pulls overlap.
    let proxy = Proxy::start(registry.port);
    proxy.throttle(3 << 20);
    let data = scratch.0.join("data");
    let reference = format!("{}/x/p:1", proxy.host());
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pull_child_process", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{}|{reference}", data.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let puller = puller(&data, Registries::default());
    let ours = pull(&puller, &reference)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "CHILD RESULT Ok(\"{}\")",
            ours.record.manifest_digest
        )),
        "{stdout}"
    );
    for digest in layer_digests(&layout, "p") {
        assert_eq!(registry.blob_gets(&digest), 1, "layer {digest}");
    }
}

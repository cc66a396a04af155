//! `berth image pull|import|ls|rm|prune`: this node's image store, through the node-level API
//! (`/apis/node.berth.io/v1/images`).
//!
//! `image pull` sends the pull (which answers once the image is stored) and meanwhile polls
//! the pull's progress (`GET .../images/pulls/{ref}`): one bar per layer on a terminal, a line
//! per layer event otherwise (logs, CI).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use chrono::Utc;
use clap::Args;
use hyper::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::args::{ImageArgs, ImageCommand, OutputFormat};
use super::target::encode;
use super::{CliError, Ctx, fail, print_document, table};

const IMAGES_PATH: &str = "/apis/node.berth.io/v1/images";

/// How often pull progress is asked for.
const POLL: Duration = Duration::from_millis(150);

/// `berth image pull REF`.
#[derive(Debug, Args)]
pub struct ImagePullArgs {
    /// The image to pull (`postgres:16`, `registry.lab:5000/team/app@sha256:...`).
    pub reference: String,
    /// Print only the image digest once pulled.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `berth image prune`.
#[derive(Debug, Args)]
pub struct ImagePruneArgs {
    /// Also remove images that no container on this node uses (not only unreferenced
    /// content).
    #[arg(short = 'a', long)]
    pub all: bool,
}

pub async fn image(ctx: &Ctx, a: ImageArgs) -> Result<(), CliError> {
    match a.command {
        ImageCommand::Pull(p) => pull(ctx, p).await,
        ImageCommand::Prune(p) => prune(ctx, p).await,
        ImageCommand::Import(i) => {
            let path = std::fs::canonicalize(&i.path)
                .map_err(|e| fail(format!("cannot read {}: {e}", i.path.display())))?;
            let body = json!({"path": path, "name": i.name});
            let answer = ctx
                .client
                .json(
                    Method::POST,
                    &format!("{IMAGES_PATH}/import"),
                    None,
                    Some(&body),
                )
                .await?;
            for image in answer["items"].as_array().into_iter().flatten() {
                let names = image["references"].as_array().map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                println!(
                    "imported {} {}",
                    names.unwrap_or_default(),
                    image["digest"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        ImageCommand::Ls(l) => {
            let list = ctx.client.get(IMAGES_PATH).await?;
            match l.output {
                Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
                    print_document(&list, l.output)
                }
                _ => {
                    let mut t = table::Table {
                        headers: vec![
                            "IMAGE".into(),
                            "DIGEST".into(),
                            "SIZE".into(),
                            "CREATED".into(),
                        ],
                        rows: vec![],
                    };
                    for image in list["items"].as_array().into_iter().flatten() {
                        let digest = image["digest"].as_str().unwrap_or("");
                        let created = image["created"]
                            .as_str()
                            .and_then(table::parse_time)
                            .map(|t| format!("{} ago", table::human_duration(Utc::now() - t)))
                            .unwrap_or_default();
                        let size = image["size"]
                            .as_u64()
                            .map(table::human_bytes)
                            .unwrap_or_default();
                        for reference in image["references"].as_array().into_iter().flatten() {
                            t.rows.push(vec![
                                reference.as_str().unwrap_or("").to_string(),
                                short(digest),
                                size.clone(),
                                created.clone(),
                            ]);
                        }
                    }
                    print!("{}", t.render(true));
                }
            }
            Ok(())
        }
        ImageCommand::Rm(r) => {
            for reference in r.references {
                ctx.client
                    .json(
                        Method::DELETE,
                        &format!("{IMAGES_PATH}/{}", encode(&reference)),
                        None,
                        None,
                    )
                    .await?;
                println!("deleted {reference}");
            }
            Ok(())
        }
    }
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

async fn pull(ctx: &Ctx, p: ImagePullArgs) -> Result<(), CliError> {
    let body = json!({"reference": p.reference});
    let pull_path = format!("{IMAGES_PATH}/pull");
    let request = ctx.client.json(Method::POST, &pull_path, None, Some(&body));
    tokio::pin!(request);
    let progress_path = format!("{IMAGES_PATH}/pulls/{}", encode(&p.reference));
    let mut view: Box<dyn ProgressView> = if p.quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines::default())
    };
    let mut ticker = tokio::time::interval(POLL);
    let answer = loop {
        tokio::select! {
            answer = &mut request => break answer,
            _ = ticker.tick() => {
                // A pull not (yet, or any more) in flight answers 404: nothing to show.
                if let Ok(progress) = ctx.client.get(&progress_path).await {
                    view.update(&progress);
                }
            }
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            view.finish(None);
            return Err(error.into());
        }
    };
    view.finish(Some(&answer));
    let image = &answer["image"];
    let digest = image["digest"].as_str().unwrap_or("");
    if p.quiet {
        println!("{digest}");
        return Ok(());
    }
    let reference = image["references"][0].as_str().unwrap_or(&p.reference);
    let downloaded = answer["downloaded"].as_u64().unwrap_or(0);
    let seconds = answer["elapsedSeconds"].as_f64().unwrap_or(0.0);
    if downloaded == 0 {
        println!("{reference} is up to date ({digest})");
    } else {
        println!(
            "pulled {reference} {digest}: {} downloaded in {seconds:.1}s from {}",
            table::human_bytes(downloaded),
            answer["endpoint"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

async fn prune(ctx: &Ctx, p: ImagePruneArgs) -> Result<(), CliError> {
    let answer = ctx
        .client
        .json(
            Method::POST,
            &format!("{IMAGES_PATH}/prune"),
            None,
            Some(&json!({"all": p.all})),
        )
        .await?;
    for reference in answer["removedReferences"].as_array().into_iter().flatten() {
        println!("untagged {}", reference.as_str().unwrap_or(""));
    }
    println!(
        "deleted {} blobs and {} unpacked layers, {} reclaimed",
        answer["blobs"].as_u64().unwrap_or(0),
        answer["layers"].as_u64().unwrap_or(0),
        table::human_bytes(answer["bytes"].as_u64().unwrap_or(0))
    );
    Ok(())
}

/// How pull progress is shown.
trait ProgressView {
    fn update(&mut self, progress: &Value);
    fn finish(&mut self, answer: Option<&Value>);
}

struct Silent;

impl ProgressView for Silent {
    fn update(&mut self, _: &Value) {}
    fn finish(&mut self, _: Option<&Value>) {}
}

/// Plain lines, one per layer state change (for logs and pipes).
#[derive(Default)]
struct Lines {
    resolved: bool,
    states: BTreeMap<String, String>,
}

impl ProgressView for Lines {
    fn update(&mut self, progress: &Value) {
        if !self.resolved
            && let Some(manifest) = progress["manifest"].as_str()
        {
            self.resolved = true;
            eprintln!(
                "{}: resolved to {manifest} at {}",
                progress["reference"].as_str().unwrap_or(""),
                progress["endpoint"].as_str().unwrap_or("?")
            );
        }
        for layer in progress["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().unwrap_or("").to_string();
            let state = layer["state"].as_str().unwrap_or("").to_string();
            if state == "Waiting" || self.states.get(&digest) == Some(&state) {
                continue;
            }
            let size = layer["size"].as_u64().unwrap_or(0);
            let what = match state.as_str() {
                "Downloading" => format!("downloading ({})", table::human_bytes(size)),
                "WaitingForOtherPull" => "being downloaded by another pull; waiting".to_string(),
                "Unpacking" => "unpacking".to_string(),
                "Done" => "done".to_string(),
                "AlreadyPresent" => "already present".to_string(),
                other => other.to_lowercase(),
            };
            eprintln!("layer {}: {what}", short(&digest));
            self.states.insert(digest, state);
        }
    }

    fn finish(&mut self, _: Option<&Value>) {}
}

/// One indicatif bar per layer.
struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)),
            bars: BTreeMap::new(),
        }
    }
}

impl ProgressView for Bars {
    fn update(&mut self, progress: &Value) {
        for layer in progress["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().unwrap_or("").to_string();
            let size = layer["size"].as_u64().unwrap_or(0);
            let bar = self.bars.entry(digest.clone()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {wide_bar} {bytes:>10}/{total_bytes:<10} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(short(&digest));
                bar
            });
            bar.set_position(layer["current"].as_u64().unwrap_or(0).min(size));
            let state = layer["state"].as_str().unwrap_or("");
            let message = match state {
                "WaitingForOtherPull" => "waiting for another pull",
                "Downloading" => "downloading",
                "Unpacking" => "unpacking",
                "Done" => "done",
                "AlreadyPresent" => "already present",
                _ => "waiting",
            };
            bar.set_message(message);
            if matches!(state, "Done" | "AlreadyPresent") && !bar.is_finished() {
                bar.set_position(size);
                bar.finish_with_message(message);
            }
        }
    }

    fn finish(&mut self, answer: Option<&Value>) {
        for bar in self.bars.values() {
            if bar.is_finished() {
                continue;
            }
            if answer.is_some() {
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish_with_message("done");
            } else {
                bar.abandon();
            }
        }
    }
}

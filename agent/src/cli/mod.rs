//! `berth`, the kubectl-like client. Every command is a client of the agent's
//! Kubernetes-shaped API; nothing here touches state or containers directly.
//!
//! Output follows kubectl: tables for people, `-o json|yaml` in Kubernetes object shapes for
//! scripts, `kind/name verb` lines for changes, errors on stderr and exit code 1.

pub mod args;
pub mod client;
mod cluster;
mod create;
mod daemonset;
mod describe;
mod exec;
mod image;
mod node;
mod rollout;
pub mod table;
pub mod target;
pub mod yaml_out;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use hyper::Method;
use serde_json::{Value, json};

use crate::objects::{Kind, parse};
use args::*;
use client::{Client, ClientError};
use target::{Targets, collection_path, encode, kind_label, object_path, parse_one, parse_targets};

/// A failure of a CLI command, printed on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Target(#[from] target::TargetError),
    #[error(transparent)]
    Parse(#[from] parse::ParseError),
    /// A command in a container ended with this code; exit with it, as kubectl exec does.
    #[error("command terminated with exit code {0}")]
    ExitCode(i32),
}

fn fail(message: impl Into<String>) -> CliError {
    CliError::Message(message.into())
}

/// The context every command runs in.
pub struct Ctx {
    pub client: Client,
}

impl Ctx {
    fn namespace(&self, ns: &NamespaceArgs) -> String {
        ns.namespace
            .clone()
            .unwrap_or_else(|| "default".to_string())
    }
}

/// Runs a client command and turns the outcome into kubectl's exit behaviour.
pub async fn run(socket: std::path::PathBuf, command: Command) -> ExitCode {
    let client = match cluster::remote_client() {
        Ok(Some(client)) => client,
        Ok(None) => Client::new(socket),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            return ExitCode::FAILURE;
        }
    };
    let ctx = Ctx { client };
    let result = match command {
        Command::Agent(_) => unreachable!("the agent is started by main"),
        Command::Apply(a) => apply(&ctx, a).await,
        Command::Get(a) => get(&ctx, a).await,
        Command::Describe(a) => describe::describe(&ctx, a).await,
        Command::Delete(a) => delete(&ctx, a).await,
        Command::Logs(a) => logs(&ctx, a).await,
        Command::Exec(a) => exec::exec(&ctx, a).await,
        Command::Wait(a) => wait(&ctx, a).await,
        Command::Scale(a) => scale(&ctx, a).await,
        Command::Rollout(a) if daemonset::handles(&a) => daemonset::rollout(&ctx, a).await,
        Command::Rollout(a) => rollout::rollout(&ctx, a).await,
        Command::Set(a) => rollout::set(&ctx, a).await,
        Command::Create(a) => create::create(&ctx, a).await,
        Command::Image(a) => image::image(&ctx, a).await,
        Command::Label(a) => node::label(&ctx, a).await,
        Command::Cordon(a) => node::cordon(&ctx, a).await,
        Command::Uncordon(a) => node::uncordon(&ctx, a).await,
        Command::Drain(a) => node::drain(&ctx, a).await,
        Command::Node(a) => node::node(&ctx, a).await,
        Command::Version => version(&ctx).await,
        Command::Token(a) => cluster::token(&ctx, a).await,
        Command::Kubeconfig(a) => cluster::kubeconfig(&ctx, a).await,
        Command::Members => cluster::members(&ctx).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Message(m)) if m.is_empty() => ExitCode::FAILURE,
        Err(CliError::ExitCode(code)) => {
            eprintln!("command terminated with exit code {code}");
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// kubectl's `Error from server (Reason): message` for API failures.
fn error_text(e: &CliError) -> String {
    match e {
        CliError::Client(ClientError::Api { status, .. }) => {
            let message = status
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            match status.get("reason").and_then(Value::as_str) {
                Some(reason) if !reason.is_empty() => {
                    format!("Error from server ({reason}): {message}")
                }
                _ => format!("Error from server: {message}"),
            }
        }
        other => {
            let mut text = format!("error: {other}");
            let mut source = std::error::Error::source(other);
            // Transparent wrappers repeat their inner message; print only new information.
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

// ---------------------------------------------------------------------------------------------
// apply

async fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<(), CliError> {
    let documents = read_manifests(&a.files, a.recursive)?;
    if documents.is_empty() {
        return Err(fail("no objects passed to apply"));
    }
    let dry_run = a.dry_run.as_deref() == Some("server");
    let mut failed = false;
    for doc in documents {
        match apply_one(ctx, &a, &doc, dry_run).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                let text = match &e {
                    CliError::Client(ClientError::Api { .. }) => {
                        format!("{} when applying {}", error_text(&e), doc.source)
                    }
                    other => error_text(other),
                };
                eprintln!("{text}");
            }
        }
    }
    if failed {
        Err(silent_failure())
    } else {
        Ok(())
    }
}

/// A failure already reported on stderr: exit 1 without another message.
fn silent_failure() -> CliError {
    CliError::Message(String::new())
}

async fn apply_one(
    ctx: &Ctx,
    a: &ApplyArgs,
    doc: &parse::Document,
    dry_run: bool,
) -> Result<String, CliError> {
    let value = &doc.value;
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    let kind_name = value["kind"].as_str().unwrap_or("");
    let kind = Kind::from_type(api_version, kind_name).map_err(|e| {
        fail(format!(
            "resource mapping not found for {}: {e}",
            doc.source
        ))
    })?;
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        return Err(fail(format!(
            "error from {}: metadata.name: Required value: apply needs a name",
            doc.source
        )));
    }
    let namespace = namespace_for(kind, value, a.ns.namespace.as_deref())?;
    let path = object_path(kind, &namespace, name);
    let existing = match ctx.client.get(&path).await {
        Ok(v) => Some(v),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let mut body = value.clone();
    if kind.info().namespaced {
        body["metadata"]["namespace"] = json!(namespace);
    }
    let dry = if dry_run { "&dryRun=All" } else { "" };
    let applied = ctx
        .client
        .json(
            Method::PATCH,
            &format!("{path}?fieldManager=berth&force=true{dry}"),
            Some("application/apply-patch+yaml"),
            Some(&body),
        )
        .await?;
    let verb = match &existing {
        None => "created",
        Some(old)
            if old.pointer("/metadata/resourceVersion")
                == applied.pointer("/metadata/resourceVersion") =>
        {
            "unchanged"
        }
        Some(_) => "configured",
    };
    let suffix = if dry_run { " (server dry run)" } else { "" };
    Ok(match a.output {
        Some(OutputFormat::Json) => {
            serde_json::to_string_pretty(&applied).expect("JSON values serialise")
        }
        Some(OutputFormat::Yaml) => yaml_out::to_yaml(&applied),
        Some(OutputFormat::Name) => format!("{}/{name}", kind_label(kind)),
        _ => format!("{}/{name} {verb}{suffix}", kind_label(kind)),
    })
}

/// The namespace an object from a manifest goes to: its own, else `-n`, else `default`; a
/// manifest's namespace that contradicts `-n` is an error, as in kubectl.
fn namespace_for(kind: Kind, value: &Value, flag: Option<&str>) -> Result<String, CliError> {
    let own = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if !kind.info().namespaced {
        return Ok(String::new());
    }
    match (own, flag) {
        (Some(own), Some(flag)) if own != flag => Err(fail(format!(
            "the namespace from the provided object \"{own}\" does not match the namespace \"{flag}\". You must pass '--namespace={own}' to perform this operation."
        ))),
        (Some(own), _) => Ok(own.to_string()),
        (None, Some(flag)) => Ok(flag.to_string()),
        (None, None) => Ok("default".to_string()),
    }
}

fn read_manifests(files: &[String], recursive: bool) -> Result<Vec<parse::Document>, CliError> {
    let mut documents = Vec::new();
    for file in files {
        if file == "-" {
            documents.extend(parse::read_stdin()?);
        } else {
            documents.extend(parse::read_path(std::path::Path::new(file), recursive)?);
        }
    }
    Ok(documents)
}

// ---------------------------------------------------------------------------------------------
// get

async fn get(ctx: &Ctx, a: GetArgs) -> Result<(), CliError> {
    let targets = parse_targets(&a.args)?;
    let namespace = ctx.namespace(&a.ns);
    let ns_filter = if a.all_namespaces {
        None
    } else {
        Some(namespace.as_str())
    };
    let now = Utc::now();
    let mut query = Vec::new();
    if let Some(sel) = &a.selector {
        query.push(format!("labelSelector={}", encode(sel)));
    }
    if let Some(sel) = &a.field_selector {
        query.push(format!("fieldSelector={}", encode(sel)));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };

    match targets {
        Targets::Collections(kinds) => {
            let several = kinds.len() > 1;
            let mut all_items = Vec::new();
            let mut printed_any = false;
            let mut last_list: Option<(Kind, String)> = None;
            for kind in &kinds {
                let path = format!("{}{query}", collection_path(*kind, ns_filter));
                let list = ctx.client.get(&path).await?;
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let rv = list
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                last_list = Some((*kind, rv));
                match a.output {
                    Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
                        all_items.extend(items.into_iter().map(|i| with_type(*kind, i)))
                    }
                    _ => {
                        if items.is_empty() {
                            continue;
                        }
                        if printed_any {
                            println!();
                        }
                        print_objects(*kind, &items, &a, several, now);
                        printed_any = true;
                    }
                }
            }
            match a.output {
                Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
                    let list = json!({"apiVersion": "v1", "items": all_items, "kind": "List", "metadata": {"resourceVersion": ""}});
                    print_document(&list, a.output);
                }
                _ if !printed_any && !a.watch => {
                    if a.all_namespaces || !kinds.iter().any(|k| k.info().namespaced) {
                        eprintln!("No resources found");
                    } else {
                        eprintln!("No resources found in {namespace} namespace.");
                    }
                }
                _ => {}
            }
            if a.watch {
                let (kind, rv) = last_list.expect("at least one kind");
                if several {
                    return Err(fail(
                        "you may only specify a single resource type with --watch",
                    ));
                }
                let mut path = format!(
                    "{}?watch=true&resourceVersion={rv}",
                    collection_path(kind, ns_filter)
                );
                if let Some(sel) = &a.selector {
                    path.push_str(&format!("&labelSelector={}", encode(sel)));
                }
                if let Some(sel) = &a.field_selector {
                    path.push_str(&format!("&fieldSelector={}", encode(sel)));
                }
                watch_print(ctx, kind, &path, &a, !printed_any).await?;
            }
            Ok(())
        }
        Targets::Named(named) => {
            let mut objects = Vec::new();
            let mut errors = Vec::new();
            for (kind, name) in &named {
                match ctx.client.get(&object_path(*kind, &namespace, name)).await {
                    Ok(o) => objects.push((*kind, o)),
                    Err(e) => errors.push(CliError::from(e)),
                }
            }
            match a.output {
                Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => {
                    if named.len() == 1 && objects.len() == 1 {
                        let (kind, o) = objects.remove(0);
                        print_document(&with_type(kind, o), a.output);
                    } else if !objects.is_empty() {
                        let items: Vec<Value> =
                            objects.into_iter().map(|(k, o)| with_type(k, o)).collect();
                        print_document(
                            &json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}),
                            a.output,
                        );
                    }
                }
                _ => {
                    // Group consecutive objects of one kind into one table, as kubectl does.
                    let several = named.iter().any(|(k, _)| *k != named[0].0);
                    let mut i = 0;
                    while i < objects.len() {
                        let kind = objects[i].0;
                        let mut group = Vec::new();
                        while i < objects.len() && objects[i].0 == kind {
                            group.push(objects[i].1.clone());
                            i += 1;
                        }
                        print_objects(kind, &group, &a, several, now);
                    }
                }
            }
            if a.watch && named.len() == 1 && errors.is_empty() {
                let (kind, name) = &named[0];
                let path = format!(
                    "{}?watch=true&fieldSelector={}",
                    collection_path(*kind, kind.info().namespaced.then_some(namespace.as_str())),
                    encode(&format!("metadata.name={name}"))
                );
                watch_print(ctx, *kind, &path, &a, false).await?;
            }
            match errors.len() {
                0 => Ok(()),
                _ => {
                    let last = errors.pop().expect("non-empty");
                    for e in errors {
                        eprintln!("{}", error_text(&e));
                    }
                    Err(last)
                }
            }
        }
    }
}

/// Adds `apiVersion` and `kind` (list items from the API lack them, as in Kubernetes).
fn with_type(kind: Kind, mut object: Value) -> Value {
    if object.get("kind").is_none_or(Value::is_null) {
        object["kind"] = json!(kind.info().kind);
    }
    if object.get("apiVersion").is_none_or(Value::is_null) {
        object["apiVersion"] = json!(kind.info().api_version());
    }
    object
}

fn print_document(value: &Value, format: Option<OutputFormat>) {
    match format {
        Some(OutputFormat::Yaml) => print!("{}", yaml_out::to_yaml(value)),
        _ => println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON values serialise")
        ),
    }
}

fn print_objects(
    kind: Kind,
    items: &[Value],
    a: &GetArgs,
    qualify: bool,
    now: chrono::DateTime<Utc>,
) {
    if a.output == Some(OutputFormat::Name) {
        for o in items {
            println!(
                "{}/{}",
                kind_label(kind),
                table::str_at(o, "/metadata/name")
            );
        }
        return;
    }
    let mut t = table::table(
        kind.info().kind,
        items,
        a.output == Some(OutputFormat::Wide),
        a.all_namespaces,
        now,
    );
    if qualify {
        let name_col = usize::from(a.all_namespaces);
        for row in &mut t.rows {
            row[name_col] = format!("{}/{}", kind_label(kind), row[name_col]);
        }
    }
    if a.show_labels {
        t.headers.push("LABELS".into());
        for (row, o) in t.rows.iter_mut().zip(items) {
            row.push(table::map_string(o.pointer("/metadata/labels")));
        }
    }
    print!("{}", t.render(!a.no_headers));
}

async fn watch_print(
    ctx: &Ctx,
    kind: Kind,
    path: &str,
    a: &GetArgs,
    headers: bool,
) -> Result<(), CliError> {
    let mut events = std::pin::pin!(ctx.client.watch(path).await?);
    let mut first = headers;
    while let Some(event) = events.next().await {
        let event = event?;
        if event["type"] == "ERROR" {
            return Err(fail(
                event
                    .pointer("/object/message")
                    .and_then(Value::as_str)
                    .unwrap_or("watch failed")
                    .to_string(),
            ));
        }
        if event["type"] == "BOOKMARK" {
            continue;
        }
        let object = event["object"].clone();
        match a.output {
            Some(OutputFormat::Json) => println!(
                "{}",
                serde_json::to_string_pretty(&with_type(kind, object)).expect("serialises")
            ),
            Some(OutputFormat::Yaml) => {
                print!("---\n{}", yaml_out::to_yaml(&with_type(kind, object)))
            }
            _ => {
                let mut t = table::table(
                    kind.info().kind,
                    std::slice::from_ref(&object),
                    a.output == Some(OutputFormat::Wide),
                    a.all_namespaces,
                    Utc::now(),
                );
                if a.output == Some(OutputFormat::Name) {
                    println!(
                        "{}/{}",
                        kind_label(kind),
                        table::str_at(&object, "/metadata/name")
                    );
                } else {
                    print!("{}", t.render(first && !a.no_headers));
                    t.rows.clear();
                }
                first = false;
            }
        }
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// delete

async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&a.ns);
    let mut targets: Vec<(Kind, String, String)> = Vec::new();
    if !a.files.is_empty() {
        if !a.args.is_empty() {
            return Err(fail("cannot name objects and pass -f at the same time"));
        }
        for doc in read_manifests(&a.files, a.recursive)? {
            let kind = Kind::from_type(
                doc.value["apiVersion"].as_str().unwrap_or(""),
                doc.value["kind"].as_str().unwrap_or(""),
            )
            .map_err(|e| {
                fail(format!(
                    "resource mapping not found for {}: {e}",
                    doc.source
                ))
            })?;
            let ns = namespace_for(kind, &doc.value, a.ns.namespace.as_deref())?;
            let name = doc
                .value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            targets.push((kind, ns, name));
        }
    } else if a.args.is_empty() {
        return Err(fail(
            "you must provide one or more resources by argument or filename",
        ));
    } else {
        match parse_targets(&a.args)? {
            Targets::Named(named) => {
                targets.extend(named.into_iter().map(|(k, n)| (k, namespace.clone(), n)))
            }
            Targets::Collections(kinds) => {
                if !a.all && a.selector.is_none() {
                    return Err(fail("resource(s) were provided, but no name was specified"));
                }
                for kind in kinds {
                    let mut path = collection_path(kind, Some(&namespace));
                    if let Some(sel) = &a.selector {
                        path.push_str(&format!("?labelSelector={}", encode(sel)));
                    }
                    let list = ctx.client.get(&path).await?;
                    for item in list["items"].as_array().into_iter().flatten() {
                        targets.push((
                            kind,
                            namespace.clone(),
                            table::str_at(item, "/metadata/name").to_string(),
                        ));
                    }
                }
                if targets.is_empty() {
                    eprintln!("No resources found");
                    return Ok(());
                }
            }
        }
    }
    let mut grace = if a.now { 1 } else { a.grace_period };
    if a.force {
        if grace < 0 {
            grace = 0;
        }
        eprintln!(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely."
        );
    }
    let propagation = match a.cascade.as_str() {
        "orphan" | "false" => "Orphan",
        "foreground" => "Foreground",
        _ => "Background",
    };
    let mut options =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation});
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    }
    let mut failed = None;
    let mut deleted = Vec::new();
    for (kind, ns, name) in targets {
        let path = object_path(kind, &ns, &name);
        match ctx
            .client
            .json(
                Method::DELETE,
                &path,
                Some("application/json"),
                Some(&options),
            )
            .await
        {
            Ok(answer) => {
                println!("{} \"{name}\" deleted", kind_label(kind));
                // The object being deleted, by uid: a controller may re-create one of the
                // same name (a StatefulSet pod) before this one is gone, as kubectl knows.
                let uid = answer
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                deleted.push((path, uid));
            }
            Err(e) if e.is_not_found() && a.ignore_not_found => {}
            Err(e) => {
                let e = CliError::from(e);
                eprintln!("{}", error_text(&e));
                failed = Some(silent_failure());
            }
        }
    }
    if a.wait {
        for (path, uid) in deleted {
            wait_gone(ctx, &path, uid.as_deref(), None).await?;
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Waits until GET on `path` answers NotFound, or (given the `uid` of the object deleted)
/// an object of another uid has taken the name.
async fn wait_gone(
    ctx: &Ctx,
    path: &str,
    uid: Option<&str>,
    timeout: Option<Duration>,
) -> Result<(), CliError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        match ctx.client.get(path).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(current) => {
                let current_uid = current.pointer("/metadata/uid").and_then(Value::as_str);
                if uid.is_some() && current_uid.is_some() && current_uid != uid {
                    return Ok(());
                }
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(fail(format!(
                "timed out waiting for the deletion of {path}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// logs

async fn logs(ctx: &Ctx, a: LogsArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&a.ns);
    let pods = resolve_pods_for(ctx, &a.target, &namespace).await?;
    let Some(pod) = pods.first() else {
        return Err(fail(format!("no pods found for {}", a.target)));
    };
    let pod_name = table::str_at(pod, "/metadata/name").to_string();
    let containers: Vec<String> = if a.all_containers {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![a.container.clone().unwrap_or_default()]
    };
    for container in containers {
        let mut query = vec![];
        if !container.is_empty() {
            query.push(format!("container={}", encode(&container)));
        }
        if a.follow {
            query.push("follow=true".into());
        }
        if a.previous {
            query.push("previous=true".into());
        }
        if a.tail >= 0 {
            query.push(format!("tailLines={}", a.tail));
        }
        if a.timestamps {
            query.push("timestamps=true".into());
        }
        let path = format!(
            "{}/log?{}",
            object_path(Kind::Pod, &namespace, &pod_name),
            query.join("&")
        );
        let mut chunks = std::pin::pin!(ctx.client.stream(&path).await?);
        let mut stdout = std::io::stdout();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            let _ = stdout.write_all(&chunk);
            let _ = stdout.flush();
        }
    }
    Ok(())
}

/// The pods a `logs`/`exec` target names: `POD`, `pod/POD`, `job/NAME`, `sts/NAME` (pods
/// sorted by name, so a StatefulSet's first pod comes first).
async fn resolve_pods_for(
    ctx: &Ctx,
    target: &str,
    namespace: &str,
) -> Result<Vec<Value>, CliError> {
    let (kind, name) = match target.split_once('/') {
        Some((k, n)) => (
            Kind::from_resource(k).map_err(target::TargetError::from)?,
            n.to_string(),
        ),
        None => (Kind::Pod, target.to_string()),
    };
    if kind == Kind::Pod {
        return Ok(vec![
            ctx.client
                .get(&object_path(Kind::Pod, namespace, &name))
                .await?,
        ]);
    }
    let owner = ctx.client.get(&object_path(kind, namespace, &name)).await?;
    let selector = owner
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .ok_or_else(|| fail(format!("{target} has no selector")))?;
    let list = ctx
        .client
        .get(&format!(
            "{}?labelSelector={}",
            collection_path(Kind::Pod, Some(namespace)),
            encode(&selector)
        ))
        .await?;
    let mut pods = list["items"].as_array().cloned().unwrap_or_default();
    pods.sort_by(|a, b| {
        natural_key(table::str_at(a, "/metadata/name"))
            .cmp(&natural_key(table::str_at(b, "/metadata/name")))
    });
    Ok(pods)
}

/// Sorts `web-2` before `web-10`.
fn natural_key(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((prefix, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            (prefix.to_string(), n.parse().unwrap_or(u64::MAX))
        }
        _ => (name.to_string(), 0),
    }
}

// ---------------------------------------------------------------------------------------------
// wait

/// What `wait --for` waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WaitFor {
    Condition { name: String, value: String },
    Delete,
    JsonPath { path: Vec<String>, value: String },
}

fn parse_wait_for(s: &str) -> Result<WaitFor, CliError> {
    if s == "delete" {
        return Ok(WaitFor::Delete);
    }
    if let Some(rest) = s.strip_prefix("condition=") {
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, v),
            None => (rest, "true"),
        };
        if name.is_empty() {
            return Err(fail("--for: condition name is empty"));
        }
        return Ok(WaitFor::Condition {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(rest) = s.strip_prefix("jsonpath=") {
        let (path, value) = rest
            .split_once("}=")
            .map(|(p, v)| (format!("{p}}}"), v.to_string()))
            .ok_or_else(|| fail("--for: jsonpath must be written as jsonpath={.path}=value"))?;
        let inner = path
            .strip_prefix("{.")
            .and_then(|p| p.strip_suffix('}'))
            .ok_or_else(|| fail("--for: jsonpath must be written as jsonpath={.path}=value"))?;
        return Ok(WaitFor::JsonPath {
            path: inner.split('.').map(str::to_string).collect(),
            value,
        });
    }
    Err(fail(format!(
        "unrecognized condition: {s:?} (use condition=NAME[=VALUE], delete or jsonpath={{.path}}=VALUE)"
    )))
}

fn condition_met(object: &Value, wait: &WaitFor) -> bool {
    match wait {
        WaitFor::Delete => false,
        WaitFor::Condition { name, value } => object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(name))
                        && c["status"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(value))
                })
            }),
        WaitFor::JsonPath { path, value } => {
            let mut cur = object;
            for segment in path {
                match cur.get(segment.as_str()) {
                    Some(next) => cur = next,
                    None => return false,
                }
            }
            match cur {
                Value::String(s) => s == value,
                other => other.to_string() == *value,
            }
        }
    }
}

/// Parses `30s`, `5m`, `1h30m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let bad = || {
        fail(format!(
            "invalid duration {s:?}: use forms like 30s, 5m, 1h"
        ))
    };
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(seconds);
        rest = tail;
    }
    Ok(total)
}

async fn wait(ctx: &Ctx, a: WaitArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&a.ns);
    let condition = parse_wait_for(&a.for_)?;
    let timeout = parse_duration(&a.timeout)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut targets: Vec<(Kind, String)> = match parse_targets(&a.args)? {
        Targets::Named(named) => named,
        Targets::Collections(kinds) => {
            let mut named = Vec::new();
            for kind in kinds {
                let mut path = collection_path(kind, Some(&namespace));
                if let Some(sel) = &a.selector {
                    path.push_str(&format!("?labelSelector={}", encode(sel)));
                }
                let list = ctx.client.get(&path).await?;
                for item in list["items"].as_array().into_iter().flatten() {
                    named.push((kind, table::str_at(item, "/metadata/name").to_string()));
                }
            }
            if named.is_empty() {
                return Err(fail("no matching resources found"));
            }
            named
        }
    };
    for (kind, name) in targets.drain(..) {
        let path = object_path(kind, &namespace, &name);
        let label = format!("{}/{name}", kind_label(kind));
        loop {
            match ctx.client.get(&path).await {
                Err(e) if e.is_not_found() && condition == WaitFor::Delete => {
                    println!("{label} condition met");
                    break;
                }
                Err(e) => return Err(e.into()),
                Ok(object) if condition_met(&object, &condition) => {
                    println!("{label} condition met");
                    break;
                }
                Ok(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(fail(format!(
                    "timed out waiting for the condition on {}",
                    kind.info().plural.to_string() + "/" + &name
                )));
            }
            // The API is local and cheap; a short poll keeps this simple and prompt.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale, rollout, set, create: StatefulSet and Job verbs

async fn scale(ctx: &Ctx, a: ScaleArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&a.ns);
    let (kind, name) = parse_one(&a.args)?;
    if a.replicas < 0 {
        return Err(fail(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let path = format!("{}/scale", object_path(kind, &namespace, &name));
    let body = json!({"spec": {"replicas": a.replicas}});
    ctx.client
        .json(
            Method::PATCH,
            &path,
            Some("application/merge-patch+json"),
            Some(&body),
        )
        .await?;
    println!("{}/{name} scaled", kind_label(kind));
    Ok(())
}

async fn version(ctx: &Ctx) -> Result<(), CliError> {
    println!("Client Version: v{}", env!("CARGO_PKG_VERSION"));
    let server = ctx.client.get("/version").await?;
    println!(
        "Server Version: {}",
        server["gitVersion"].as_str().unwrap_or("unknown")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubectl() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn wait_conditions_parse_and_match() {
        let ready = parse_wait_for("condition=Ready").unwrap();
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(condition_met(&pod, &ready));
        assert!(!condition_met(
            &pod,
            &parse_wait_for("condition=Ready=false").unwrap()
        ));
        assert!(condition_met(
            &pod,
            &parse_wait_for("jsonpath={.status.phase}=Running").unwrap()
        ));
        assert!(!condition_met(
            &pod,
            &parse_wait_for("jsonpath={.status.phase}=Failed").unwrap()
        ));
        assert_eq!(parse_wait_for("delete").unwrap(), WaitFor::Delete);
        assert!(parse_wait_for("ready").is_err());
    }

    #[test]
    fn manifest_namespaces_follow_kubectl_rules() {
        let v = json!({"metadata": {"name": "a", "namespace": "db"}});
        assert_eq!(namespace_for(Kind::Pod, &v, None).unwrap(), "db");
        assert_eq!(namespace_for(Kind::Pod, &v, Some("db")).unwrap(), "db");
        assert!(namespace_for(Kind::Pod, &v, Some("web")).is_err());
        let v = json!({"metadata": {"name": "a"}});
        assert_eq!(namespace_for(Kind::Pod, &v, None).unwrap(), "default");
        assert_eq!(namespace_for(Kind::Pod, &v, Some("x")).unwrap(), "x");
        assert_eq!(namespace_for(Kind::Namespace, &v, Some("x")).unwrap(), "");
    }

    #[test]
    fn pod_names_sort_by_ordinal() {
        let mut names = vec!["web-10", "web-2", "web-0"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(names, vec!["web-0", "web-2", "web-10"]);
    }
}

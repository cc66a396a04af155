//! Cluster commands (`token create`, `kubeconfig`, `members`) and the choice of a remote
//! agent (`--server`, `--kubeconfig`).

use hyper::Method;
use serde_json::{Value, json};

use super::args::{Cli, KubeconfigArgs, TokenArgs, TokenCommand};
use super::client::Client;
use super::{CliError, Ctx, fail};
use crate::cluster::kubeconfig;
use crate::cluster::token::parse_ttl;

/// The client of a remote agent when `--server` or `--kubeconfig` is given.
///
/// `cli::run` receives only the socket from `main`, so the global flags are read again from
/// the process arguments here (clap gives the same result as in `main`).
pub fn remote_client() -> Result<Option<Client>, CliError> {
    use clap::Parser as _;
    let Ok(cli) = Cli::try_parse() else {
        return Ok(None);
    };
    let (server, kubeconfig) = (cli.server, cli.kubeconfig);
    if server.is_none() && kubeconfig.is_none() {
        return Ok(None);
    }
    let Some(path) = kubeconfig else {
        return Err(fail(
            "--server needs --kubeconfig FILE for the CA and client certificate (print one with `berth kubeconfig` on a cluster host)",
        ));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        fail(format!(
            "cannot read the kubeconfig {}: {e}",
            path.display()
        ))
    })?;
    let entry = kubeconfig::parse(&text).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let server = server.unwrap_or(entry.server.clone());
    let authority = server
        .strip_prefix("https://")
        .ok_or_else(|| fail(format!("--server {server:?} must start with https://")))?
        .trim_end_matches('/')
        .to_string();
    let tls =
        crate::cluster::tls::client_config(&entry.ca_pem, Some(&entry.client)).map_err(|e| {
            fail(format!(
                "{}: {}",
                path.display(),
                crate::kubelet::images::error_chain(&e)
            ))
        })?;
    Ok(Some(Client::https(authority, tls)))
}

/// `berth token create --ttl 24h`.
pub async fn token(ctx: &Ctx, args: TokenArgs) -> Result<(), CliError> {
    let TokenCommand::Create { ttl } = args.command;
    let ttl = parse_ttl(&ttl).ok_or_else(|| {
        fail(format!(
            "--ttl {ttl:?} is not a duration like 24h, 90m, 3600s or 7d"
        ))
    })?;
    let answer = ctx
        .client
        .json(
            Method::POST,
            "/apis/cluster.berth.io/v1/tokens",
            None,
            Some(&json!({"ttlSeconds": ttl.as_secs()})),
        )
        .await?;
    let token = answer
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("the agent answered without a token"))?;
    println!("{token}");
    if let Some(expires) = answer.get("expires").and_then(Value::as_str) {
        eprintln!(
            "valid until {expires}; join a host with: berth agent --join <this-host>:7443 --token <token>"
        );
    }
    Ok(())
}

/// `berth kubeconfig [--for-server URL]`.
pub async fn kubeconfig(ctx: &Ctx, args: KubeconfigArgs) -> Result<(), CliError> {
    let path = match &args.server {
        Some(server) => format!(
            "/apis/cluster.berth.io/v1/kubeconfig?server={}",
            super::target::encode(server)
        ),
        None => "/apis/cluster.berth.io/v1/kubeconfig".to_string(),
    };
    let answer = ctx.client.get(&path).await?;
    let text = answer
        .get("kubeconfig")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("the agent answered without a kubeconfig"))?;
    print!("{text}");
    Ok(())
}

/// `berth members`.
pub async fn members(ctx: &Ctx) -> Result<(), CliError> {
    let answer = ctx.client.get("/apis/cluster.berth.io/v1/members").await?;
    let mut rows = vec![[
        "NAME".to_string(),
        "ID".to_string(),
        "ROLE".to_string(),
        "ADDRESS".to_string(),
    ]];
    for member in answer
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |name: &str| {
            member
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        rows.push([field("name"), field("id"), field("role"), field("address")]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}

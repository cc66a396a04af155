//! `berth image import|ls|rm`: this node's image store, through the node-level API
//! (`/apis/node.berth.io/v1/images`).

use chrono::Utc;
use hyper::Method;
use serde_json::{Value, json};

use super::args::{ImageArgs, ImageCommand, OutputFormat};
use super::target::encode;
use super::{CliError, Ctx, fail, print_document, table};


const IMAGES_PATH: &str = "/apis/node.berth.io/v1/images";

pub async fn image(ctx: &Ctx, a: ImageArgs) -> Result<(), CliError> {
    match a.command {
        ImageCommand::Import(i) => {
            let path = std::fs::canonicalize(&i.path)
                .map_err(|e| fail(format!("cannot read {}: {e}", i.path.display())))?;
            let body = json!({"path": path, "name": i.name});
            let answer = ctx.client.json(Method::POST, &format!("{IMAGES_PATH}/import"), None, Some(&body)).await?;
            for image in answer["items"].as_array().into_iter().flatten() {
                let names = image["references"].as_array().map(|r| {
                    r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")
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
                Some(OutputFormat::Json) | Some(OutputFormat::Yaml) => print_document(&list, l.output),
                _ => {
                    let mut t = table::Table {
                        headers: vec!["IMAGE".into(), "DIGEST".into(), "SIZE".into(), "CREATED".into()],
                        rows: vec![],
                    };
                    for image in list["items"].as_array().into_iter().flatten() {
                        let digest = image["digest"].as_str().unwrap_or("");
                        let short: String = digest.strip_prefix("sha256:").unwrap_or(digest).chars().take(12).collect();
                        let created = image["created"]
                            .as_str()
                            .and_then(table::parse_time)
                            .map(|t| format!("{} ago", table::human_duration(Utc::now() - t)))
                            .unwrap_or_default();
                        let size = image["size"].as_u64().map(table::human_bytes).unwrap_or_default();
                        for reference in image["references"].as_array().into_iter().flatten() {
                            t.rows.push(vec![
                                reference.as_str().unwrap_or("").to_string(),
                                short.clone(),
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
                    .json(Method::DELETE, &format!("{IMAGES_PATH}/{}", encode(&reference)), None, None)
                    .await?;
                println!("deleted {reference}");
            }
            Ok(())
        }
    }
}


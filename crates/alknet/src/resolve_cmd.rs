//! `alknet resolve NAME`: what a running node sees for a node id, a pkarr
//! key or a name (the `dns/resolve` operation): the records, and for a
//! node, where it is reached.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use crate::connect::{self, ConnectArgs};
use crate::output;

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A node id (`ed25519:<hex>`), a pkarr key (`<z32>`), a name under
    /// one (`_alknet.<z32>`), or a name in one of the node's zones.
    name: String,
    /// Print JSON instead.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn run(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let input = json!({ "name": args.name });
    let Some(output) = connect::call_reporting(&args.connect, "dns/resolve", input)? else {
        return Ok(ExitCode::FAILURE);
    };
    if args.json {
        output::line(&serde_json::to_string_pretty(&output)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(node) = output["node"].as_object() {
        let addresses: Vec<&str> = node["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let alpns: Vec<&str> = node["alpns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        output::line(&format!(
            "node {} at {} ({})",
            node["node_id"].as_str().unwrap_or("?"),
            addresses.join(" "),
            alpns.join(", ")
        ))?;
    }
    for record in output["records"].as_array().into_iter().flatten() {
        output::line(&format!(
            "{} {} IN {} {}",
            record["name"].as_str().unwrap_or("?"),
            record["ttl"],
            record["type"].as_str().unwrap_or("?"),
            record["value"].as_str().unwrap_or("?")
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `alknet dns set|delete|list`: change and read the zones of a running
//! node (the `dns/*` operations). Zones live in the node's memory and are
//! saved by it, so they are always changed through the node, never in its
//! data directory behind its back.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::connect::{self, ConnectArgs};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Replace the records of a name and type, e.g.
    /// `alknet dns set www.example.net A 192.0.2.1 192.0.2.2 --ttl 300`
    /// (values in zone-file text; quote TXT strings: '"v=spf1 -all"').
    Set {
        /// The owner name, inside one of the node's zones.
        name: String,
        /// The record type: A AAAA CNAME TXT MX SRV CAA HTTPS SVCB NS PTR SOA.
        #[arg(value_name = "TYPE")]
        kind: String,
        /// One value per record.
        #[arg(required = true)]
        values: Vec<String>,
        /// Seconds resolvers may cache the records [default: 3600].
        #[arg(long)]
        ttl: Option<u32>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete the records of a name: of one type, or all of them.
    Delete {
        /// The owner name.
        name: String,
        /// Only this type.
        #[arg(value_name = "TYPE")]
        kind: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the records of the node's zones (those the token may read), as
    /// zone-file lines.
    List {
        /// Only this zone.
        zone: Option<String>,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(command: DnsCommand) -> anyhow::Result<ExitCode> {
    let (operation, input, connect, json_out) = match command {
        DnsCommand::Set {
            name,
            kind,
            values,
            ttl,
            connect,
        } => {
            let mut input = json!({ "name": name, "type": kind, "values": values });
            if let Some(ttl) = ttl {
                input["ttl"] = json!(ttl);
            }
            ("dns/set", input, connect, false)
        }
        DnsCommand::Delete {
            name,
            kind,
            connect,
        } => {
            let mut input = json!({ "name": name });
            if let Some(kind) = kind {
                input["type"] = json!(kind);
            }
            ("dns/delete", input, connect, false)
        }
        DnsCommand::List {
            zone,
            json,
            connect,
        } => {
            let input = zone.map_or_else(|| json!({}), |zone| json!({ "zone": zone }));
            ("dns/list", input, connect, json)
        }
    };
    let Some(output) = connect::call_reporting(&connect, operation, input)? else {
        return Ok(ExitCode::FAILURE);
    };
    for line in lines(operation, &output, json_out)? {
        output::line(&line)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn record_line(record: &Value) -> String {
    format!(
        "{} {} IN {} {}",
        record["name"].as_str().unwrap_or("?"),
        record["ttl"],
        record["type"].as_str().unwrap_or("?"),
        record["value"].as_str().unwrap_or("?")
    )
}

fn lines(operation: &str, output: &Value, json_out: bool) -> anyhow::Result<Vec<String>> {
    if json_out {
        return Ok(vec![serde_json::to_string_pretty(output)?]);
    }
    let serial = |output: &Value| {
        format!(
            "zone {} serial {}",
            output["zone"].as_str().unwrap_or("?"),
            output["serial"]
        )
    };
    Ok(match operation {
        "dns/set" => {
            let mut lines: Vec<String> = output["records"]
                .as_array()
                .into_iter()
                .flatten()
                .map(record_line)
                .collect();
            lines.push(serial(output));
            lines
        }
        "dns/delete" => vec![format!(
            "deleted {} record(s); {}",
            output["deleted"],
            serial(output)
        )],
        _ => output["zones"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|zone| {
                let mut lines = vec![format!(
                    "; {} serial {}",
                    zone["zone"].as_str().unwrap_or("?"),
                    zone["serial"]
                )];
                lines.extend(
                    zone["records"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(record_line),
                );
                lines
            })
            .collect(),
    })
}

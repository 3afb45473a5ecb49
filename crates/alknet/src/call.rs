//! `alknet call`: call one operation on a node and print its output.

use std::process::ExitCode;

use alknet_call::{CallClient, CallError};
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::connect::{self, ConnectArgs};

/// What `alknet call` was asked.
pub struct CallArgs {
    pub connect: ConnectArgs,
    pub operation: String,
    pub input: Option<String>,
}

pub fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let input: Value = match &args.input {
        Some(text) => serde_json::from_str(text).context("the input is not valid JSON")?,
        None => json!({}),
    };
    connect::runtime()?.block_on(async move {
        let client = args.connect.connect().await?;
        Ok(match call(&client, &args.operation, input).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        })
    })
}

/// Learns the operation's kind from `services/schema`, then calls it.
async fn call(client: &CallClient, operation: &str, input: Value) -> Result<(), CallError> {
    let spec = client
        .call("services/schema", json!({ "name": operation }))
        .await?;
    if spec["op_type"] == "subscription" {
        let mut items = client.subscribe(operation, input).await?;
        while let Some(item) = items.next().await {
            println!("{}", item?);
        }
    } else {
        let output = client.call(operation, input).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&output).unwrap_or_else(|_| output.to_string())
        );
    }
    Ok(())
}

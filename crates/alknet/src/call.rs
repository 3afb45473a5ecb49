//! `alknet call`: call one operation on a node and print its output.

use std::net::SocketAddr;
use std::process::ExitCode;

use alknet_call::client::{ClientOptions, Transport};
use alknet_call::{CallClient, CallError};
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, NodeId};
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};

/// What `alknet call` was asked.
pub struct CallArgs {
    pub connect: SocketAddr,
    pub token: Option<String>,
    pub pin: Option<NodeId>,
    pub tcp: bool,
    pub operation: String,
    pub input: Option<String>,
}

pub fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let input: Value = match &args.input {
        Some(text) => serde_json::from_str(text).context("the input is not valid JSON")?,
        None => json!({}),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let options = ClientOptions {
            transport: if args.tcp {
                Transport::Tcp
            } else {
                Transport::Quic
            },
            verification: match args.pin {
                Some(id) => ServerVerification::Pin(Fingerprint::Ed25519(id.0)),
                None => ServerVerification::Insecure,
            },
            token: args.token,
            ..ClientOptions::default()
        };
        let client = CallClient::connect(args.connect, options)
            .await
            .with_context(|| format!("cannot open a call session with {}", args.connect))?;
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

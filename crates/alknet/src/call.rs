//! `alknet call`: call one operation on a node and print its output.

use std::io::Read;
use std::process::ExitCode;

use alknet_call::{CallClient, CallError};
use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::connect::{self, ConnectArgs};
use crate::output::{self, Reader};

/// What `alknet call` was asked.
pub struct CallArgs {
    pub connect: ConnectArgs,
    pub operation: String,
    pub input: Option<String>,
}

pub fn run(args: CallArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(args.input.as_deref())?;
    let result = connect::runtime()?.block_on(async {
        args.connect
            .with_session(&args.operation, async |client| {
                match call(client, &args.operation, input).await {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(Failed::Call(error)) => {
                        connect::report(&error, &args.connect);
                        Ok(ExitCode::FAILURE)
                    }
                    Err(Failed::Output(error)) => {
                        Err(anyhow::Error::new(error).context("cannot write standard output"))
                    }
                }
            })
            .await
    });
    // A node that refuses the connection at once is answered as one that
    // refuses it under the call: the call's error, status 1.
    match result {
        Err(error) => match error
            .downcast_ref::<alknet_call::client::ConnectError>()
            .and_then(alknet_call::client::ConnectError::as_call_error)
        {
            Some(refused) => {
                connect::report(&refused, &args.connect);
                Ok(ExitCode::FAILURE)
            }
            None => Err(error),
        },
        done => done,
    }
}

/// The call's input: JSON text, `-` for standard input, or `@PATH` for a
/// file (curl's conventions); `{}` when absent.
fn read_input(arg: Option<&str>) -> anyhow::Result<Value> {
    let (text, source) = match arg {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the input from standard input")?;
            (text, "the input on standard input".to_owned())
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the input file {path}"))?,
                format!("the input file {path}"),
            ),
            None => (arg.to_owned(), "the input".to_owned()),
        },
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not valid JSON"))
}

/// Why `alknet call` did not finish.
enum Failed {
    /// The call failed: its error is the command's output.
    Call(CallError),
    /// Standard output failed (not by its reader leaving).
    Output(std::io::Error),
}

impl From<CallError> for Failed {
    fn from(error: CallError) -> Self {
        Self::Call(error)
    }
}

impl From<std::io::Error> for Failed {
    fn from(error: std::io::Error) -> Self {
        Self::Output(error)
    }
}

/// Learns the operation's kind from `services/schema`, then calls it and
/// prints its output. A reader that stops early ends a subscription:
/// dropping it aborts the call.
async fn call(client: &CallClient, operation: &str, input: Value) -> Result<(), Failed> {
    let spec = client
        .call("services/schema", json!({ "name": operation }))
        .await?;
    if spec["op_type"] == "subscription" {
        let mut items = client.subscribe(operation, input).await?;
        while let Some(item) = items.next().await {
            if output::line(&item?.to_string())? == Reader::Gone {
                break;
            }
        }
    } else {
        let output = client.call(operation, input).await?;
        output::line(
            &serde_json::to_string_pretty(&output).unwrap_or_else(|_| output.to_string()),
        )?;
    }
    Ok(())
}

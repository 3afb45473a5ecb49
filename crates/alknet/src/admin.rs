//! `alknet admin tree`: the node's live actor tree (`admin/tree`,
//! docs/protocol.md §10.3), printed as an indented outline or as the raw JSON.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::connect::{self, ConnectArgs};
use crate::output;

/// What `alknet admin tree` was asked.
pub struct TreeArgs {
    pub connect: ConnectArgs,
    pub json: bool,
}

pub fn tree(args: TreeArgs) -> anyhow::Result<ExitCode> {
    connect::runtime()?.block_on(async move {
        args.connect
            .with_session("admin/tree", async |client| {
                let output = match client.call("admin/tree", json!({})).await {
                    Ok(output) => output,
                    Err(error) => {
                        connect::report(&error, &args.connect);
                        return Ok(ExitCode::FAILURE);
                    }
                };
                if args.json {
                    output::line(
                        &serde_json::to_string_pretty(&output)
                            .unwrap_or_else(|_| output.to_string()),
                    )?;
                } else {
                    output::write(&render(&output["root"], OffsetDateTime::now_utc()))?;
                }
                Ok(ExitCode::SUCCESS)
            })
            .await
    })
}

/// One line per actor, children indented under their parent:
///
/// ```text
/// node [0.0] supervisor running restarts=0 up=3m12s
///   proto/alknet/call [0.4] supervisor running restarts=0 up=3m12s
///     session [0.17] connection running restarts=0 up=4s alpn=alknet/call remote=127.0.0.1:53122 identity=admin requests=4
/// ```
fn render(root: &Value, now: OffsetDateTime) -> String {
    let mut out = String::new();
    render_into(&mut out, root, 0, now);
    out
}

fn render_into(out: &mut String, node: &Value, depth: usize, now: OffsetDateTime) {
    let text = |key: &str| node[key].as_str().unwrap_or("?").to_owned();
    let number = |key: &str| {
        node[key]
            .as_u64()
            .map_or_else(|| "?".to_owned(), |n| n.to_string())
    };
    let uptime = node["started_at"]
        .as_str()
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .map_or_else(|| "?".to_owned(), |started| humanise(now - started));
    let kind = text("kind");
    let _ = write!(
        out,
        "{:indent$}{} [{}] {} {} restarts={} up={}",
        "",
        text("name"),
        text("id"),
        kind,
        text("status"),
        number("restarts"),
        uptime,
        indent = depth * 2
    );
    if kind == "connection" || kind == "session" {
        let identity = node["identity"].as_str().unwrap_or("-");
        let _ = write!(
            out,
            " alpn={} remote={} identity={} requests={}",
            text("alpn"),
            text("remote"),
            identity,
            number("requests")
        );
        // Only where the peer made the node keep something: the usual
        // line stays short.
        if let Some(held) = node["held_bytes"].as_u64().filter(|held| *held > 0) {
            let _ = write!(out, " held={held}B");
        }
    }
    out.push('\n');
    for child in node["children"].as_array().into_iter().flatten() {
        render_into(out, child, depth + 1, now);
    }
}

/// A duration in its two largest units, to the second: `45s`, `3m12s`,
/// `2h5m`, `3d4h`. A negative one (clock skew) is `0s`.
fn humanise(elapsed: time::Duration) -> String {
    let secs = Duration::try_from(elapsed).map_or(0, |d| d.as_secs());
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humanised_in_two_units() {
        let h = |s: i64| humanise(time::Duration::seconds(s));
        assert_eq!(h(0), "0s");
        assert_eq!(h(45), "45s");
        assert_eq!(h(192), "3m12s");
        assert_eq!(h(2 * 3600 + 5 * 60 + 9), "2h5m");
        assert_eq!(h(3 * 86_400 + 4 * 3600), "3d4h");
        assert_eq!(h(-5), "0s");
        assert_eq!(humanise(time::Duration::milliseconds(1_999)), "1s");
    }

    #[test]
    fn the_tree_is_an_indented_line_per_actor() {
        let tree = json!({"id":"0.0","name":"node","kind":"supervisor","status":"running",
            "started_at":"2026-11-22T18:40:00.123Z","restarts":0,"children":[
            {"id":"0.4","name":"proto/alknet/call","kind":"supervisor","status":"running",
             "started_at":"2026-11-22T18:40:00.131Z","restarts":1,"children":[
                {"id":"0.17","name":"session","kind":"connection","status":"draining",
                 "started_at":"2026-11-22T18:43:00.000Z","restarts":0,"children":[],
                 "alpn":"alknet/call","remote":"127.0.0.1:53122","identity":null,
                 "bytes_in":1,"bytes_out":2,"requests":4}]}]});
        let now = OffsetDateTime::parse("2026-11-22T18:43:12.500Z", &Rfc3339).unwrap();
        assert_eq!(
            render(&tree, now),
            "node [0.0] supervisor running restarts=0 up=3m12s\n\
             \x20 proto/alknet/call [0.4] supervisor running restarts=1 up=3m12s\n\
             \x20   session [0.17] connection draining restarts=0 up=12s \
             alpn=alknet/call remote=127.0.0.1:53122 identity=- requests=4\n"
        );
    }
}

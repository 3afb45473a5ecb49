//! `alknet ssh-config`: learn the node's SSH host key through a pinned TLS
//! connection and print what stock OpenSSH needs to reach the node through
//! `alknet proxy`: a `Host` block and a `known_hosts` line.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{StreamArgs, pinned, runtime};
use crate::connect::{DEFAULT_PORT, has_port};

/// What `alknet ssh-config` was asked.
#[derive(Debug, Args)]
pub struct SshConfigArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// The name `ssh` is given (`ssh NAME`) and the host key is recorded
    /// under [default: the node's host name].
    #[arg(long)]
    pub alias: Option<String>,
    /// Print JSON (`host_block`, `known_hosts`, …) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What goes into the `Host` block.
struct Block<'a> {
    alias: &'a str,
    host: &'a str,
    port: u16,
    proxy_command: String,
}

pub fn run(args: SshConfigArgs) -> anyhow::Result<ExitCode> {
    let target = args.stream.target()?;
    let (host, port) = split_host_port(&target.connect);
    let alias = args.alias.clone().unwrap_or_else(|| host.to_owned());
    let runtime = runtime()?;
    let key = runtime.block_on(async {
        let node = super::open(&args.stream, super::SSH_ALPN).await?;
        let exchange = async {
            let (handle, key, keep) = super::ssh_session::start(node).await?;
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
            keep.close().await;
            anyhow::Ok(key)
        };
        tokio::time::timeout(args.stream.connect_timeout, exchange)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out: the node did not finish the SSH key exchange within {} \
                     (--connect-timeout)",
                    humantime::format_duration(args.stream.connect_timeout)
                )
            })?
    });
    runtime.shutdown_background();
    let key = key?;
    let pin = pinned(&target);
    if pin.is_none() {
        eprintln!(
            "warning: --insecure: the host key was not authenticated, and the ProxyCommand \
             accepts any node; pass --pin to pin the node"
        );
    }
    let mut proxy = vec!["alknet".to_owned(), "proxy".to_owned()];
    match pin {
        Some(id) => proxy.extend(["--pin".to_owned(), id.to_string()]),
        None => proxy.push("--insecure".to_owned()),
    }
    if args.stream.quic {
        proxy.push("--quic".to_owned());
    } else if target.tcp {
        proxy.push("--tcp".to_owned());
    }
    if let Some(key) = &target.key {
        let key = std::fs::canonicalize(key).unwrap_or_else(|_| key.clone());
        proxy.extend(["--key".to_owned(), quote(&key)]);
    }
    // `%h` of an IPv6 address needs brackets to be followed by a port.
    proxy.push(
        if host.contains(':') {
            "[%h]:%p"
        } else {
            "%h:%p"
        }
        .to_owned(),
    );
    let block = Block {
        alias: &alias,
        host,
        port,
        proxy_command: proxy.join(" "),
    };
    let host_key = alknet_ssh::keys::openssh_line(&key);
    let known_hosts = format!("{alias} {host_key}");
    if args.json {
        crate::output::line(&serde_json::to_string_pretty(&json!({
            "alias": alias,
            "host": host,
            "port": port,
            "proxy_command": block.proxy_command,
            "host_block": host_block(&block),
            "known_hosts": known_hosts,
            "host_key": host_key,
            "host_key_fingerprint": alknet_ssh::keys::fingerprint(&key).to_string(),
        }))?)?;
    } else {
        crate::output::write(&format!(
            "# Add to ~/.ssh/config:\n{}\n# Add to ~/.ssh/known_hosts:\n{known_hosts}\n",
            host_block(&block)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn host_block(block: &Block<'_>) -> String {
    format!(
        "Host {alias}\n    HostName {host}\n    Port {port}\n    HostKeyAlias {alias}\n    \
         ProxyCommand {proxy}\n",
        alias = block.alias,
        host = block.host,
        port = block.port,
        proxy = block.proxy_command,
    )
}

/// `HOST:PORT` (or `HOST`, the default port) as the host, without IPv6
/// brackets, and the port.
fn split_host_port(target: &str) -> (&str, u16) {
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) if has_port(target) => (host, port.parse().unwrap_or(DEFAULT_PORT)),
        _ => (target, DEFAULT_PORT),
    };
    (host.trim_start_matches('[').trim_end_matches(']'), port)
}

/// A path as one word of a ProxyCommand (ssh runs it through the shell).
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+=@,".contains(&b))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_are_split_as_ssh_wants_them() {
        assert_eq!(
            split_host_port("node.example.org:4433"),
            ("node.example.org", 4433)
        );
        assert_eq!(
            split_host_port("node.example.org"),
            ("node.example.org", DEFAULT_PORT)
        );
        assert_eq!(split_host_port("[::1]:9000"), ("::1", 9000));
        assert_eq!(split_host_port("::1"), ("::1", DEFAULT_PORT));
        assert_eq!(split_host_port("10.0.0.1:22"), ("10.0.0.1", 22));
    }

    #[test]
    fn the_host_block_is_ready_for_ssh_config() {
        let block = Block {
            alias: "box",
            host: "node.example.org",
            port: 4433,
            proxy_command: "alknet proxy --pin ed25519:ab %h:%p".to_owned(),
        };
        assert_eq!(
            host_block(&block),
            "Host box\n    HostName node.example.org\n    Port 4433\n    HostKeyAlias box\n    \
             ProxyCommand alknet proxy --pin ed25519:ab %h:%p\n"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(quote(Path::new("/home/a/key.pem")), "/home/a/key.pem");
        assert_eq!(quote(Path::new("/home/a b/it's")), r"'/home/a b/it'\''s'");
    }
}

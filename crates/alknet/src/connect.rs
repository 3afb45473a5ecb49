//! How the client commands (`call`, `admin …`) reach a node: the shared
//! command-line options, the client profile that fills in what they leave
//! out, and the session they open.
//!
//! Each setting comes from the first of: the flag, its environment variable,
//! the profile file (docs/client.md).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alknet_call::CallClient;
use alknet_call::ErrorCode;
use alknet_call::client::{ClientOptions, Transport};
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, NodeId, NodeKey};
use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;

/// The port a `--connect` without one dials: the node's default `listen`.
pub(crate) const DEFAULT_PORT: u16 = 4433;

/// How long a finished command waits for the node to acknowledge its close,
/// so that the session is gone from `admin/tree` when the command exits.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// When a name resolves to several addresses, the next is tried this long
/// after the previous one started without an answer (RFC 8305's delay):
/// a QUIC dial to an address nobody listens on is never refused, it only
/// goes unanswered.
const NEXT_ADDRESS_DELAY: Duration = Duration::from_millis(250);

/// Where the node is, how to trust it, and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The node: HOST:PORT or HOST (port 4433), e.g. `node.example.org:4433`,
    /// `localhost:4433`, `[::1]:4433`.
    #[arg(long, env = "ALKNET_CONNECT", value_name = "HOST:PORT")]
    pub connect: Option<String>,
    // The token and the trust settings read their environment variables in
    // `target`, not through clap: clap counts a variable as the flag given, so
    // `--insecure` with ALKNET_PIN set would be refused as a conflict instead
    // of the flag overriding the variable.
    /// A bearer token, sent with every request [env: ALKNET_TOKEN].
    #[arg(long)]
    pub token: Option<String>,
    /// Read the bearer token from this file (one trailing newline is
    /// ignored) [env: ALKNET_TOKEN_FILE].
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Accept only the node with this id (`ed25519:<hex>`) [env: ALKNET_PIN].
    #[arg(long)]
    pub pin: Option<NodeId>,
    /// Accept any node certificate (overrides ALKNET_PIN and the profile's pin).
    #[arg(long, conflicts_with = "pin")]
    pub insecure: bool,
    /// Dial TLS over TCP instead of QUIC.
    #[arg(long)]
    pub tcp: bool,
    /// Present this Ed25519 key (PKCS#8 PEM, e.g. another data directory's
    /// node.key) as a client certificate; the node maps its fingerprint,
    /// `ed25519:<hex public key>`, to a peer identity (`alknet peer add`).
    #[arg(long, env = "ALKNET_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// How long to wait for the node to answer the handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Give up on the whole command after this long, connecting included
    /// (e.g. `5s`, `2m`) [default: no limit beyond the connect timeout and a
    /// query's own deadline].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// The client profile [default: $XDG_CONFIG_HOME/alknet/client.toml, or
    /// ~/.config/alknet/client.toml; none when missing].
    #[arg(long, env = "ALKNET_PROFILE", value_name = "PATH")]
    pub profile: Option<PathBuf>,
}

/// The client profile: the settings a script would otherwise repeat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    connect: Option<String>,
    pin: Option<String>,
    /// Relative paths are relative to the profile's directory.
    token_file: Option<PathBuf>,
    key: Option<PathBuf>,
    tcp: Option<bool>,
}

impl Profile {
    /// The profile named by `--profile`/`ALKNET_PROFILE` (which must exist),
    /// else the default one when it exists; paths in it made absolute.
    fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None => match default_profile_path() {
                Some(path) if path.exists() => path,
                _ => return Ok(Self::default()),
            },
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the client profile {}", path.display()))?;
        let mut profile: Self =
            toml::from_str(&text).with_context(|| format!("client profile {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [&mut profile.token_file, &mut profile.key]
            .into_iter()
            .flatten()
        {
            *file = base.join(expand_home(file));
        }
        Ok(profile)
    }
}

/// An environment variable that is set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn default_profile_path() -> Option<PathBuf> {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config_home.join("alknet").join("client.toml"))
}

/// `~/x` as `$HOME/x`; anything else unchanged.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// The settings once flags, environment and profile are merged.
pub(crate) struct Target {
    pub(crate) connect: String,
    pub(crate) verification: ServerVerification,
    token: Option<String>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) tcp: bool,
}

impl ConnectArgs {
    pub(crate) fn target(&self) -> anyhow::Result<Target> {
        let profile = Profile::load(self.profile.as_deref())?;
        let connect = self.connect.clone().or(profile.connect).context(
            "no node to connect to: pass --connect HOST:PORT, set ALKNET_CONNECT, \
             or put `connect` in the client profile",
        )?;
        let parse_pin = |text: &str, origin: &str| {
            text.parse::<NodeId>()
                .map_err(|e| anyhow::anyhow!("{origin}: pin `{text}`: {e}"))
        };
        let pin = match (self.pin, env("ALKNET_PIN"), &profile.pin) {
            (Some(id), _, _) => Some(id),
            _ if self.insecure => None,
            (None, Some(text), _) => Some(parse_pin(&text, "ALKNET_PIN")?),
            (None, None, Some(text)) => Some(parse_pin(text, "client profile")?),
            (None, None, None) => None,
        };
        let verification = match (pin, self.insecure) {
            (Some(id), _) => ServerVerification::Pin(Fingerprint::Ed25519(id.0)),
            (None, true) => ServerVerification::Insecure,
            (None, false) => bail!(
                "the node's identity is not pinned: pass --pin ed25519:<hex> (or set \
                 ALKNET_PIN, or put `pin` in the client profile), or --insecure to accept any node"
            ),
        };
        let token = if let Some(token) = &self.token {
            Some(token.clone())
        } else if let Some(file) = &self.token_file {
            Some(read_token(file)?)
        } else if let Some(token) = env("ALKNET_TOKEN") {
            Some(token)
        } else if let Some(file) = env("ALKNET_TOKEN_FILE").or_else(|| {
            profile
                .token_file
                .as_ref()
                .map(|file| file.display().to_string())
        }) {
            Some(read_token(Path::new(&file))?)
        } else {
            None
        };
        Ok(Target {
            connect,
            verification,
            token,
            key: self.key.clone().or(profile.key),
            tcp: self.tcp || profile.tcp.unwrap_or(false),
        })
    }

    /// Whether requests carry a token (for the hint on `NOT_FOUND`).
    fn has_token(&self) -> bool {
        self.target().is_ok_and(|target| target.token.is_some())
    }

    /// Opens a call session with the node, runs `work` on it, and closes the
    /// session so the node forgets it before the command exits. `--timeout`
    /// bounds the whole; `operation` names what timed out.
    pub async fn with_session<T>(
        &self,
        operation: &str,
        work: impl AsyncFnOnce(&CallClient) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let target = self.target()?;
        let overall = async {
            let client = self.open(&target).await?;
            let result = work(&client).await;
            client.close(CLOSE_WAIT).await;
            result
        };
        match self.timeout {
            None => overall.await,
            Some(limit) => tokio::time::timeout(limit, overall)
                .await
                .unwrap_or_else(|_| {
                    bail!(
                        "timed out: no reply to {operation} from {} within {} (--timeout)",
                        target.connect,
                        humantime::format_duration(limit)
                    )
                }),
        }
    }

    async fn open(&self, target: &Target) -> anyhow::Result<CallClient> {
        let client_key = match &target.key {
            // The key error names the file.
            Some(path) => Some(NodeKey::load(path).context("cannot load the client key")?),
            None => None,
        };
        let transport = if target.tcp {
            Transport::Tcp
        } else {
            Transport::Quic
        };
        let addrs = resolve(&target.connect).await?;
        let dial = |addr: SocketAddr| {
            let options = ClientOptions {
                transport,
                verification: target.verification,
                token: target.token.clone(),
                client_key: client_key.clone(),
                ..ClientOptions::default()
            };
            async move { (addr, CallClient::connect(addr, options).await) }
        };
        let (limit, flag) = match self.timeout {
            Some(overall) if overall < self.connect_timeout => (overall, "--timeout"),
            _ => (self.connect_timeout, "--connect-timeout"),
        };
        let dialled = tokio::time::timeout(limit, first_to_answer(&addrs, dial));
        match dialled.await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(failures)) => Err(failures.context(format!(
                "cannot open a call session with {}",
                target.connect
            ))),
            Err(_) => bail!(
                "timed out connecting: {} ({}) did not answer the {} handshake within {} \
                 ({flag}){}",
                target.connect,
                join_addrs(&addrs),
                if target.tcp { "TLS" } else { "QUIC" },
                humantime::format_duration(limit),
                if target.tcp {
                    ""
                } else {
                    "; is the node up, and is UDP reachable? --tcp dials TLS over TCP"
                }
            ),
        }
    }
}

/// Dials the addresses in order, each starting [`NEXT_ADDRESS_DELAY`] after
/// the previous one (or at once when it failed); the first session opened
/// wins. When all fail, the error names each address's failure.
pub(crate) async fn first_to_answer<A, T, E, F>(
    addrs: &[A],
    dial: impl Fn(A) -> F,
) -> anyhow::Result<T>
where
    A: Copy + std::fmt::Display,
    F: Future<Output = (A, Result<T, E>)>,
    E: std::error::Error + Send + Sync + 'static,
{
    let mut pending = addrs.iter().copied();
    let mut running = FuturesUnordered::new();
    let mut failures = Vec::new();
    if let Some(addr) = pending.next() {
        running.push(dial(addr));
    }
    loop {
        let delay = tokio::time::sleep(NEXT_ADDRESS_DELAY);
        tokio::select! {
            outcome = running.next() => match outcome {
                Some((_, Ok(client))) => return Ok(client),
                Some((addr, Err(error))) => {
                    failures.push((addr, error));
                    match pending.next() {
                        Some(next) => running.push(dial(next)),
                        None if running.is_empty() => break,
                        None => {}
                    }
                }
                None => break,
            },
            () = delay, if pending.len() > 0 => {
                if let Some(next) = pending.next() {
                    running.push(dial(next));
                }
            }
        }
    }
    match <[_; 1]>::try_from(failures) {
        Ok([(_, error)]) => Err(anyhow::Error::new(error)),
        Err(failures) => bail!(
            "{}",
            failures
                .iter()
                .map(|(addr, error)| format!("{addr}: {error}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// `HOST:PORT` (or `HOST`, port 4433) as the addresses to try, in the
/// resolver's order.
pub(crate) async fn resolve(target: &str) -> anyhow::Result<Vec<SocketAddr>> {
    if let Ok(addr) = target.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let with_port = if has_port(target) {
        target.to_owned()
    } else {
        format!("{target}:{DEFAULT_PORT}")
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve `{target}`: {e}"))?
        .collect();
    if addrs.is_empty() {
        bail!("cannot resolve `{target}`: the name has no addresses");
    }
    Ok(addrs)
}

/// Whether `target` ends in `:PORT` (a bare IPv6 address has colons too,
/// but then it is bracketed when it has a port).
pub(crate) fn has_port(target: &str) -> bool {
    match target.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.starts_with('['))
        }
        None => false,
    }
}

pub(crate) fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// Prints a failed call's error on stderr; a `NOT_FOUND` without a token
/// gets a hint, as an operation the caller may not call looks unknown.
pub fn report(error: &alknet_call::CallError, args: &ConnectArgs) {
    eprintln!("{error}");
    if error.code == ErrorCode::NotFound && !args.has_token() {
        eprintln!(
            "hint: without a token, restricted operations are not found either; pass --token or \
             --token-file (or set ALKNET_TOKEN, or `token_file` in the client profile)"
        );
    }
}

/// A runtime for one client command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Calls one operation on the node; `None` when it failed (reported on
/// standard error, as every client command reports a failed call).
pub fn call_reporting(
    args: &ConnectArgs,
    operation: &str,
    input: serde_json::Value,
) -> anyhow::Result<Option<serde_json::Value>> {
    runtime()?.block_on(async move {
        args.with_session(operation, async |client| {
            match client.call(operation, input).await {
                Ok(output) => Ok(Some(output)),
                Err(error) => {
                    report(&error, args);
                    Ok(None)
                }
            }
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_recognised_without_mistaking_an_ipv6_address_for_one() {
        assert!(has_port("node.example.org:4433"));
        assert!(has_port("[::1]:4433"));
        assert!(!has_port("node.example.org"));
        assert!(!has_port("::1"));
        assert!(!has_port("host:"));
    }

    /// A dial that answers `Ok` after `ms`, fails at once on port 1, and
    /// never answers on port 2.
    async fn fake_dial(
        addr: SocketAddr,
        ms: u64,
    ) -> (SocketAddr, Result<SocketAddr, std::io::Error>) {
        match addr.port() {
            1 => (addr, Err(std::io::ErrorKind::ConnectionRefused.into())),
            2 => std::future::pending().await,
            _ => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (addr, Ok(addr))
            }
        }
    }

    #[tokio::test]
    async fn an_address_that_never_answers_does_not_hold_up_the_next() {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let started = tokio::time::Instant::now();
        let won = first_to_answer(&[addr(2), addr(3)], |a| fake_dial(a, 10)).await;
        assert_eq!(won.unwrap(), addr(3));
        let elapsed = started.elapsed();
        assert!(
            elapsed >= NEXT_ADDRESS_DELAY && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );

        // A refusal moves on at once; the first to answer wins.
        let started = tokio::time::Instant::now();
        let won = first_to_answer(&[addr(1), addr(4)], |a| fake_dial(a, 0)).await;
        assert_eq!(won.unwrap(), addr(4));
        assert!(started.elapsed() < NEXT_ADDRESS_DELAY);

        let failed = first_to_answer(&[addr(1), addr(1)], |a| fake_dial(a, 0)).await;
        let message = failed.unwrap_err().to_string();
        assert_eq!(
            message.matches("127.0.0.1:1: connection refused").count(),
            2,
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_name_without_a_port_dials_the_default_port() {
        let addrs = resolve("localhost").await.unwrap();
        assert!(addrs.iter().all(|a| a.port() == DEFAULT_PORT), "{addrs:?}");
        let err = resolve("no-such-host.invalid:1").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot resolve `no-such-host.invalid:1`"),
            "{err}"
        );
    }
}

//! The SSH client side of the CLI: `alknet proxy` (a stream with any ALPN on
//! standard input and output, for `ssh -o ProxyCommand`), `alknet ssh-config`
//! and the SOCKS5 server of `alknet proxy --socks5`.

pub mod proxy;
pub mod socks5;
pub mod ssh_config;
mod ssh_session;
mod stdio;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, BiStream, Connection, NodeId, NodeKey};
use anyhow::Context;
use clap::Args;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::connect::{ConnectArgs, Target, first_to_answer, join_addrs, resolve};

/// The node's SSH protocol (`alknet-ssh` serves it).
pub const SSH_ALPN: &str = "alknet/ssh";

/// A QUIC connection without a sign of life for this long is gone.
const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a finished command waits for the node to take its close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Where the node is and how to trust it, for commands that open one raw
/// stream. Each setting comes from the flag, its environment variable, or
/// the client profile, as for `alknet call`.
#[derive(Clone, Debug, Args)]
pub struct StreamArgs {
    /// The node: HOST:PORT or HOST (port 4433) [env: ALKNET_CONNECT].
    #[arg(value_name = "HOST:PORT")]
    pub target: Option<String>,
    /// Accept only the node with this id (`ed25519:<hex>`) [env: ALKNET_PIN].
    #[arg(long)]
    pub pin: Option<NodeId>,
    /// Accept any node certificate (overrides ALKNET_PIN and the profile's pin).
    #[arg(long, conflicts_with = "pin")]
    pub insecure: bool,
    /// Dial QUIC only [default: QUIC, then TLS over TCP if QUIC does not answer].
    #[arg(long, conflicts_with = "tcp")]
    pub quic: bool,
    /// Dial TLS over TCP only.
    #[arg(long)]
    pub tcp: bool,
    /// Present this Ed25519 key (PKCS#8 PEM) as a client certificate.
    #[arg(long, env = "ALKNET_KEY", value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// How long to wait for the node to answer the handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// The client profile [default: $XDG_CONFIG_HOME/alknet/client.toml].
    #[arg(long, env = "ALKNET_PROFILE", value_name = "PATH")]
    pub profile: Option<PathBuf>,
}

impl StreamArgs {
    /// The merged settings, through the same code as `alknet call`.
    fn target(&self) -> anyhow::Result<Target> {
        ConnectArgs {
            connect: self.target.clone().or_else(|| {
                std::env::var("ALKNET_CONNECT")
                    .ok()
                    .filter(|v| !v.is_empty())
            }),
            token: None,
            token_file: None,
            pin: self.pin,
            insecure: self.insecure,
            tcp: self.tcp,
            key: self.key.clone(),
            connect_timeout: self.connect_timeout,
            timeout: None,
            profile: self.profile.clone(),
        }
        .target()
        .map_err(|e| {
            // `call`'s message names `--connect`; these commands take it as an argument.
            if e.to_string().starts_with("no node to connect to") {
                anyhow::anyhow!(
                    "no node to connect to: pass HOST:PORT, set ALKNET_CONNECT, or put `connect` \
                     in the client profile"
                )
            } else {
                e
            }
        })
    }

    /// The transports to try, in order.
    fn transports(&self, target: &Target) -> &'static [Transport] {
        if self.quic {
            &[Transport::Quic]
        } else if target.tcp {
            &[Transport::Tcp]
        } else {
            &[Transport::Quic, Transport::Tcp]
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Quic,
    Tcp,
}

/// One dial: an address over one transport.
#[derive(Clone, Copy)]
struct Candidate(SocketAddr, Transport);

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Quic => "QUIC",
            Transport::Tcp => "TLS",
        })
    }
}

/// A connection to the node and the stream opened on it.
pub struct NodeStream {
    pub stream: BiStream,
    connection: Connection,
    endpoint: Option<quinn::Endpoint>,
}

impl NodeStream {
    /// Closes the connection and lets the node see it before the process
    /// exits (over QUIC a vanished client is otherwise only noticed at the
    /// idle timeout).
    pub async fn close(self) {
        self.connection.close(0, "done");
        if let Some(endpoint) = self.endpoint {
            let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
        }
    }
}

/// What a dial needs besides the address.
struct DialSettings {
    verification: ServerVerification,
    client_key: Option<NodeKey>,
    alpn: Alpn,
}

/// How long QUIC dials alone before TLS over TCP is tried beside it (at
/// once when QUIC gets no answer sooner).
const TCP_FALLBACK_DELAY: Duration = Duration::from_millis(500);

/// Dials the node named by `args` offering `alpn` and opens one
/// bidirectional stream: QUIC first, TLS over TCP beside it when QUIC has
/// not answered within [`TCP_FALLBACK_DELAY`] (unless `--quic` or `--tcp`
/// chose one), each address in the resolver's order; the first connection
/// up wins. A node that answered and refused (another id than the pin, no
/// such protocol) is final: TLS would hear the same.
pub async fn open(args: &StreamArgs, alpn: &str) -> anyhow::Result<NodeStream> {
    let target = args.target()?;
    let settings = DialSettings {
        verification: target.verification,
        client_key: match &target.key {
            Some(path) => Some(NodeKey::load(path).context("cannot load the client key")?),
            None => None,
        },
        alpn: Alpn::new(alpn),
    };
    let transports = args.transports(&target);
    let addrs = resolve(&target.connect).await?;
    let phase = |transport: Transport| {
        let candidates: Vec<Candidate> = addrs.iter().map(|a| Candidate(*a, transport)).collect();
        let settings = &settings;
        async move {
            first_to_answer(&candidates, |candidate| async move {
                (candidate, dial_one(candidate, settings).await)
            })
            .await
            .map_err(|e| {
                let answered = e.chain().any(|cause| {
                    cause
                        .downcast_ref::<DialError>()
                        .is_some_and(|dial| dial.answered)
                });
                (e.context(format!("{transport}")), answered)
            })
        }
    };
    let race = async {
        match transports {
            [only] => phase(*only).await.map_err(|(e, _)| e),
            _ => {
                let quic = phase(Transport::Quic);
                let quic_gave_up = tokio::sync::Notify::new();
                let tcp = async {
                    tokio::select! {
                        () = tokio::time::sleep(TCP_FALLBACK_DELAY) => {}
                        () = quic_gave_up.notified() => {}
                    }
                    phase(Transport::Tcp).await
                };
                tokio::pin!(quic, tcp);
                let (mut quic_failed, mut tcp_failed) = (None, None);
                // Kept short of the overall timeout, so that a TLS failure
                // is named rather than lost in "timed out".
                let deadline = tokio::time::sleep(args.connect_timeout.mul_f32(0.99));
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline, if tcp_failed.is_some() => anyhow::bail!(
                            "QUIC: no answer within {} (--connect-timeout); {}",
                            humantime::format_duration(args.connect_timeout),
                            tcp_failed.as_ref().map(crate::error_text).unwrap_or_default()
                        ),
                        outcome = &mut quic, if quic_failed.is_none() => match outcome {
                            Ok(stream) => return Ok(stream),
                            Err((error, true)) => return Err(error),
                            Err((error, false)) => {
                                quic_failed = Some(error);
                                quic_gave_up.notify_one();
                            }
                        },
                        outcome = &mut tcp, if tcp_failed.is_none() => match outcome {
                            Ok(stream) => return Ok(stream),
                            Err((error, _)) => tcp_failed = Some(error),
                        },
                    }
                    if let (Some(quic), Some(tcp)) = (&quic_failed, &tcp_failed) {
                        anyhow::bail!("{}; {}", crate::error_text(quic), crate::error_text(tcp));
                    }
                }
            }
        }
    };
    match tokio::time::timeout(args.connect_timeout, race).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(failures)) => Err(failures.context(format!(
            "cannot open an {alpn} stream to {}",
            target.connect
        ))),
        Err(_) => anyhow::bail!(
            "timed out connecting: {} ({}) did not answer the {} handshake within {} \
             (--connect-timeout){}",
            target.connect,
            join_addrs(&addrs),
            match transports {
                [Transport::Quic] => "QUIC",
                [Transport::Tcp] => "TLS",
                _ => "QUIC or TLS",
            },
            humantime::format_duration(args.connect_timeout),
            if transports == [Transport::Quic] {
                "; is UDP reachable? --tcp dials TLS over TCP"
            } else {
                ""
            }
        ),
    }
}

/// Why one dial failed, and whether the node answered (and so another
/// transport would not change its mind).
#[derive(Debug)]
struct DialError {
    message: String,
    answered: bool,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DialError {}

impl DialError {
    fn local(error: impl fmt::Display) -> Self {
        Self {
            message: error.to_string(),
            answered: false,
        }
    }

    fn from_quic(error: quinn::ConnectionError, alpn: &Alpn) -> Self {
        use quinn::ConnectionError as E;
        let no_alpn = quinn::TransportErrorCode::crypto(120);
        match error {
            E::ConnectionClosed(close) if close.error_code == no_alpn => Self::no_protocol(alpn),
            // Our verifier refused the node's certificate (the pin), or the
            // node closed the handshake: it answered.
            E::TransportError(_) | E::ConnectionClosed(_) | E::ApplicationClosed(_) => Self {
                message: error.to_string(),
                answered: true,
            },
            other => Self::local(other),
        }
    }

    fn from_tls(error: std::io::Error, alpn: &Alpn) -> Self {
        use tokio_rustls::rustls::{AlertDescription, Error};
        match error.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            Some(Error::AlertReceived(AlertDescription::NoApplicationProtocol)) => {
                Self::no_protocol(alpn)
            }
            Some(_) => Self {
                message: error.to_string(),
                answered: true,
            },
            None => Self::local(error),
        }
    }

    fn no_protocol(alpn: &Alpn) -> Self {
        Self {
            message: format!(
                "the node does not serve {} (not enabled in its configuration?)",
                alpn.as_str()
            ),
            answered: true,
        }
    }
}

async fn dial_one(
    Candidate(addr, transport): Candidate,
    settings: &DialSettings,
) -> Result<NodeStream, DialError> {
    let alpns = std::slice::from_ref(&settings.alpn);
    let key = settings.client_key.as_ref();
    match transport {
        Transport::Quic => {
            let mut config = tls::quic_client_config(settings.verification, key, alpns)
                .map_err(DialError::local)?;
            // An interactive session sits idle for hours: keep-alives keep
            // the connection (and NAT bindings) up; a vanished node is
            // noticed after QUIC_IDLE_TIMEOUT.
            let mut transport = alknet_core::udp::transport_config();
            transport
                .max_idle_timeout(Some(
                    quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT).expect("a small timeout"),
                ))
                .keep_alive_interval(Some(QUIC_IDLE_TIMEOUT / 3));
            config.transport_config(Arc::new(transport));
            let endpoint = alknet_core::udp::client_endpoint(addr).map_err(DialError::local)?;
            let quic = endpoint
                .connect_with(config, addr, "localhost")
                .map_err(DialError::local)?
                .await
                .map_err(|e| DialError::from_quic(e, &settings.alpn))?;
            let connection = Connection::from_quic(quic, settings.alpn.clone(), None);
            let stream = connection.open_bi().await.map_err(|e| DialError {
                message: format!("cannot open a stream: {e}"),
                answered: true,
            })?;
            Ok(NodeStream {
                stream,
                connection,
                endpoint: Some(endpoint),
            })
        }
        Transport::Tcp => {
            let config = tls::client_config(settings.verification, key, alpns, false)
                .map_err(DialError::local)?;
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(DialError::local)?;
            // Interactive SSH: keystrokes go out at once.
            tcp.set_nodelay(true).map_err(DialError::local)?;
            // Trust comes from the pin, not the name: any valid name will do.
            let name = ServerName::try_from("localhost").expect("a valid DNS name");
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| DialError::from_tls(e, &settings.alpn))?;
            let connection = Connection::from_stream(tls, settings.alpn.clone(), addr, None);
            let stream = connection.open_bi().await.map_err(|e| DialError {
                message: format!("cannot open a stream: {e}"),
                answered: true,
            })?;
            Ok(NodeStream {
                stream,
                connection,
                endpoint: None,
            })
        }
    }
}

/// The node id the settings pin, for commands that print a ProxyCommand.
fn pinned(target: &Target) -> Option<NodeId> {
    match target.verification {
        ServerVerification::Pin(alknet_core::Fingerprint::Ed25519(bytes)) => Some(NodeId(bytes)),
        _ => None,
    }
}

/// A runtime for one command; the caller shuts it down in the background,
/// as a read of standard input may still be blocked in its thread pool.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

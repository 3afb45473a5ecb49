//! Port forwarding: `direct-tcpip` channels (`ssh -L`, `ssh -D`) to targets
//! the node connects to, and remote forwards (`ssh -R`) whose listeners open
//! `forwarded-tcpip` channels back to the client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use alknet_core::ConnectionInfo;
use alknet_core::log_limit::LogLimit;
use russh::server::{ChannelOpenHandle, Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::task::AbortOnDropHandle;

use crate::Shared;
use crate::access::Access;
use crate::channel::{ChannelKind, Channels, Context, Start};

/// How long the node tries to reach a forward's target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the TCP connection a `direct-tcpip` channel asks for, if its scopes
/// allow it, and carries it.
pub(crate) async fn direct(
    channel: Channel<Msg>,
    reply: Option<ChannelOpenHandle>,
    host: &str,
    port: u32,
    cx: Context,
) {
    if let Err(refusal) = cx.access.forward(host, port) {
        tracing::info!(
            identity = cx.info.identity().map(|i| i.id).unwrap_or_default(),
            "SSH forward refused: {refusal}"
        );
        return refuse(reply, ChannelOpenFailure::AdministrativelyProhibited).await;
    }
    let Ok(port16) = u16::try_from(port) else {
        return refuse(reply, ChannelOpenFailure::ConnectFailed).await;
    };
    // Names are resolved here, on the node (`ssh -D`, `curl --socks5-hostname`).
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port16)));
    let stream = tokio::select! {
        connected = connecting => match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(host, port, "SSH forward target unreachable: {error}");
                return refuse(reply, ChannelOpenFailure::ConnectFailed).await;
            }
            Err(_) => {
                tracing::debug!(host, port, "SSH forward target timed out");
                return refuse(reply, ChannelOpenFailure::ConnectFailed).await;
            }
        },
        () = cx.killed.cancelled() => return refuse(reply, ChannelOpenFailure::ConnectFailed).await,
    };
    let _ = stream.set_nodelay(true);
    if let Some(reply) = reply {
        reply.accept().await;
    }
    pump(channel, stream, &cx).await;
}

async fn refuse(reply: Option<ChannelOpenHandle>, reason: ChannelOpenFailure) {
    if let Some(reply) = reply {
        reply.reject(reason).await;
    }
}

/// Carries bytes both ways between a channel and a TCP connection until the
/// client closes the channel (or `admin/kill`). Each direction waits for
/// its reader: the SSH window towards the client, TCP towards the target,
/// so a side that stops reading holds at most a window of data.
pub(crate) async fn pump(channel: Channel<Msg>, stream: TcpStream, cx: &Context) {
    let id = channel.id();
    let (mut read, write) = channel.split();
    let (mut from_target, mut to_target) = stream.into_split();
    let info = cx.info.clone();
    let towards_client = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut writer = write.make_writer();
        copy_counted(&mut from_target, &mut writer, &info).await;
        let _ = writer.shutdown().await;
    }));
    let towards_target = async {
        while let Some(message) = read.wait().await {
            match message {
                ChannelMsg::Data { data } => {
                    cx.info.stats().record_in(data.len());
                    if to_target.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ChannelMsg::Eof => {
                    let _ = to_target.shutdown().await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = towards_target => {}
        () = cx.killed.cancelled() => {}
    }
    drop(towards_client);
    crate::channel::finish_draining(&mut read, async {
        let _ = cx.handle.close(id).await;
    })
    .await;
}

async fn copy_counted(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    info: &ConnectionInfo,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
        info.stats().record_out(read);
    }
}

/// An `ssh -R` request.
pub(crate) struct ListenRequest {
    /// As the client wrote it: `""`, `localhost`, `*`, an address.
    pub(crate) address: String,
    pub(crate) port: u32,
    pub(crate) gateway_ports: bool,
}

/// Why a remote forward could not listen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error("the connection holds ssh.max_remote_forwards already")]
    TooMany,
    #[error("not a port number")]
    BadPort,
    #[error(
        "{0:?} is not an address this node binds (loopback, or with ssh.gateway_ports any address)"
    )]
    BadAddress(String),
    #[error("cannot listen: {0}")]
    Bind(std::io::Error),
}

/// A connection's remote forwards: listeners that stop with it.
pub(crate) struct RemoteForwards {
    max: usize,
    listeners: Mutex<HashMap<(String, u32), AbortOnDropHandle<()>>>,
}

static FORWARD_ACCEPT_FAILED: LogLimit = LogLimit::warn("SSH remote forward: accept failed");

impl RemoteForwards {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// Binds the listener `request` asks for; returns the bound port.
    pub(crate) async fn listen(
        &self,
        request: ListenRequest,
        handle: Handle,
        channels: Channels,
        access: Arc<Access>,
        shared: Arc<Shared>,
    ) -> Result<u32, ListenError> {
        if self.count() >= self.max {
            return Err(ListenError::TooMany);
        }
        let port = u16::try_from(request.port).map_err(|_| ListenError::BadPort)?;
        let ip = bind_address(&request.address, request.gateway_ports)
            .ok_or_else(|| ListenError::BadAddress(request.address.clone()))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .map_err(ListenError::Bind)?;
        let bound = listener.local_addr().map_err(ListenError::Bind)?.port();
        let address = request.address.clone();
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        if FORWARD_ACCEPT_FAILED.admit() {
                            tracing::warn!("SSH remote forward: accept failed: {error}");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let opened = handle
                    .channel_open_forwarded_tcpip(
                        address.clone(),
                        u32::from(bound),
                        peer.ip().to_string(),
                        u32::from(peer.port()),
                    )
                    .await;
                let Ok(channel) = opened else {
                    // The client refused it, or the connection is gone.
                    continue;
                };
                channels.spawn(Start {
                    kind: ChannelKind::ForwardedTcpip {
                        listening: format!("{address}:{bound}"),
                        stream,
                    },
                    channel,
                    reply: None,
                    access: access.clone(),
                    handle: handle.clone(),
                    shared: shared.clone(),
                });
            }
        });
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (request.address, u32::from(bound)),
                AbortOnDropHandle::new(accepting),
            );
        Ok(u32::from(bound))
    }

    /// Stops the listener for `address:port`; whether there was one.
    pub(crate) fn cancel(&self, address: &str, port: u32) -> bool {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(address.to_owned(), port))
            .is_some()
    }

    fn count(&self) -> usize {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Where `ssh -R address:port:…` listens. OpenSSH's rules: empty, `*` and
/// `0.0.0.0` mean every address, `localhost` loopback; without
/// gateway ports, only loopback is ever bound.
fn bind_address(address: &str, gateway_ports: bool) -> Option<IpAddr> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    if !gateway_ports {
        return match address {
            "" | "localhost" | "127.0.0.1" | "*" | "0.0.0.0" => Some(loopback),
            "::1" => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            other => other.parse::<IpAddr>().ok().filter(IpAddr::is_loopback),
        };
    }
    match address {
        "" | "*" | "0.0.0.0" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "::" => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        "localhost" => Some(loopback),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_gateway_ports_only_loopback_is_bound() {
        let loopback = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(bind_address("", false), loopback);
        assert_eq!(bind_address("*", false), loopback);
        assert_eq!(bind_address("0.0.0.0", false), loopback);
        assert_eq!(bind_address("localhost", false), loopback);
        assert_eq!(bind_address("192.0.2.7", false), None);
        assert_eq!(bind_address("example.org", false), None);
    }

    #[test]
    fn with_gateway_ports_the_asked_address_is_bound() {
        assert_eq!(
            bind_address("", true),
            Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        );
        assert_eq!(bind_address("192.0.2.7", true), "192.0.2.7".parse().ok());
        assert_eq!(bind_address("example.org", true), None);
    }
}

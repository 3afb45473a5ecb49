//! `alknet proxy --socks5`: a local SOCKS5 server (RFC 1928: no
//! authentication, CONNECT) whose connections ride `direct-tcpip` channels
//! of one SSH session with the node. Names are not resolved here: the node
//! resolves them, as `ssh -D` does.
//!
//! The SOCKS protocol is fast-socks5's; what it reads is bounded by the
//! protocol (255 methods, a 255-byte name) and by [`HANDSHAKE_TIMEOUT`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fast_socks5::server::Socks5ServerProtocol;
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use russh::ChannelOpenFailure;
use russh::client::{Handle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use super::proxy::ProxyArgs;
use super::ssh_session::{self, HostKeySeen, Keep};
use super::{SSH_ALPN, StreamArgs};

/// A client has this long to send its greeting and request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Setting up the SSH session (connecting included) takes at most this long.
const SESSION_SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the SOCKS5 server until it fails to listen or the first SSH session
/// cannot be set up.
pub async fn serve(args: &ProxyArgs, listen: SocketAddr) -> anyhow::Result<()> {
    let identity = load_identity(args.identity.as_deref())?;
    let user = args
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "alknet".to_owned());
    let sessions = Arc::new(Sessions {
        dial: Dial::Node(args.stream.clone()),
        identity: Arc::new(identity),
        user,
        current: Mutex::new(None),
    });
    // Set up the session at once: a refused key or an unreachable node is
    // said now, not at the first browser request.
    sessions.session().await?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--socks5)"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    eprintln!("SOCKS5 proxy listening on {bound}");
    accept(listener, sessions, args.max_connections).await
}

/// Serves SOCKS connections from `listener`, at most `max_connections` at
/// once; more are closed unanswered.
async fn accept(
    listener: TcpListener,
    sessions: Arc<Sessions>,
    max_connections: usize,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let (socket, origin) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: wait for some to free up.
                tracing::warn!(%error, "cannot accept a SOCKS connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%origin, "SOCKS connection refused: --max-connections reached");
            continue;
        };
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_one(socket, origin, &sessions).await;
        });
    }
}

/// The OpenSSH private key to authenticate with, as `ssh -i` reads it.
fn load_identity(path: Option<&Path>) -> anyhow::Result<PrivateKey> {
    let path = match path {
        Some(path) => path.to_owned(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".ssh").join("id_ed25519"))
            .context("no --identity given and no $HOME to find ~/.ssh/id_ed25519 in")?,
    };
    russh::keys::load_secret_key(&path, None).map_err(|error| match error {
        russh::keys::Error::KeyIsEncrypted => anyhow::anyhow!(
            "the SSH key {} is encrypted (has a passphrase); --identity takes an unencrypted key",
            path.display()
        ),
        russh::keys::Error::IO(e) => {
            anyhow::anyhow!(
                "cannot read the SSH key {} (--identity): {e}",
                path.display()
            )
        }
        other => anyhow::anyhow!(
            "{} is not an OpenSSH private key (--identity): {other}",
            path.display()
        ),
    })
}

/// The SSH session the SOCKS connections share, set up again when it drops.
struct Sessions {
    dial: Dial,
    identity: Arc<PrivateKey>,
    user: String,
    current: Mutex<Option<Arc<Live>>>,
}

/// How a session reaches the node.
enum Dial {
    /// An `alknet/ssh` stream.
    Node(StreamArgs),
    /// A test's SSH server.
    #[cfg(test)]
    Test(Box<dyn Fn() -> tokio::io::DuplexStream + Send + Sync>),
}

struct Live {
    handle: Handle<HostKeySeen>,
    _keep: Option<Keep>,
}

/// Why a channel could not be opened, as a SOCKS reply.
#[derive(Debug)]
struct Refused(ReplyError, String);

impl Sessions {
    /// The live session, or a new one when there is none or it dropped.
    async fn session(&self) -> anyhow::Result<Arc<Live>> {
        let mut current = self.current.lock().await;
        if let Some(live) = &*current
            && !live.handle.is_closed()
        {
            return Ok(live.clone());
        }
        *current = None;
        // A node that takes the stream but never speaks SSH must not hold
        // every SOCKS client waiting on this lock.
        let live = tokio::time::timeout(SESSION_SETUP_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the node did not complete the SSH key exchange and authentication within {}",
                    humantime::format_duration(SESSION_SETUP_TIMEOUT)
                )
            })??;
        let live = Arc::new(live);
        *current = Some(live.clone());
        Ok(live)
    }

    async fn connect(&self) -> anyhow::Result<Live> {
        let (mut handle, keep) = match &self.dial {
            Dial::Node(args) => {
                let node = super::open(args, SSH_ALPN).await?;
                let (handle, _, keep) = ssh_session::start(node).await?;
                (handle, Some(keep))
            }
            #[cfg(test)]
            Dial::Test(connect) => (ssh_session::start_on(connect()).await?.0, None),
        };
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let key = PrivateKeyWithHashAlg::new(self.identity.clone(), hash);
        let auth = handle
            .authenticate_publickey(&self.user, key)
            .await
            .context("SSH authentication failed")?;
        if !auth.success() {
            anyhow::bail!(
                "the node refused the SSH key {} (--identity): add it with `alknet peer add \
                 <key.pub> --id … --scopes ssh:forward:…` on the node",
                alknet_ssh::keys::fingerprint(self.identity.public_key())
            );
        }
        Ok(Live {
            handle,
            _keep: keep,
        })
    }

    /// A `direct-tcpip` channel to `host:port`; a session found dead is set
    /// up again once.
    async fn open(
        &self,
        host: &str,
        port: u16,
        origin: SocketAddr,
    ) -> Result<russh::Channel<Msg>, Refused> {
        for attempt in 0..2 {
            let live = self.session().await.map_err(|e| {
                Refused(
                    ReplyError::NetworkUnreachable,
                    format!("no SSH session with the node: {e:#}"),
                )
            })?;
            let opened = live
                .handle
                .channel_open_direct_tcpip(
                    host,
                    u32::from(port),
                    origin.ip().to_string(),
                    u32::from(origin.port()),
                )
                .await;
            match opened {
                Ok(channel) => return Ok(channel),
                Err(russh::Error::ChannelOpenFailure(failure)) => {
                    return Err(Refused(reply_for(&failure), format!("{failure:?}")));
                }
                Err(error) if attempt == 0 && live.handle.is_closed() => {
                    tracing::info!(%error, "the SSH session dropped; setting it up again");
                }
                Err(error) => {
                    return Err(Refused(ReplyError::GeneralFailure, error.to_string()));
                }
            }
        }
        Err(Refused(
            ReplyError::GeneralFailure,
            "the SSH session keeps dropping".to_owned(),
        ))
    }
}

/// The SOCKS reply for a channel the node would not open.
fn reply_for(failure: &ChannelOpenFailure) -> ReplyError {
    match failure {
        // The node's `ssh:forward:<host>:<port>` scopes said no.
        ChannelOpenFailure::AdministrativelyProhibited | ChannelOpenFailure::UnknownChannelType => {
            ReplyError::ConnectionNotAllowed
        }
        ChannelOpenFailure::ConnectFailed => ReplyError::ConnectionRefused,
        ChannelOpenFailure::ResourceShortage | ChannelOpenFailure::Other { .. } => {
            ReplyError::GeneralFailure
        }
    }
}

/// One SOCKS connection: handshake, channel, then bytes both ways.
async fn serve_one(socket: TcpStream, origin: SocketAddr, sessions: &Sessions) {
    let _ = socket.set_nodelay(true);
    let request = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(socket)).await {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => {
            tracing::debug!(%origin, %error, "SOCKS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%origin, "SOCKS handshake timed out");
            return;
        }
    };
    let Request::Connect(proto, host, port) = request else {
        return;
    };
    let channel = match sessions.open(&host, port, origin).await {
        Ok(channel) => channel,
        Err(Refused(reply, why)) => {
            tracing::info!(%origin, target = %format!("{host}:{port}"), %why, "SOCKS CONNECT refused");
            let _ = proto.reply_error(&reply).await;
            return;
        }
    };
    let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let Ok(mut client) = proto.reply_success(unspecified).await else {
        return;
    };
    let mut remote = channel.into_stream();
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut remote).await {
        tracing::debug!(%origin, %error, "SOCKS connection ended");
    }
}

/// What a client asked for.
enum Request<T> {
    /// CONNECT to a host (a name, or an address as text) and port; the
    /// protocol is left to answer.
    Connect(
        Socks5ServerProtocol<T, fast_socks5::server::states::CommandRead>,
        String,
        u16,
    ),
    /// Anything else; already answered.
    Answered,
}

/// Reads the greeting (no authentication) and the request.
async fn read_request<T: AsyncRead + AsyncWrite + Unpin>(
    socket: T,
) -> Result<Request<T>, fast_socks5::server::SocksServerError> {
    let (proto, command, target) = Socks5ServerProtocol::accept_no_auth(socket)
        .await?
        .read_command()
        .await?;
    if command != Socks5Command::TCPConnect {
        proto.reply_error(&ReplyError::CommandNotSupported).await?;
        return Ok(Request::Answered);
    }
    Ok(match target {
        TargetAddr::Ip(addr) => Request::Connect(proto, addr.ip().to_string(), addr.port()),
        TargetAddr::Domain(name, port) => Request::Connect(proto, name, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs `read_request` against `sent`; returns the target it read (if
    /// any) and what it wrote back.
    async fn handshake(sent: &[u8]) -> (Result<Option<(String, u16)>, String>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(sent).await.unwrap();
        client.shutdown().await.unwrap();
        let outcome = match read_request(server).await {
            Ok(Request::Connect(_, host, port)) => Ok(Some((host, port))),
            Ok(Request::Answered) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let mut replies = Vec::new();
        client.read_to_end(&mut replies).await.unwrap();
        (outcome, replies)
    }

    const GREETING: [u8; 3] = [5, 1, 0];

    #[tokio::test]
    async fn connect_targets_are_read_and_names_stay_unresolved() {
        let mut v4 = GREETING.to_vec();
        v4.extend([5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]);
        let (target, replies) = handshake(&v4).await;
        assert_eq!(target.unwrap(), Some(("127.0.0.1".to_owned(), 8080)));
        assert_eq!(replies, [5, 0], "no authentication chosen");

        let mut v6 = GREETING.to_vec();
        v6.extend([5, 1, 0, 4]);
        v6.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend([0, 80]);
        assert_eq!(
            handshake(&v6).await.0.unwrap(),
            Some(("::1".to_owned(), 80))
        );

        let mut name = GREETING.to_vec();
        name.extend([5, 1, 0, 3, 21]);
        name.extend(b"no-such-host.invalid");
        name.extend([b'x', 1, 187]);
        assert_eq!(
            handshake(&name).await.0.unwrap(),
            Some(("no-such-host.invalidx".to_owned(), 443))
        );
    }

    #[tokio::test]
    async fn bind_and_udp_are_answered_command_not_supported() {
        for command in [2u8, 3] {
            let mut sent = GREETING.to_vec();
            sent.extend([5, command, 0, 1, 127, 0, 0, 1, 0, 80]);
            let (target, replies) = handshake(&sent).await;
            assert_eq!(target.unwrap(), None);
            assert_eq!(&replies[..4], [5, 0, 5, 7], "command {command}");
        }
    }

    #[tokio::test]
    async fn hostile_and_truncated_input_is_refused() {
        // Only username/password offered: no acceptable method (0xFF).
        let (target, replies) = handshake(&[5, 1, 2]).await;
        assert!(target.is_err());
        assert_eq!(replies, [5, 0xff]);
        for sent in [
            &[][..],                                         // nothing
            &[4, 1, 0][..],                                  // SOCKS4
            &[5, 3, 0][..],                                  // fewer methods than announced
            &[5, 1, 0, 5, 1, 0, 1, 127, 0][..],              // address cut short
            &[5, 1, 0, 5, 1, 0, 3, 200, b'a', b'b'][..],     // name cut short
            &[5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80][..],   // unknown address type
            &[5, 1, 0, 6, 1, 0, 1, 127, 0, 0, 1, 0, 80][..], // wrong version in the request
        ] {
            let (target, _) = handshake(sent).await;
            assert!(target.is_err(), "{sent:?} accepted as {target:?}");
        }
    }

    #[test]
    fn a_refused_channel_is_not_allowed_by_ruleset() {
        assert_eq!(
            reply_for(&ChannelOpenFailure::AdministrativelyProhibited).as_u8(),
            0x02
        );
        assert_eq!(reply_for(&ChannelOpenFailure::ConnectFailed).as_u8(), 0x05);
    }

    /// The SOCKS server against a russh server in this process (the node's
    /// own SSH server is tested end to end in tests/ssh_client.rs).
    mod over_an_ssh_server {
        use super::*;
        use russh::keys::PublicKey;
        use russh::keys::ssh_key::private::Ed25519Keypair;
        use russh::server::{self, Auth, ChannelOpenHandle, Session};

        struct Server {
            allowed: PublicKey,
        }

        impl server::Handler for Server {
            type Error = russh::Error;

            async fn auth_publickey(
                &mut self,
                _: &str,
                key: server::VerifiedPublicKey<'_>,
            ) -> Result<Auth, Self::Error> {
                Ok(if key.public_key.key_data() == self.allowed.key_data() {
                    Auth::Accept
                } else {
                    Auth::reject()
                })
            }

            /// Only 127.0.0.1 is allowed, as a scope would.
            async fn channel_open_direct_tcpip(
                &mut self,
                channel: russh::Channel<server::Msg>,
                host: &str,
                port: u32,
                _: &str,
                _: u32,
                reply: ChannelOpenHandle,
                _: &mut Session,
            ) -> Result<(), Self::Error> {
                if host != "127.0.0.1" {
                    reply
                        .reject(ChannelOpenFailure::AdministrativelyProhibited)
                        .await;
                    return Ok(());
                }
                match TcpStream::connect((host, port as u16)).await {
                    Ok(mut tcp) => {
                        reply.accept().await;
                        tokio::spawn(async move {
                            let mut stream = channel.into_stream();
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut stream).await;
                        });
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
                Ok(())
            }
        }

        fn key(seed: u8) -> PrivateKey {
            PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
        }

        /// Sessions dialling a fresh in-process server each time; the
        /// server accepts the key made from seed 2.
        fn sessions(identity: PrivateKey) -> Arc<Sessions> {
            let dial = move || {
                let (client, stream) = tokio::io::duplex(64 * 1024);
                let config = Arc::new(server::Config {
                    keys: vec![key(1)],
                    ..server::Config::default()
                });
                let handler = Server {
                    allowed: key(2).public_key().clone(),
                };
                tokio::spawn(async move {
                    if let Ok(running) = server::run_stream(config, stream, handler).await {
                        let _ = running.await;
                    }
                });
                client
            };
            Arc::new(Sessions {
                dial: Dial::Test(Box::new(dial)),
                identity: Arc::new(identity),
                user: "test".to_owned(),
                current: Mutex::new(None),
            })
        }

        /// A loopback server that echoes; its port.
        async fn echo_server() -> u16 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = socket.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            port
        }

        /// A SOCKS client's CONNECT through `serve_one`; returns the reply
        /// code and the connection.
        async fn socks_connect(sessions: &Arc<Sessions>, request: &[u8]) -> (u8, TcpStream) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (socket, origin) = listener.accept().await.unwrap();
            let sessions = sessions.clone();
            tokio::spawn(async move { serve_one(socket, origin, &sessions).await });
            client.write_all(&GREETING).await.unwrap();
            client.write_all(request).await.unwrap();
            let mut reply = [0u8; 12];
            client.read_exact(&mut reply).await.unwrap();
            assert_eq!(reply[..2], [5, 0], "no authentication");
            assert_eq!(reply[2..5], [5, reply[3], 0]);
            (reply[3], client)
        }

        fn connect_v4(ip: [u8; 4], port: u16) -> Vec<u8> {
            let mut request = vec![5, 1, 0, 1];
            request.extend(ip);
            request.extend(port.to_be_bytes());
            request
        }

        #[tokio::test]
        async fn connections_ride_channels_and_refusals_become_socks_replies() {
            let sessions = sessions(key(2));
            sessions.session().await.unwrap();
            let port = echo_server().await;

            let (code, mut connection) =
                socks_connect(&sessions, &connect_v4([127, 0, 0, 1], port)).await;
            assert_eq!(code, 0);
            connection.write_all(b"through the channel").await.unwrap();
            let mut echoed = [0u8; 19];
            connection.read_exact(&mut echoed).await.unwrap();
            assert_eq!(&echoed, b"through the channel");

            // Refused by the server's rules: 0x02; nobody listening: 0x05.
            let (code, _) = socks_connect(&sessions, &connect_v4([10, 0, 0, 1], port)).await;
            assert_eq!(code, 2);
            let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let closed_port = closed.local_addr().unwrap().port();
            drop(closed);
            let (code, _) =
                socks_connect(&sessions, &connect_v4([127, 0, 0, 1], closed_port)).await;
            assert_eq!(code, 5);

            // A dropped session is set up again on the next connection.
            let live = sessions.session().await.unwrap();
            live.handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await
                .unwrap();
            let end = tokio::time::Instant::now() + Duration::from_secs(10);
            while !live.handle.is_closed() {
                assert!(
                    tokio::time::Instant::now() < end,
                    "the session did not close"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let (code, mut connection) =
                socks_connect(&sessions, &connect_v4([127, 0, 0, 1], port)).await;
            assert_eq!(code, 0);
            connection.write_all(b"again").await.unwrap();
            let mut echoed = [0u8; 5];
            connection.read_exact(&mut echoed).await.unwrap();
            assert_eq!(&echoed, b"again");
        }

        #[tokio::test]
        async fn a_key_the_server_refuses_is_named() {
            let error = sessions(key(3)).session().await.err().expect("refused");
            let text = error.to_string();
            assert!(
                text.starts_with("the node refused the SSH key ed25519:"),
                "{text}"
            );
        }
    }

    /// At most `max_connections`, each with [`HANDSHAKE_TIMEOUT`] for its
    /// handshake; the clock is paused, so the timeout passes at once.
    #[tokio::test(start_paused = true)]
    async fn connections_are_capped_and_a_silent_client_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sessions = Arc::new(Sessions {
            dial: Dial::Test(Box::new(|| unreachable!("no request gets that far"))),
            identity: Arc::new(PrivateKey::from(
                russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[2; 32]),
            )),
            user: "test".to_owned(),
            current: Mutex::new(None),
        });
        tokio::spawn(accept(listener, sessions, 1));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The first holds the only slot (it is answered once it speaks)...
        silent.write_all(&[5]).await.unwrap();
        let mut over = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        // ...so the second is closed unanswered,
        let started = tokio::time::Instant::now();
        assert_eq!(over.read(&mut byte).await.unwrap_or(0), 0);
        assert!(started.elapsed() < HANDSHAKE_TIMEOUT);
        // and the first is dropped when its handshake time is up.
        assert_eq!(silent.read(&mut byte).await.unwrap_or(0), 0);
        assert!(started.elapsed() >= HANDSHAKE_TIMEOUT - Duration::from_secs(1));
    }
}

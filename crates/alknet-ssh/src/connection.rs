//! One SSH connection: russh's session over the connection's stream, the
//! login, and the channels it opens.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use alknet_core::{Connection, Duplex, Fingerprint, HandlerError, Identity};
use russh::keys::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::Shared;
use crate::access::Access;
use crate::auth;
use crate::channel::{self, ChannelKind, Channels};
use crate::forward::RemoteForwards;
use crate::keys;

/// Runs the SSH connection carried by `stream` until it ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    connection: Connection,
    stream: Duplex,
) -> Result<(), HandlerError> {
    let remote = connection.remote();
    let (logged_in_tx, mut logged_in) = watch::channel(false);
    let channels = Channels::new(connection.clone(), shared.settings.max_channels);
    let handler = SshConnection {
        shared: shared.clone(),
        connection: connection.clone(),
        remote,
        access: None,
        tried: Vec::new(),
        logged_in: logged_in_tx,
        channels: channels.clone(),
        forwards: RemoteForwards::new(shared.settings.max_remote_forwards),
        handle: None,
    };
    // russh runs the session on a task of its own. Cutting the stream ends
    // that task however this function ends: a login grace that expired, a
    // drain, or the connection actor dropping this future (`admin/kill`).
    let (stream, cut) = Severable::new(stream);
    let _cut_on_exit = cut.drop_guard();
    let grace = tokio::time::sleep(shared.settings.login_grace_time);
    tokio::pin!(grace);
    // russh reads each packet's length and then its body straight from the
    // stream: unbuffered, that is three reads (the last one `EAGAIN`) per
    // packet, which on the plain listener are three system calls.
    let stream = tokio::io::BufReader::with_capacity(READ_BUFFER, stream);
    let starting = russh::server::run_stream(shared.russh.clone(), stream, handler);
    let mut session = tokio::select! {
        started = starting => match started {
            Ok(session) => session,
            Err(error) => {
                tracing::debug!(%remote, "SSH connection ended before its key exchange: {error}");
                return Ok(());
            }
        },
        () = &mut grace => {
            tracing::debug!(%remote, "SSH client sent no identification within the login grace time");
            return Ok(());
        }
    };
    let handle = session.handle();
    let ended = loop {
        tokio::select! {
            ended = &mut session => break ended,
            () = &mut grace, if !*logged_in.borrow() => {
                tracing::debug!(%remote, "SSH login grace time exceeded: closing");
                break Err(russh::Error::Disconnect);
            }
            changed = logged_in.changed(), if !*logged_in.borrow() => {
                if changed.is_err() {
                    break (&mut session).await;
                }
            }
            () = connection.draining() => {
                // Shells and forwards have no natural end: a drain ends them.
                let _ = handle
                    .disconnect(Disconnect::ByApplication, "node shutting down".into(), String::new())
                    .await;
                let ended = tokio::time::timeout(DISCONNECT_GRACE, &mut session).await;
                break ended.unwrap_or(Err(russh::Error::Disconnect));
            }
        }
    };
    channels.stop_all();
    match ended {
        Ok(()) => Ok(()),
        // A peer that goes away mid-session is a normal end.
        Err(russh::Error::Disconnect | russh::Error::IO(_)) => Ok(()),
        Err(russh::Error::InactivityTimeout) => {
            tracing::debug!(%remote, "SSH connection idle past ssh.idle_timeout: closed");
            Ok(())
        }
        Err(error) => Err(HandlerError::PeerViolation(format!("SSH: {error}"))),
    }
}

/// How much one read from the connection's stream may take: a few SSH
/// packets, or one of the largest data packets OpenSSH sends (32 KiB).
const READ_BUFFER: usize = 64 * 1024;

/// How long a disconnect message gets to reach the client before the stream
/// is cut.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// A stream that fails every read and write once its token is cancelled, so
/// that the task russh runs it on ends.
struct Severable {
    inner: Duplex,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Severable {
    fn new(inner: Duplex) -> (Self, CancellationToken) {
        let token = CancellationToken::new();
        let cut = Box::pin(token.clone().cancelled_owned());
        (Self { inner, cut }, token)
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "SSH connection closed by the node",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for Severable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Severable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// russh's handler for one connection.
struct SshConnection {
    shared: Arc<Shared>,
    connection: Connection,
    remote: SocketAddr,
    /// Set once a key logs in.
    access: Option<Arc<Access>>,
    /// Unknown keys offered, for the failed-login line.
    tried: Vec<Fingerprint>,
    logged_in: watch::Sender<bool>,
    channels: Channels,
    forwards: RemoteForwards,
    handle: Option<Handle>,
}

/// Keys a connection may name in its failed-login line.
const TRIED_KEYS_KEPT: usize = 8;

impl SshConnection {
    fn identity_of(&self, key: &PublicKey) -> (Fingerprint, Option<Identity>) {
        let fingerprint = keys::fingerprint(key);
        let identity = self.shared.identities.resolve_fingerprint(&fingerprint);
        (fingerprint, identity)
    }

    fn reject() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    fn note_tried(&mut self, fingerprint: Fingerprint) {
        if self.tried.len() < TRIED_KEYS_KEPT && !self.tried.contains(&fingerprint) {
            self.tried.push(fingerprint);
        }
    }

    fn log_in(&mut self, identity: Identity) {
        self.access = Some(Arc::new(Access::of(&identity)));
        self.connection.info().set_identity(Some(identity));
        let _ = self.logged_in.send(true);
    }

    fn access(&self) -> Option<Arc<Access>> {
        self.access.clone()
    }

    fn handle(&mut self, session: &Session) -> Handle {
        self.handle.get_or_insert_with(|| session.handle()).clone()
    }

    /// Admits one more channel, or says why not.
    fn open(
        &mut self,
        kind: ChannelKind,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &Session,
    ) {
        let Some(access) = self.access() else {
            return; // russh opens no channel before a login; dropping rejects.
        };
        let handle = self.handle(session);
        self.channels.spawn(channel::Start {
            kind,
            channel,
            reply: Some(reply),
            access,
            handle,
            shared: self.shared.clone(),
        });
    }
}

impl Drop for SshConnection {
    fn drop(&mut self) {
        if self.access.is_none() && !self.tried.is_empty() {
            self.shared.logins.record(self.remote.ip());
            auth::login_failed(self.remote, &self.tried);
        }
    }
}

impl russh::server::Handler for SshConnection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let (fingerprint, identity) = self.identity_of(offer.public_key);
        if identity.is_some() {
            return Ok(Auth::Accept);
        }
        // A certificate is offered by its key, which no peer entry names:
        // with CAs configured, every key goes on to the signed attempt, where
        // a certificate is checked and a plain unknown key refused.
        if !self.shared.user_cas.is_empty() {
            return Ok(Auth::Accept);
        }
        auth::key_refused(self.remote, &fingerprint, user);
        self.note_tried(fingerprint);
        Ok(Self::reject())
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let (fingerprint, identity) = self.identity_of(key.public_key);
        let Some(identity) = identity else {
            if !self.shared.user_cas.is_empty() {
                auth::key_refused(self.remote, &fingerprint, user);
                self.note_tried(fingerprint);
            }
            return Ok(Self::reject());
        };
        tracing::info!(
            remote = %self.remote,
            identity = %identity.id,
            %fingerprint,
            user,
            "SSH login"
        );
        self.log_in(identity);
        Ok(Auth::Accept)
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        match self.shared.user_cas.identity(user, certificate) {
            Ok(identity) => {
                tracing::info!(
                    remote = %self.remote,
                    identity = %identity.id,
                    key_id = certificate.key_id(),
                    "SSH login with a user certificate"
                );
                self.log_in(identity);
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                auth::certificate_refused(self.remote, certificate.key_id(), &refusal);
                let key = PublicKey::new(certificate.public_key().clone(), "");
                self.note_tried(keys::fingerprint(&key));
                Ok(Self::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.handle(session);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.open(ChannelKind::Session, channel, reply, session);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::DirectTcpip {
            host: host_to_connect.to_owned(),
            port: port_to_connect,
            originator: format!("{originator_address}:{originator_port}"),
        };
        self.open(kind, channel, reply, session);
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        _channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel's actor answers the request; this hook exists only for
        // the fault-injection test of a panicking connection.
        if self.shared.fault_injection && data == crate::FAULT_PANIC_COMMAND.as_bytes() {
            panic!("injected SSH connection panic");
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(access) = self.access() else {
            return Ok(false);
        };
        if let Err(refusal) = access.listen(*port) {
            tracing::info!(remote = %self.remote, "ssh -R refused: {refusal}");
            return Ok(false);
        }
        let handle = self.handle(session);
        let target = crate::forward::ListenRequest {
            address: address.to_owned(),
            port: *port,
            gateway_ports: self.shared.settings.gateway_ports,
        };
        match self
            .forwards
            .listen(
                target,
                handle,
                self.channels.clone(),
                access,
                self.shared.clone(),
            )
            .await
        {
            Ok(bound) => {
                *port = bound;
                Ok(true)
            }
            Err(error) => {
                tracing::info!(remote = %self.remote, address, port = *port, "ssh -R refused: {error}");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.forwards.cancel(address, port))
    }
}

//! `CallClient`: dial a node over QUIC or TCP+TLS and call its operations.
//!
//! A client is one session, run by the same `CallSession` actor the node runs
//! for it, so correlation, aborts, deadlines and close behave identically on
//! both ends. It serves the node's calls from a registry of its own, empty
//! until [`CallClient::register`] adds an operation (and announces it to the
//! node with `session/register`, §10.5).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_core::close::REFUSED_REASON;
use alknet_core::tls::{self, ServerVerification};
use alknet_core::{Alpn, Connection, NoIdentities, NodeKey};
use serde_json::{Value, json};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::codec::DEFAULT_MAX_FRAME;
use crate::error::CallError;
use crate::handle::{CallOptions, SessionHandle, Subscription};
use crate::registry::{OperationDef, Registry};
use crate::session_config::{SessionConfig, SessionLimits};
use crate::stream_feed::StreamFeed;

/// Which transport to dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// TLS over TCP.
    Tcp,
}

/// How to dial.
#[derive(Debug)]
pub struct ClientOptions {
    /// QUIC or TCP+TLS.
    pub transport: Transport,
    /// Pin the node's id, or accept any certificate (`--insecure`).
    pub verification: ServerVerification,
    /// A bearer token sent with every request.
    pub token: Option<String>,
    /// Our own key, presented as a client certificate.
    pub client_key: Option<NodeKey>,
    /// Largest frame written or read.
    pub max_frame: usize,
    /// How long a query or mutation may take before the client gives up
    /// (the node's deadline plus 5 s of grace).
    pub call_timeout: Duration,
    /// QUIC: how long without a sign of life before the node is presumed
    /// gone (keep-alives go out at a third of it). A node killed without
    /// closing its connections is noticed this late; TCP notices at once.
    pub idle_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transport: Transport::Quic,
            verification: ServerVerification::Insecure,
            token: None,
            client_key: None,
            max_frame: DEFAULT_MAX_FRAME,
            call_timeout: Duration::from_secs(35),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The network failed.
    #[error("cannot connect: {0}")]
    Io(#[from] std::io::Error),
    /// The QUIC handshake failed.
    #[error("QUIC: {0}")]
    Quic(String),
    /// The session could not start.
    #[error("cannot start the session: {0}")]
    Session(String),
    /// Where to dial could not be found (an upstream named by node id).
    #[error("cannot locate: {0}")]
    Unlocated(String),
    /// The node closed the connection as it opened, over its connection
    /// limit: a reason to retry later, as the same refusal met by a call is.
    #[error("the node refused the connection: {REFUSED_REASON}")]
    Refused,
}

impl ConnectError {
    /// The error a call meets when the node refuses its connection.
    pub fn as_call_error(&self) -> Option<CallError> {
        matches!(self, Self::Refused).then(|| CallError::unavailable(REFUSED_REASON, 1))
    }
}

/// Whether `error` is the node refusing the connection (its limit).
fn refused(error: &quinn::ConnectionError) -> bool {
    matches!(
        error,
        quinn::ConnectionError::ApplicationClosed(close) if close.reason == REFUSED_REASON.as_bytes()
    )
}

/// Whether the node closed `connection` refusing it.
fn closed_refused(connection: &Connection) -> bool {
    connection
        .quic()
        .and_then(quinn::Connection::close_reason)
        .is_some_and(|close| refused(&close))
}

/// A call session from the dialling side.
pub struct CallClient {
    handle: SessionHandle,
    registry: Arc<Registry>,
    token: Option<String>,
    connection: Connection,
    driver: AbortOnDropHandle<()>,
    stream_tasks: TaskTracker,
    endpoint: Option<quinn::Endpoint>,
}

impl CallClient {
    /// Dials `addr` and opens the session.
    pub async fn connect(addr: SocketAddr, options: ClientOptions) -> Result<Self, ConnectError> {
        let alpn = Alpn::new(crate::ALPN);
        let alpns = [alpn.clone()];
        let key = options.client_key.as_ref();
        let (connection, endpoint) = match options.transport {
            Transport::Quic => {
                let mut config = tls::quic_client_config(options.verification, key, &alpns)?;
                let mut transport = alknet_core::udp::transport_config();
                transport
                    .max_idle_timeout(Some(
                        quinn::IdleTimeout::try_from(options.idle_timeout)
                            .map_err(|e| ConnectError::Quic(e.to_string()))?,
                    ))
                    .keep_alive_interval(Some(options.idle_timeout / 3));
                config.transport_config(Arc::new(transport));
                let endpoint = alknet_core::udp::client_endpoint(addr)?;
                let connection = endpoint
                    .connect_with(config, addr, "localhost")
                    .map_err(|e| ConnectError::Quic(e.to_string()))?
                    .await
                    .map_err(|e| {
                        if refused(&e) {
                            ConnectError::Refused
                        } else {
                            ConnectError::Quic(e.to_string())
                        }
                    })?;
                (
                    Connection::from_quic(connection, alpn, None),
                    Some(endpoint),
                )
            }
            Transport::Tcp => {
                let config = tls::client_config(options.verification, key, &alpns, false)?;
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                // Trust comes from the pin, not the name: any valid name will do.
                let name = ServerName::try_from("localhost").expect("a valid DNS name");
                let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await?;
                (Connection::from_stream(tls, alpn, addr, None), None)
            }
        };
        let registry = Arc::new(Registry::new());
        let config = SessionConfig {
            registry: registry.clone(),
            identities: Arc::new(NoIdentities),
            limits: SessionLimits {
                max_frame: options.max_frame,
                ..SessionLimits::default()
            },
        };
        let span = tracing::info_span!("call-client", remote = %addr);
        // The node's refusal may arrive after the handshake, while the
        // session opens.
        let session_error = |e: String| {
            if closed_refused(&connection) {
                ConnectError::Refused
            } else {
                ConnectError::Session(e)
            }
        };
        let session = StreamFeed::start(config, connection.clone(), options.call_timeout, span)
            .await
            .map_err(|e| session_error(e.to_string()))?;
        session
            .open_stream()
            .await
            .map_err(|e| session_error(e.to_string()))?;
        let handle = session.handle();
        let stream_tasks = session.stream_tasks();
        let driver = tokio::spawn(session.drive(None));
        Ok(Self {
            handle,
            registry,
            token: options.token,
            connection,
            driver: AbortOnDropHandle::new(driver),
            stream_tasks,
            endpoint,
        })
    }

    /// The session, for calls with per-call options or through the overlay.
    pub fn session(&self) -> &SessionHandle {
        &self.handle
    }

    /// Whether the session has ended (the node closed it, or the network
    /// failed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Why the node closed the session, when it said (QUIC carries a reason
    /// with its close; a TCP+TLS connection just ends).
    pub fn close_reason(&self) -> Option<String> {
        match self.connection.quic()?.close_reason()? {
            quinn::ConnectionError::ApplicationClosed(close) => {
                Some(String::from_utf8_lossy(&close.reason).into_owned())
            }
            other => Some(other.to_string()),
        }
    }

    /// A call that failed because the node refused the connection says so:
    /// "connection limit reached" is a reason to retry later, not the
    /// internal error a session that ends under its calls is (§9.3).
    fn explained(&self, error: CallError) -> CallError {
        if error == CallError::internal("connection closed") && closed_refused(&self.connection) {
            return CallError::unavailable(REFUSED_REASON, 1);
        }
        error
    }

    fn options(&self) -> CallOptions {
        CallOptions {
            auth_token: self.token.clone(),
            forwarded_for: None,
        }
    }

    /// Calls a query or mutation and waits for its one reply.
    pub async fn call(&self, operation: &str, input: Value) -> Result<Value, CallError> {
        self.handle
            .call_with(operation, input, self.options())
            .await
            .map_err(|error| self.explained(error))
    }

    /// Calls a query or mutation relaying `forwarded_for` as the original
    /// caller.
    pub async fn call_forwarding(
        &self,
        operation: &str,
        input: Value,
        forwarded_for: Option<alknet_core::Identity>,
    ) -> Result<Value, CallError> {
        let options = CallOptions {
            forwarded_for,
            ..self.options()
        };
        self.handle
            .call_with(operation, input, options)
            .await
            .map_err(|error| self.explained(error))
    }

    /// Calls a subscription; its items arrive on the returned stream, which
    /// ends after `call.completed` or with one error. Dropping it early aborts
    /// the call.
    pub async fn subscribe(
        &self,
        operation: &str,
        input: Value,
    ) -> Result<Subscription, CallError> {
        self.handle
            .subscribe(operation, input, self.options())
            .await
            .map_err(|error| self.explained(error))
    }

    /// Calls a subscription relaying `forwarded_for` as the original caller.
    pub async fn subscribe_forwarding(
        &self,
        operation: &str,
        input: Value,
        forwarded_for: Option<alknet_core::Identity>,
    ) -> Result<Subscription, CallError> {
        let options = CallOptions {
            forwarded_for,
            ..self.options()
        };
        self.handle
            .subscribe(operation, input, options)
            .await
            .map_err(|error| self.explained(error))
    }

    /// Serves `def` to the node on this session: it joins the client's own
    /// registry and the session's overlay on the node (`session/register`).
    pub async fn register(&self, def: OperationDef) -> Result<(), CallError> {
        let spec = def.spec().clone();
        self.registry
            .register(def)
            .map_err(|e| CallError::invalid_input(e.to_string()))?;
        let registered = self
            .call("session/register", json!({ "operations": [spec] }))
            .await;
        if registered.is_err() {
            self.registry.unregister(&spec.name);
        }
        registered.map(|_| ())
    }
}

impl CallClient {
    /// Ends the session so that the node sees it end now, not when its idle
    /// timeout expires: QUIC sends its close and waits (up to `within`) for
    /// the endpoint to have sent it; over TCP+TLS the session's writer ends
    /// the stream with a TLS close_notify. A process that exits right after
    /// dropping a client sends neither. Calls still in flight fail.
    pub async fn close(mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        match self.endpoint.take() {
            Some(endpoint) => {
                self.connection.close(crate::NO_ERROR, "client closed");
                let _ = tokio::time::timeout_at(deadline, endpoint.wait_idle()).await;
            }
            None => {
                // Closing the connection first would cancel the writer
                // before it sends close_notify: end the session instead.
                self.handle.stop();
                let _ = tokio::time::timeout_at(deadline, &mut self.driver).await;
                self.stream_tasks.close();
                let _ = tokio::time::timeout_at(deadline, self.stream_tasks.wait()).await;
            }
        }
    }
}

impl Drop for CallClient {
    fn drop(&mut self) {
        self.connection.close(crate::NO_ERROR, "client closed");
    }
}

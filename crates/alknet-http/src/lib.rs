//! The HTTP handler (docs/protocol.md §11): `h2` and `http/1.1`, over TCP+TLS and
//! over the first bidirectional stream of a QUIC connection.
//!
//! Plain HTTP reaches operations only through the gateway — `/search`,
//! `/schema`, `/call`, `/batch`, `/subscribe` — which dispatches through the
//! same [`alknet_call::dispatch`] as a call session, so HTTP can never disagree
//! with the call protocol on names, access or validation. Everything else the
//! node does not serve looks like a stock nginx 404 (the stealth decoy): a
//! scanner learns nothing. Each connection runs in its `http-conn` actor under
//! `proto/http`; hyper serves HTTP/1.1 or HTTP/2 on the connection's one byte
//! stream.
//!
//! - [`config`]: the `[http]` section of `alknet.toml`;
//! - [`auth`]: the bearer middleware, which attaches an identity and never
//!   rejects;
//! - [`status`]: CallError → HTTP status and headers (§11.5);
//! - [`gateway`]: the five endpoints (§11.3–§11.4);
//! - [`decoy`]: the stealth 404 (§11.7);
//! - [`openapi`]: the gateway's OpenAPI 3.1 document (§13);
//! - [`websocket`]: the call session over a WebSocket at `/alknet/call` (§12);
//! - [`console`]: the operator console page at `/console`;
//! - [`limits`]: what one connection may make the node hold, and for how
//!   long; `watchdog` closes idle connections, `body` reads request bodies
//!   and `response_body` sends replies within the connection's budget,
//!   `event_queue` ends subscriptions whose peer stopped reading;
//! - `stealth`: nginx's 404 for every anonymous request (`[http] stealth`).

#![warn(missing_docs)]

pub mod auth;
mod body;
pub mod config;
pub mod console;
pub mod decoy;
mod event_queue;
pub mod gateway;
pub mod limits;
pub mod openapi;
mod response_body;
mod scope;
pub use scope::connection_of;
pub mod status;
mod stealth;
mod watchdog;
pub mod websocket;

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alknet_call::{Registry, SessionLimits};
use alknet_core::{Connection, HandlerError, IdentityProvider, Protocol, ProtocolHandler};
use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

pub use limits::ConnectionLimits;

/// HTTP/2 over TLS (`docs/protocol.md` §2).
pub const ALPN_H2: &str = "h2";
/// HTTP/1.1 over TLS (`docs/protocol.md` §2).
pub const ALPN_HTTP_1_1: &str = "http/1.1";
use scope::ConnectionScope;
use stealth::{Http11StatusLine, Stealth};

/// The HTTP handler's settings.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Deadline of a query or mutation called through the gateway.
    pub call_timeout: Duration,
    /// Items a `/batch` may hold.
    pub max_batch: usize,
    /// Largest request body.
    pub max_body: usize,
    /// How long `/subscribe` may go without an event before `: ping`.
    pub keep_alive: Duration,
    /// What unserved paths get.
    pub decoy: decoy::Decoy,
    /// Limits of a WebSocket session's call session; `max_frame` is also the
    /// largest WebSocket message.
    pub session: SessionLimits,
    /// WebSocket pings and idle timeout.
    pub websocket: websocket::WebSocketSettings,
    /// Serve the operator console at `/console` (else: the decoy).
    pub console: bool,
    /// Time limits and caps of each connection.
    pub limits: ConnectionLimits,
    /// Answer anonymous requests outside `/healthz` and `public_paths` with
    /// nginx's 404.
    pub stealth: bool,
    /// Under `stealth`, further paths anonymous requests may reach.
    pub public_paths: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            max_batch: 100,
            max_body: 16 * 1024 * 1024,
            keep_alive: Duration::from_secs(15),
            decoy: decoy::Decoy::NotFound,
            session: SessionLimits::default(),
            websocket: websocket::WebSocketSettings::default(),
            console: true,
            limits: ConnectionLimits::default(),
            stealth: false,
            public_paths: Vec::new(),
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The operations.
    pub registry: Arc<Registry>,
    /// Resolves bearer tokens.
    pub identities: Arc<dyn IdentityProvider>,
    /// The settings.
    pub settings: HttpSettings,
}

/// Serves `h2` and `http/1.1`.
pub struct HttpHandler {
    /// What new connections are served with; a reload replaces it.
    live: Arc<RwLock<Live>>,
    stealth: Option<Stealth>,
}

/// The router and state new connections get, and what rebuilds them.
struct Live {
    served: Arc<Served>,
    extra: Vec<ExtraRoute>,
    /// The `/mcp` service, layered: kept across rebuilds, since it holds the
    /// MCP sessions clients resume on new connections.
    mcp: Option<axum::routing::Router>,
}

/// One connection's router and state, taken when the connection starts.
struct Served {
    router: Router,
    state: AppState,
}

impl Live {
    fn build(state: AppState, extra: &[ExtraRoute], mcp: Option<&Router>) -> Arc<Served> {
        let mut router = router(state.clone(), extra.to_vec());
        if let Some(mcp) = mcp {
            router = router.route_service("/mcp", mcp.clone().into_service::<axum::body::Body>());
        }
        Arc::new(Served { router, state })
    }
}

/// The limits an [`HttpHandler`] applies, as a reload replaces them.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// [`HttpSettings::call_timeout`].
    pub call_timeout: Duration,
    /// [`HttpSettings::max_batch`].
    pub max_batch: usize,
    /// [`HttpSettings::session`].
    pub session: SessionLimits,
    /// [`HttpSettings::limits`].
    pub connection: ConnectionLimits,
}

/// Replaces an [`HttpHandler`]'s limits while it serves
/// ([`HttpHandler::live_limits`]).
#[derive(Clone)]
pub struct LiveHttpLimits(Arc<RwLock<Live>>);

impl LiveHttpLimits {
    /// Connections accepted from now on are served with `limits`; open ones
    /// keep what they started with (their timers, windows and budgets were
    /// sized by it). `/mcp` keeps the call timeout and batch size it was
    /// built with.
    pub fn set(&self, limits: HttpLimits) {
        let mut live = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = live.served.state.clone();
        state.settings.call_timeout = limits.call_timeout;
        state.settings.max_batch = limits.max_batch;
        state.settings.session = limits.session;
        state.settings.limits = limits.connection;
        live.served = Live::build(state, &live.extra, live.mcp.as_ref());
    }
}

/// A deployment's own route (§11.6): served behind the bearer middleware
/// (handlers read the [`auth::Bearer`] extension), absent from `/search` and
/// `/openapi.json`.
#[derive(Clone)]
pub struct ExtraRoute {
    /// The path, e.g. `/status`.
    pub path: String,
    /// Its methods.
    pub route: axum::routing::MethodRouter<AppState>,
}

/// Paths of the default surface, which always wins (§11.1, §11.6).
const BUILT_IN_PATHS: &[&str] = &[
    "/healthz",
    "/openapi.json",
    "/search",
    "/schema",
    "/call",
    "/batch",
    "/subscribe",
    "/alknet/call",
    "/mcp",
    "/console",
];

/// An extra route that would shadow the default surface.
#[derive(Debug, thiserror::Error)]
#[error("extra route \"{0}\" collides with a built-in route")]
pub struct RouteCollision(pub String);

impl HttpHandler {
    /// A handler dispatching gateway calls to `registry`.
    pub fn new(
        registry: Arc<Registry>,
        identities: Arc<dyn IdentityProvider>,
        settings: HttpSettings,
    ) -> Self {
        Self::with_extra_routes(registry, identities, settings, Vec::new())
            .expect("no extra route, no collision")
    }

    /// A handler that also serves `extra` routes; one whose path is part of
    /// the default surface (or lies under `/alknet/` or `/mcp/`) is refused.
    pub fn with_extra_routes(
        registry: Arc<Registry>,
        identities: Arc<dyn IdentityProvider>,
        settings: HttpSettings,
        extra: Vec<ExtraRoute>,
    ) -> Result<Self, RouteCollision> {
        for route in &extra {
            let path = route.path.as_str();
            if BUILT_IN_PATHS.contains(&path)
                || path.starts_with("/alknet/")
                || path.starts_with("/mcp/")
            {
                return Err(RouteCollision(route.path.clone()));
            }
        }
        let stealth = settings.stealth.then(|| Stealth {
            public_paths: settings.public_paths.clone(),
            identities: identities.clone(),
        });
        let state = AppState {
            registry,
            identities,
            settings,
        };
        let served = Live::build(state, &extra, None);
        Ok(Self {
            live: Arc::new(RwLock::new(Live {
                served,
                extra,
                mcp: None,
            })),
            stealth,
        })
    }

    /// The handle a reload replaces this handler's limits through.
    pub fn live_limits(&self) -> LiveHttpLimits {
        LiveHttpLimits(self.live.clone())
    }

    /// What a connection starting now is served with: read once per
    /// connection, so a reload costs requests nothing.
    fn served(&self) -> Arc<Served> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .served
            .clone()
    }

    /// Serves MCP at `/mcp` (§14.1) with `mcp` (the streamable-HTTP service,
    /// `alknet_adapters::to_mcp::router`), behind the bearer middleware.
    pub fn with_mcp(self, mcp: Router) -> Self {
        {
            let mut live = self
                .live
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = live.served.state.clone();
            let mcp = mcp.layer(axum::middleware::from_fn_with_state(
                state.clone(),
                auth::bearer,
            ));
            live.served = Live::build(state, &live.extra, Some(&mcp));
            live.mcp = Some(mcp);
        }
        self
    }
}

/// The whole HTTP surface: health, gateway, OpenAPI, the deployment's extra
/// routes, and the decoy for everything else.
pub fn router(state: AppState, extra: Vec<ExtraRoute>) -> Router {
    use axum::routing::{get, post};
    let mut router = Router::new();
    for route in extra {
        router = router.route(&route.path, route.route);
    }
    if state.settings.console {
        router = router.route("/console", get(console::page));
    }
    router
        .route(
            "/healthz",
            get(|| async { ([("content-type", "text/plain; charset=utf-8")], "ok") }),
        )
        .route("/openapi.json", get(openapi::document))
        .route("/search", get(gateway::search))
        .route("/schema", get(gateway::schema))
        .route("/call", post(gateway::call))
        .route("/batch", post(gateway::batch))
        .route("/subscribe", post(gateway::subscribe))
        .route("/alknet/call", axum::routing::any(websocket::upgrade))
        .fallback(
            |axum::extract::State(state): axum::extract::State<AppState>,
             method: axum::http::Method,
             uri: axum::http::Uri| async move {
                decoy::answer(&state.settings.decoy, &method, &uri).await
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::bearer,
        ))
        .with_state(state)
}

impl ProtocolHandler for HttpHandler {
    /// HTTP keeps one supervisor for both versions, shows browsers the web
    /// certificate, and serves a TLS client that offers no ALPN as HTTP/1.1
    /// (`docs/protocol.md` §2 rule 4).
    const PROTOCOL: Protocol = Protocol::new(&[ALPN_H2, ALPN_HTTP_1_1])
        .named("http")
        .web_certificate()
        .serving_clients_without_alpn_as(ALPN_HTTP_1_1);

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        // TCP+TLS: the one stream; QUIC: the first bidirectional stream
        // (§2 rule 7), later ones are refused.
        // The first-request clock runs from the handshake: over QUIC a
        // client that opens no stream is closed like a silent one.
        let served = self.served();
        let scope = ConnectionScope::new(connection.clone(), &served.state.settings.limits);
        let limits = &served.state.settings.limits;
        let stream = tokio::select! {
            stream = connection.accept_bi() => stream?,
            expiry = scope.activity.expired(limits, false) => {
                tracing::debug!("closing the HTTP connection: {}", expiry.describe());
                return Ok(());
            }
        };
        let Some(stream) = stream else {
            return Ok(());
        };
        if connection.quic().is_some() {
            let refuser = connection.clone();
            tokio::spawn(async move {
                while let Ok(Some(mut extra)) = refuser.accept_bi().await {
                    extra.recv.stop(alknet_core::close::PROTOCOL_ERROR);
                    extra.send.reset(alknet_core::close::PROTOCOL_ERROR);
                }
            });
        }
        let router = served.router.clone();
        let request_scope = scope.clone();
        let stealth = self.stealth.clone();
        let budget_size = limits.body_budget;
        let service =
            tower::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                // In flight until the response body is done with.
                let in_flight = request_scope.activity.request_started();
                let hidden = stealth
                    .as_ref()
                    .is_some_and(|stealth| {
                        stealth.hides(&request, request_scope.connection.remote())
                    })
                    .then(|| stealth::not_found(&request));
                request.extensions_mut().insert(request_scope.clone());
                let mut router = router.clone();
                let budget = request_scope.body_budget.clone();
                async move {
                    let response = match hidden {
                        Some(response) => response,
                        None => tower::Service::call(&mut router, request).await?,
                    };
                    let response =
                        match response_body::metered(response, &budget, budget_size, in_flight) {
                            Ok(response) => response,
                            Err(in_flight) => {
                                tracing::debug!(
                                    "connection's http_body_budget spent: reply answered 503"
                                );
                                response_body::uncharged(gateway::budget_spent(), in_flight)
                            }
                        };
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
        let service = TowerToHyperService::new(service);
        let duplex = stream.into_duplex();
        // The negotiated ALPN names the HTTP version, so there is nothing
        // to sniff; and an HTTP/1.1 upgrade hands its WebSocket the very
        // connection stream back (see `websocket`).
        let result = if connection.alpn().as_str() == ALPN_H2 {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(limits.ping_interval)
                .keep_alive_timeout(limits.ping_timeout)
                .max_concurrent_streams(limits.max_streams)
                .max_send_buf_size(limits.send_buffer)
                // RFC 8441: WebSockets over HTTP/2 (§12.1).
                .enable_connect_protocol();
            let served = builder.serve_connection(TokioIo::new(duplex), service);
            serve_bounded(&connection, &scope, limits, false, served, |served| {
                served.graceful_shutdown()
            })
            .await
        } else {
            // No hyper timer for HTTP/1.1: the watchdog keeps its time
            // limits (hyper's header timeout would also cut idle
            // keep-alive connections at the header limit).
            let mut builder = http1::Builder::new();
            builder.title_case_headers(self.stealth.is_some());
            if self.stealth.is_some() {
                let served = builder
                    .serve_connection(TokioIo::new(Http11StatusLine::new(duplex)), service)
                    .with_upgrades();
                serve_bounded(&connection, &scope, limits, true, served, |served| {
                    served.graceful_shutdown()
                })
                .await
            } else {
                let served = builder
                    .serve_connection(TokioIo::new(duplex), service)
                    .with_upgrades();
                serve_bounded(&connection, &scope, limits, true, served, |served| {
                    served.graceful_shutdown()
                })
                .await
            }
        };
        // An upgraded HTTP/1.1 connection is handed to its WebSocket and
        // hyper is done with it; the connection (and its actor, which the
        // sessions are listed under) lives until they end.
        scope.sessions.close();
        scope.sessions.wait().await;
        result.map_err(HandlerError::other)
    }
}

/// Serves `connection` until it ends, or until the node drains it: then shuts
/// it down gracefully (`shutdown`), letting requests in flight finish. A
/// connection idle past its limits, or whose peer stopped reading, is closed
/// at once. `http1`: bytes received between requests are a request's head.
async fn serve_bounded<F: Future<Output = hyper::Result<()>>>(
    connection: &Connection,
    scope: &ConnectionScope,
    limits: &ConnectionLimits,
    http1: bool,
    served: F,
    shutdown: impl FnOnce(Pin<&mut F>),
) -> hyper::Result<()> {
    tokio::pin!(served);
    tokio::select! {
        result = served.as_mut() => result,
        () = connection.draining() => {
            shutdown(served.as_mut());
            served.await
        }
        expiry = scope.activity.expired(limits, http1) => {
            tracing::debug!("closing the HTTP connection: {}", expiry.describe());
            Ok(())
        }
        () = scope.stalled.cancelled() => {
            tracing::debug!("closing the HTTP connection: its peer reads nothing");
            Ok(())
        }
    }
}

//! The `alknet/call` protocol handler: one [`CallSession`] actor per
//! connection, fed by the connection's streams.
//!
//! [`CallSession`]: crate::actor::CallSession

use std::sync::{Arc, RwLock};

use alknet_core::{Connection, HandlerError, IdentityProvider, Protocol, ProtocolHandler};

use crate::registry::Registry;
pub use crate::session_config::{SessionConfig, SessionLimits};
use crate::stream_feed::StreamFeed;

/// Serves `alknet/call` connections against a registry.
pub struct CallHandler {
    config: SessionConfig,
    /// The limits new sessions start with; replaced by a reload.
    limits: LiveSessionLimits,
}

impl CallHandler {
    /// A handler serving `registry`, resolving tokens through `identities`.
    pub fn new(
        registry: Arc<Registry>,
        identities: Arc<dyn IdentityProvider>,
        limits: SessionLimits,
    ) -> Self {
        Self {
            config: SessionConfig {
                registry,
                identities,
                limits: limits.clone(),
            },
            limits: LiveSessionLimits::new(limits),
        }
    }

    /// The cell new sessions read their limits from: what a reload writes
    /// to. Sessions already open keep the limits they started with.
    pub fn live_limits(&self) -> LiveSessionLimits {
        self.limits.clone()
    }
}

/// Session limits that may change while sessions are served. Read once when
/// a session starts, never per frame: a session runs with one set of limits
/// from its first frame to its last.
#[derive(Clone, Debug)]
pub struct LiveSessionLimits(Arc<RwLock<SessionLimits>>);

impl LiveSessionLimits {
    /// A cell holding `limits`.
    pub fn new(limits: SessionLimits) -> Self {
        Self(Arc::new(RwLock::new(limits)))
    }

    /// The limits a session starting now gets.
    pub fn get(&self) -> SessionLimits {
        // A writer that panicked left whole limits behind (`set` assigns
        // one value): still usable.
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the limits for sessions started from now on.
    pub fn set(&self, limits: SessionLimits) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }
}

impl ProtocolHandler for CallHandler {
    const PROTOCOL: Protocol = Protocol::new(&[crate::ALPN]).connection_actors_named("session");

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let config = SessionConfig {
            limits: self.limits.get(),
            ..self.config.clone()
        };
        let caller_timer = config.limits.caller_timer();
        let first_frame_timeout = config.limits.first_frame_timeout;
        let feed = StreamFeed::start(config, connection, caller_timer, tracing::Span::current())
            .await
            .map_err(HandlerError::other)?;
        feed.drive(Some(first_frame_timeout)).await;
        Ok(())
    }
}

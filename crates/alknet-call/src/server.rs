//! The `alknet/call` protocol handler: one [`CallSession`] actor per
//! connection, fed by the connection's streams.
//!
//! [`CallSession`]: crate::actor::CallSession

use std::sync::Arc;

use alknet_core::{Connection, HandlerError, IdentityProvider, Protocol, ProtocolHandler};

use crate::registry::Registry;
pub use crate::session_config::{SessionConfig, SessionLimits};
use crate::stream_feed::StreamFeed;

/// Serves `alknet/call` connections against a registry.
pub struct CallHandler {
    config: SessionConfig,
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
                limits,
            },
        }
    }
}

impl ProtocolHandler for CallHandler {
    const PROTOCOL: Protocol = Protocol::new(&[crate::ALPN]).connection_actors_named("session");

    async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
        let caller_timer = self.config.limits.caller_timer();
        let feed = StreamFeed::start(
            self.config.clone(),
            connection,
            caller_timer,
            tracing::Span::current(),
        )
        .await
        .map_err(HandlerError::other)?;
        feed.drive(Some(self.config.limits.first_frame_timeout))
            .await;
        Ok(())
    }
}

//! The `alknet/call` protocol handler: one [`CallSession`] actor per
//! connection, fed by the connection's streams.
//!
//! [`CallSession`]: crate::actor::CallSession

use std::sync::Arc;
use std::time::Duration;

use alknet_core::{Connection, HandlerError, IdentityProvider, Protocol, ProtocolHandler};

use crate::codec::DEFAULT_MAX_FRAME;
use crate::overlay::OverlayLimits;
use crate::registry::Registry;
use crate::streams::Session;

/// Per-session limits (PROTOCOL.md §15).
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Largest frame read or written.
    pub max_frame: usize,
    /// The peer's requests in flight at once.
    pub max_in_flight: usize,
    /// Deadline of a query or mutation.
    pub call_timeout: Duration,
    /// Frames queued per stream before writers wait.
    pub outgoing_queue: usize,
    /// How long one write may wait on a peer that reads nothing before the
    /// session is closed.
    pub write_stall: Duration,
    /// What the remote end may register with `session/register`; sessions
    /// sharing these limits share their node-wide budget.
    pub overlay: OverlayLimits,
    /// An accepted connection that has sent no complete frame this long
    /// after its handshake is closed (the dialling side sends first, so it
    /// keeps no such timer).
    pub first_frame_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
            max_in_flight: 256,
            call_timeout: Duration::from_secs(30),
            outgoing_queue: 1024,
            write_stall: Duration::from_secs(30),
            overlay: OverlayLimits::default(),
            first_frame_timeout: Duration::from_secs(30),
        }
    }
}

impl SessionLimits {
    /// How long a caller waits for the reply to a query or mutation it sent:
    /// the callee's deadline plus 5 s of grace (§9.2).
    pub fn caller_timer(&self) -> Duration {
        self.call_timeout + Duration::from_secs(5)
    }
}

/// What every session of one registry shares.
#[derive(Clone)]
pub struct SessionConfig {
    /// The operations this end serves.
    pub registry: Arc<Registry>,
    /// Resolves per-request tokens.
    pub identities: Arc<dyn IdentityProvider>,
    /// The limits.
    pub limits: SessionLimits,
}

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
        let session = Session::start(
            self.config.clone(),
            connection,
            caller_timer,
            tracing::Span::current(),
        )
        .await
        .map_err(HandlerError::other)?;
        session
            .drive(Some(self.config.limits.first_frame_timeout))
            .await;
        Ok(())
    }
}

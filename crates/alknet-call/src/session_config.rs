//! What a session runs with: the registry it serves, how tokens resolve, and
//! its limits. Shared by both ends — the node's protocol handler, a
//! WebSocket's session, a client.

use std::sync::Arc;

use alknet_core::IdentityProvider;

pub use crate::limits::SessionLimits;
use crate::registry::Registry;

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

//! Principals: who a connection or a request acts as.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;

/// The principal a connection or request runs as (docs/protocol.md §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// A stable name, e.g. `admin`, `alice`, or a peer node's id.
    pub id: String,
    /// Scopes granted, e.g. `admin`, `fs:read`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Per resource type, the actions granted (e.g. `repo` → `read`, `push`).
    #[serde(default)]
    pub resources: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// An identity with the given id and scopes and no resource grants.
    pub fn new(id: impl Into<String>, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            id: id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            resources: BTreeMap::new(),
        }
    }

    /// Whether the identity holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Resolves credentials to identities.
///
/// Implementations are consulted on every new connection (fingerprint) and for
/// bearer tokens, so they must be quick and must not block on the network.
pub trait IdentityProvider: Send + Sync + 'static {
    /// The identity configured for a client certificate, if any.
    fn resolve_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity>;

    /// The identity a bearer token stands for; `None` when the token is unknown,
    /// expired or revoked.
    fn resolve_token(&self, token: &str) -> Option<Identity>;
}

/// A provider that knows nobody: every connection is anonymous.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIdentities;

impl IdentityProvider for NoIdentities {
    fn resolve_fingerprint(&self, _: &Fingerprint) -> Option<Identity> {
        None
    }

    fn resolve_token(&self, _: &str) -> Option<Identity> {
        None
    }
}

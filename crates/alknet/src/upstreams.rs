//! `[[upstreams]]`: importing other nodes' operations (`from_call`) while the
//! node runs.
//!
//! A hub must not depend on its spokes to start, so each import runs in the
//! background and is retried with backoff until it succeeds; its operations
//! join the registry then. A name collision will not fix itself: it is logged
//! once as an error and that upstream is left out.

use std::sync::Arc;
use std::time::Duration;

use alknet_call::Registry;
use alknet_call::client::Transport;
use alknet_call::from_call::{self, ImportError, UpstreamOptions};
use alknet_call::registry::Visibility;
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, NodeId, NodeKey};
use anyhow::Context;

use crate::sections::upstreams::{UpstreamTransport, Upstreams};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// The import options of every configured upstream. Without a token, this
/// node's key is presented as a client certificate.
pub fn options(upstreams: &Upstreams, node_key: &NodeKey) -> anyhow::Result<Vec<UpstreamOptions>> {
    upstreams
        .0
        .iter()
        .map(|upstream| {
            let verification = match &upstream.pin {
                Some(pin) => {
                    let id: NodeId = pin
                        .parse()
                        .with_context(|| format!("upstream {}: pin", upstream.address))?;
                    ServerVerification::Pin(Fingerprint::Ed25519(id.0))
                }
                None => ServerVerification::Insecure,
            };
            Ok(UpstreamOptions {
                addr: upstream.address,
                transport: match upstream.transport {
                    UpstreamTransport::Quic => Transport::Quic,
                    UpstreamTransport::Tcp => Transport::Tcp,
                },
                verification,
                token: upstream.token.clone(),
                client_key_seed: upstream.token.is_none().then(|| node_key.seed()),
                prefix: upstream.prefix.clone(),
                visibility: if upstream.external {
                    Visibility::External
                } else {
                    Visibility::Internal
                },
                idle_timeout: upstream.idle_timeout,
            })
        })
        .collect()
}

/// Imports from one upstream, retrying until it answers.
pub async fn import(registry: Arc<Registry>, options: UpstreamOptions) {
    let addr = options.addr;
    let mut delay = FIRST_RETRY;
    loop {
        match from_call::import(&registry, options.clone()).await {
            Ok(names) => {
                tracing::info!(upstream = %addr, operations = ?names, "imported from upstream");
                return;
            }
            Err(error @ ImportError::Register { .. }) => {
                tracing::error!(upstream = %addr, "{error}; this upstream is not imported");
                return;
            }
            Err(error) => {
                tracing::warn!(upstream = %addr, "{error}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LAST_RETRY);
            }
        }
    }
}

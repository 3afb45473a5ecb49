//! `[[upstreams]]`: importing other nodes' operations (`from_call`) while the
//! node runs.
//!
//! A hub must not depend on its spokes to start, so each import runs in the
//! background and is retried with backoff until it succeeds; its operations
//! join the registry then. A name collision will not fix itself: it is logged
//! once as an error and that upstream is left out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alknet_call::Registry;
use alknet_call::client::Transport;
use alknet_call::from_call::{self, ImportError, Locate, UpstreamOptions};
use alknet_call::registry::Visibility;
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, NodeId, NodeKey};
use anyhow::Context;

use crate::sections::upstreams::{UpstreamTransport, Upstreams};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// The import options of every configured upstream, each with the label
/// its log lines carry (its address, or the node id it is found by).
/// Without a token, this node's key is presented as a client certificate.
/// An upstream without an address is found through `resolver` (pkarr).
pub fn options(
    upstreams: &Upstreams,
    node_key: &NodeKey,
    resolver: Option<&Arc<alknet_dns::Resolver>>,
) -> anyhow::Result<Vec<(String, UpstreamOptions)>> {
    upstreams
        .0
        .iter()
        .map(|upstream| {
            let label = match (&upstream.address, &upstream.pin) {
                (Some(address), _) => address.to_string(),
                (None, Some(pin)) => pin.clone(),
                (None, None) => "?".to_owned(),
            };
            let verification = match &upstream.pin {
                Some(pin) => {
                    let id: NodeId = pin
                        .parse()
                        .with_context(|| format!("upstream {label}: pin"))?;
                    ServerVerification::Pin(Fingerprint::Ed25519(id.0))
                }
                None => ServerVerification::Insecure,
            };
            let locate: Option<Arc<dyn Locate>> = match (&upstream.address, &upstream.pin) {
                (Some(_), _) => None,
                (None, Some(pin)) => {
                    let resolver = resolver.with_context(|| {
                        format!("upstream {label}: no address, and pkarr, which would find it, is off ([dns] enabled = false)")
                    })?;
                    let key = alknet_dns::locate::key_of(pin)
                        .with_context(|| format!("upstream {label}: pin"))?;
                    Some(Arc::new(PkarrLocate {
                        resolver: resolver.clone(),
                        key,
                    }))
                }
                (None, None) => anyhow::bail!("upstream {label}: no address and no pin"),
            };
            let options = UpstreamOptions {
                addr: upstream
                    .address
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                locate,
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
            };
            Ok((label, options))
        })
        .collect()
}

/// Finds an upstream named by node id from its pkarr record, before each
/// dial: a node that moved is found at its new address once its record
/// says so (and this node's cached copy of the record has expired).
struct PkarrLocate {
    resolver: Arc<alknet_dns::Resolver>,
    key: pkarr::PublicKey,
}

impl Locate for PkarrLocate {
    fn locate(&self) -> futures::future::BoxFuture<'_, Result<SocketAddr, String>> {
        Box::pin(async move {
            let located = alknet_dns::locate::locate(&self.resolver, &self.key)
                .await
                .map_err(|error| error.to_string())?;
            tracing::debug!(node = %located.node_id, addresses = ?located.addresses, "upstream located through pkarr");
            located
                .addresses
                .first()
                .copied()
                .ok_or_else(|| "its record lists no address".to_owned())
        })
    }
}

/// Imports from one upstream, retrying until it answers.
pub async fn import(registry: Arc<Registry>, (addr, options): (String, UpstreamOptions)) {
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

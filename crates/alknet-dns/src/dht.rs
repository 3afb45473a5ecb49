//! The Mainline DHT (BitTorrent's, BEP 44 mutable items) as a pkarr
//! transport beside the relays: the node's packet is put there, and keys
//! nobody's relay knows are looked up there, so nodes find each other by key
//! alone without a registry of our own.
//!
//! pkarr's [`DhtClient`] does the protocol (mainline's routing table, the
//! iterative queries, BEP 44 signatures, which are the packet's own); this
//! module bounds it in time and turns its outcomes into what the resolver
//! and the publisher need. The DHT node is IPv4 only (mainline's), answers
//! other nodes' queries once it finds itself reachable, and binds
//! `[pkarr] dht_listen` (default: port 6881, else any).

use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

use pkarr::dht::{DhtClient, DhtConfig, ResolveError};
use pkarr::{PublicKey, SignedPacket};

/// How long a lookup or a publication may take (a mainnet lookup takes one
/// to three seconds; a publication is a lookup and then puts).
pub const DHT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the DHT could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A bootstrap node's name did not resolve to an IPv4 address.
    #[error("DHT bootstrap node {0:?} has no IPv4 address (host:port expected)")]
    Bootstrap(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind the DHT socket: {0}")]
    Bind(#[source] std::io::Error),
}

/// Why a publication did not reach the DHT.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No answer within [`DHT_TIMEOUT`].
    #[error("the DHT did not answer within {}s", DHT_TIMEOUT.as_secs())]
    Timeout,
    /// What mainline reported.
    #[error(transparent)]
    Dht(#[from] pkarr::dht::PublishError),
}

/// The node's DHT client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dht {
    client: DhtClient,
}

impl Dht {
    /// Joins the DHT through `bootstrap` (`host:port`; empty: mainline's
    /// public bootstrap nodes), on `listen` (none: port 6881, else any).
    pub fn start(bootstrap: &[String], listen: Option<SocketAddrV4>) -> Result<Self, StartError> {
        let mut config = DhtConfig::default();
        if !bootstrap.is_empty() {
            config.bootstrap = Some(ipv4_addresses(bootstrap)?);
        }
        if let Some(listen) = listen {
            config.bind_address = Some(*listen.ip());
            config.port = Some(listen.port());
        }
        let client = DhtClient::build(config).map_err(StartError::Bind)?;
        Ok(Self { client })
    }

    /// Where the DHT socket is bound.
    pub async fn local_addr(&self) -> SocketAddrV4 {
        self.client.info().await.local_addr()
    }

    /// Puts `packet` on the nodes closest to its key; returns how many took it.
    pub async fn publish(&self, packet: &SignedPacket) -> Result<u32, PublishError> {
        match tokio::time::timeout(DHT_TIMEOUT, self.client.publish(packet)).await {
            Ok(stored) => Ok(stored?),
            Err(_) => Err(PublishError::Timeout),
        }
    }

    /// The newest valid packet of `key` on the DHT: `Ok(None)` when the
    /// nodes that answered have none, `Err(())` when none answered in time.
    pub async fn resolve(&self, key: &PublicKey) -> Result<Option<SignedPacket>, ()> {
        let lookup = async {
            let response = self.client.resolve(key, None).await;
            let first = response.first().cloned();
            let outcome = response.complete().await;
            match outcome.most_recent {
                Ok(packet) => Ok(Some(packet)),
                Err(ResolveError::NoNodesQueried | ResolveError::NoNodesResponded) => {
                    // Nothing to compare it with: the first answer stands.
                    first.map(Some).ok_or(())
                }
                // A newer item that is not a valid packet supersedes older
                // ones (BEP 44 sequence numbers): the key has no usable packet.
                Err(_) => Ok(None),
            }
        };
        tokio::time::timeout(DHT_TIMEOUT, lookup)
            .await
            .map_err(|_| {
                tracing::debug!(key = %key.to_z32(), "DHT lookup timed out");
            })?
    }
}

/// `host:port` strings as the IPv4 socket addresses mainline takes.
fn ipv4_addresses(nodes: &[String]) -> Result<Vec<SocketAddrV4>, StartError> {
    let mut addresses = Vec::new();
    for node in nodes {
        let before = addresses.len();
        if let Ok(resolved) = node.to_socket_addrs() {
            addresses.extend(resolved.filter_map(|address| match address {
                SocketAddr::V4(v4) => Some(v4),
                SocketAddr::V6(_) => None,
            }));
        }
        if addresses.len() == before {
            return Err(StartError::Bootstrap(node.clone()));
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_nodes_must_be_ipv4_host_ports() {
        let addresses = ipv4_addresses(&["127.0.0.1:6881".to_owned()]).unwrap();
        assert_eq!(addresses, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert!(matches!(
            ipv4_addresses(&["[::1]:6881".to_owned()]),
            Err(StartError::Bootstrap(_))
        ));
        assert!(matches!(
            ipv4_addresses(&["no-port".to_owned()]),
            Err(StartError::Bootstrap(_))
        ));
    }
}

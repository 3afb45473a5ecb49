//! The node's own signed packet, and the services that keep it published
//! and the resolver's cache trimmed.
//!
//! The packet is signed with the node key, so its z-base-32 form is the
//! node's DNS name (`<z32>.`), and holds:
//! - `A`/`AAAA` at the apex: the addresses the node is reached at
//!   (`[pkarr] addresses`, else the listen address when it is specific);
//! - `_alknet` `TXT`: `v=1`, `id=ed25519:<hex>`, `port=<port>` and
//!   `alpns=<alpn,…>`, what another node needs to dial it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use alknet_core::service::{Service, ServiceError};
use pkarr::dns::Name;
use pkarr::dns::rdata::TXT;
use pkarr::{Keypair, SignedPacket};

use crate::packets::PutError;
use crate::relay::MEDIA_TYPE;
use crate::resolver::{RELAY_TIMEOUT, Resolver, error_chain};

/// The record owner of the node's dialing details.
pub const ALKNET_LABEL: &str = "_alknet";
/// How soon a failed publication is tried again.
const RETRY: Duration = Duration::from_secs(60);
/// How often the resolver's cache is swept.
const SWEEP: Duration = Duration::from_secs(30);

/// What the node's packet says about it.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    /// `ed25519:<hex>`.
    pub node_id: String,
    /// The port QUIC and TCP+TLS listen on.
    pub port: u16,
    /// The addresses to publish.
    pub addresses: Vec<IpAddr>,
    /// The ALPNs served.
    pub alpns: Vec<String>,
    /// The records' TTL.
    pub ttl: u32,
}

impl NodeRecord {
    /// The addresses worth publishing for a node listening on `listen`: the
    /// configured ones, else the listen address unless it is unspecified.
    pub fn addresses_for(configured: &[IpAddr], listen: SocketAddr) -> Vec<IpAddr> {
        if !configured.is_empty() {
            return configured.to_vec();
        }
        if listen.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![listen.ip()]
        }
    }

    /// The packet, signed now with `keypair`.
    pub fn sign(&self, keypair: &Keypair) -> Result<SignedPacket, String> {
        let strings = [
            "v=1".to_owned(),
            format!("id={}", self.node_id),
            format!("port={}", self.port),
            format!("alpns={}", self.alpns.join(",")),
        ];
        let mut txt = TXT::new();
        for string in &strings {
            txt.add_string(string).map_err(|error| error.to_string())?;
        }
        let mut builder = SignedPacket::builder().txt(
            Name::new_unchecked(ALKNET_LABEL),
            txt.into_owned(),
            self.ttl,
        );
        for address in &self.addresses {
            builder = builder.address(Name::new_unchecked("."), *address, self.ttl);
        }
        builder.sign(keypair).map_err(|error| error.to_string())
    }
}

/// `service/pkarr-publisher`: signs the node's packet, keeps it in the
/// node's own store (so its relay and its DNS answer it), PUTs it to each
/// configured relay and puts it on the DHT when the node is on it; again
/// before its records expire, and a minute after a failure.
pub struct Publisher {
    keypair: Keypair,
    /// What to publish: known once the node listens (its port, its ALPNs).
    record: tokio::sync::watch::Receiver<Option<NodeRecord>>,
    /// Its store, relays, HTTP client and DHT are where the packet goes.
    resolver: Arc<Resolver>,
    interval: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("record", &self.record)
            .field("relays", &self.resolver.relays())
            .field("dht", &self.resolver.dht().is_some())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes the record `record` holds (once it holds one), signed with
    /// the node's `seed`, to `resolver`'s store, relays and DHT.
    pub fn new(
        seed: &[u8; 32],
        record: tokio::sync::watch::Receiver<Option<NodeRecord>>,
        resolver: Arc<Resolver>,
        interval: Duration,
    ) -> Self {
        Self {
            keypair: Keypair::from_secret_key(seed),
            record,
            resolver,
            interval,
        }
    }

    /// The node's z-base-32 name.
    pub fn z32(&self) -> String {
        self.keypair.public_key().to_z32()
    }

    /// Signs `record` and stores the packet, where the node's relay and its
    /// DNS answers find it.
    async fn publish_locally(&self, record: &NodeRecord) -> Result<SignedPacket, ServiceError> {
        let packet = record.sign(&self.keypair).map_err(ServiceError::new)?;
        match self.resolver.store().put(packet.clone()).await {
            Ok(()) | Err(PutError::NotNewer) => Ok(packet),
            Err(error) => Err(ServiceError::new(error)),
        }
    }

    /// PUTs `packet` to every relay and puts it on the DHT; true when all
    /// took it.
    async fn publish_remotely(&self, packet: &SignedPacket) -> bool {
        let mut all = true;
        if let Some(dht) = self.resolver.dht() {
            match dht.publish(packet).await {
                Ok(nodes) => tracing::debug!(nodes, "pkarr packet put on the DHT"),
                Err(error) => {
                    all = false;
                    tracing::warn!("the DHT did not take the node's pkarr packet: {error}");
                }
            }
        }
        for relay in self.resolver.relays() {
            let url = format!("{relay}/{}", self.z32());
            let sent = self
                .resolver
                .http()
                .put(&url)
                .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
                .timeout(RELAY_TIMEOUT)
                .body(packet.to_relay_payload())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(%url, "pkarr packet published");
                }
                Ok(response) => {
                    all = false;
                    tracing::warn!(%url, status = %response.status(), "pkarr relay refused the node's packet");
                }
                Err(error) => {
                    all = false;
                    tracing::warn!(%url, "pkarr relay unreachable: {}", error_chain(&error));
                }
            }
        }
        all
    }
}

impl Service for Publisher {
    const NAME: &'static str = "pkarr-publisher";

    async fn run(&self) -> Result<(), ServiceError> {
        let mut record = self.record.clone();
        loop {
            let current = record
                .wait_for(Option::is_some)
                .await
                .map_err(ServiceError::new)?
                .clone()
                .ok_or_else(|| ServiceError::new("no record"))?;
            let packet = self.publish_locally(&current).await?;
            let wait = if self.publish_remotely(&packet).await {
                self.interval
            } else {
                RETRY.min(self.interval)
            };
            // A new record (a reload) is published at once.
            if let Ok(Err(_)) = tokio::time::timeout(wait, record.changed()).await {
                // Nobody can change it any more: republish on time only.
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// `service/pkarr-cache`: sweeps expired entries from the resolver's cache.
#[derive(Debug)]
pub struct CacheSweeper(pub Arc<Resolver>);

impl Service for CacheSweeper {
    const NAME: &'static str = "pkarr-cache";

    async fn run(&self) -> Result<(), ServiceError> {
        loop {
            tokio::time::sleep(SWEEP).await;
            let left = self.0.expire();
            tracing::trace!(cached = left, "pkarr cache swept");
        }
    }
}

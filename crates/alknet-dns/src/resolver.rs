//! Finding the signed packet of any pkarr key: the node's own store first
//! (its own packet, and what clients published to its relay), then a cache,
//! then the configured relays and the Mainline DHT, asked at once; the
//! newest valid answer wins.
//!
//! Every bound is explicit: the cache holds at most `cache_size` keys,
//! each for its packet's TTL (a miss for a minute), at most
//! [`MAX_FETCHES`] fetches run at once (more fail at once: SERVFAIL rather
//! than a queue an attacker can fill with random keys), a relay has
//! [`RELAY_TIMEOUT`] to answer and [`MAX_PAYLOAD`](crate::relay::MAX_PAYLOAD)
//! bytes to answer with, the DHT [`DHT_TIMEOUT`](crate::dht::DHT_TIMEOUT).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::join_all;
use pkarr::{PublicKey, SignedPacket};
use tokio::sync::Semaphore;

use crate::dht::Dht;
use crate::packets::PacketStore;
use crate::relay::MAX_PAYLOAD;

/// How long one relay has to answer.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(5);
/// Fetches from relays in progress at once, node-wide.
pub const MAX_FETCHES: usize = 32;
/// How long a key no relay knows is remembered as unknown.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// Why a key could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Every fetch slot is taken.
    #[error("too many pkarr lookups in progress")]
    Busy,
    /// Neither a relay nor the DHT answered.
    #[error("no relay and no DHT node answered")]
    Unreachable,
}

#[derive(Debug)]
struct Cached {
    packet: Option<SignedPacket>,
    expires: Instant,
}

/// Resolves pkarr keys to their signed packets.
#[derive(Debug)]
pub struct Resolver {
    store: Arc<PacketStore>,
    relays: Vec<String>,
    http: reqwest::Client,
    dht: Option<Dht>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    cache_size: usize,
    fetches: Semaphore,
}

impl Resolver {
    /// A resolver over `store`, asking `relays` (base URLs, the key is
    /// appended) with `http`, and `dht` when the node is on it.
    pub fn new(
        store: Arc<PacketStore>,
        relays: Vec<String>,
        http: reqwest::Client,
        dht: Option<Dht>,
        cache_size: usize,
    ) -> Self {
        Self {
            store,
            // Keys are appended to the base URLs: no final `/`.
            relays: relays
                .into_iter()
                .map(|relay| relay.trim_end_matches('/').to_owned())
                .collect(),
            http,
            dht,
            cache: Mutex::new(HashMap::new()),
            cache_size,
            fetches: Semaphore::new(MAX_FETCHES),
        }
    }

    /// The packets the node stores: its own and its relay clients'.
    pub fn store(&self) -> &Arc<PacketStore> {
        &self.store
    }

    /// The DHT, when the node is on it.
    pub fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref()
    }

    /// The relays' base URLs, without a final `/`.
    pub fn relays(&self) -> &[String] {
        &self.relays
    }

    /// The client relays are reached with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The packet of `key` if it is known without asking anyone: stored, or
    /// cached and fresh. `Some(None)`: known to be unknown.
    pub fn known(&self, key: &PublicKey) -> Option<Option<SignedPacket>> {
        if let Some(packet) = self.store.get(key) {
            return Some(Some(packet));
        }
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = cache.get(&key.to_bytes())?;
        (cached.expires > Instant::now()).then(|| cached.packet.clone())
    }

    /// The packet of `key`: stored, cached, or fetched from the relays and
    /// the DHT.
    pub async fn resolve(&self, key: &PublicKey) -> Result<Option<SignedPacket>, ResolveError> {
        self.resolve_from(key, true).await
    }

    /// The packet of `key`: stored, cached, or fetched from the DHT only.
    /// What the node's relay answers for keys it does not store: never
    /// another relay, so two relays that name each other cannot loop.
    pub async fn resolve_on_dht(
        &self,
        key: &PublicKey,
    ) -> Result<Option<SignedPacket>, ResolveError> {
        self.resolve_from(key, false).await
    }

    async fn resolve_from(
        &self,
        key: &PublicKey,
        with_relays: bool,
    ) -> Result<Option<SignedPacket>, ResolveError> {
        if let Some(known) = self.known(key) {
            return Ok(known);
        }
        let relays: &[String] = if with_relays { &self.relays } else { &[] };
        if relays.is_empty() && self.dht.is_none() {
            return Ok(None);
        }
        let _slot = self.fetches.try_acquire().map_err(|_| ResolveError::Busy)?;
        let from_dht = async {
            match &self.dht {
                Some(dht) => Some(dht.resolve(key).await),
                None => None,
            }
        };
        let (mut answers, from_dht) = tokio::join!(
            join_all(relays.iter().map(|relay| self.fetch(relay, key))),
            from_dht
        );
        answers.extend(from_dht);
        let reached = answers.iter().any(Result::is_ok);
        let newest = answers
            .into_iter()
            .filter_map(Result::ok)
            .flatten()
            .reduce(|a, b| if b.more_recent_than(&a) { b } else { a });
        if !reached {
            return Err(ResolveError::Unreachable);
        }
        // A miss is remembered only when every source was asked: the
        // relays a DHT-only lookup skipped may still know the key.
        if newest.is_some() || relays.len() == self.relays.len() {
            self.remember(key, newest.clone());
        }
        Ok(newest)
    }

    /// One relay's packet for `key`: `Ok(None)` when it has none.
    async fn fetch(&self, relay: &str, key: &PublicKey) -> Result<Option<SignedPacket>, ()> {
        let url = format!("{relay}/{}", key.to_z32());
        let response = self
            .http
            .get(&url)
            .timeout(RELAY_TIMEOUT)
            .send()
            .await
            .map_err(|error| {
                tracing::debug!(%url, "pkarr relay unreachable: {}", error_chain(&error));
            })?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            tracing::debug!(%url, status = %response.status(), "pkarr relay refused");
            return Err(());
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_PAYLOAD as u64)
        {
            return Err(());
        }
        let body = response.bytes().await.map_err(|_| ())?;
        if body.len() > MAX_PAYLOAD {
            return Err(());
        }
        // A relay cannot forge: the packet must verify for the key asked.
        match SignedPacket::from_relay_payload(key, &body) {
            Ok(packet) => Ok(Some(packet)),
            Err(error) => {
                tracing::info!(%url, "pkarr relay sent an invalid packet: {error}");
                Err(())
            }
        }
    }

    fn remember(&self, key: &PublicKey, packet: Option<SignedPacket>) {
        let lifetime = match &packet {
            Some(packet) => Duration::from_secs(u64::from(
                packet.ttl(pkarr::DEFAULT_MINIMUM_TTL, pkarr::DEFAULT_MAXIMUM_TTL),
            )),
            None => NEGATIVE_TTL,
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.cache_size {
            let now = Instant::now();
            cache.retain(|_, cached| cached.expires > now);
            if cache.len() >= self.cache_size {
                // Still full of live entries: make room by dropping one.
                if let Some(victim) = cache.keys().next().copied() {
                    cache.remove(&victim);
                }
            }
        }
        cache.insert(
            key.to_bytes(),
            Cached {
                packet,
                expires: Instant::now() + lifetime,
            },
        );
    }

    /// Drops expired cache entries; returns how many remain.
    pub fn expire(&self) -> usize {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|_, cached| cached.expires > now);
        cache.len()
    }
}

/// `error` and its causes, `: `-separated (reqwest's own message names only
/// the request; the cause — a refused connection, an unknown certificate —
/// is what an operator needs).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! Authoritative DNS for the node's zones.
//!
//! One query path ([`answer`]) behind five transports, each framed here
//! (hickory-proto parses and builds the messages; hickory-server cannot take
//! a connection the node already accepted):
//! - DNS over QUIC, RFC 9250 ([`DoqHandler`], ALPN `doq`, QUIC only);
//! - DNS over TLS, RFC 7858 ([`DotHandler`], ALPN `dot`, TCP+TLS only), whose
//!   framing also serves plain DNS over TCP (`[dns] listen`);
//! - DNS over HTTPS, RFC 8484 ([`doh`], `/dns-query` on the HTTP handler);
//! - plain DNS over UDP ([`UdpDns`], a node service), with response-rate
//!   limiting ([`rate`]) so the node cannot be used as an amplifier.
//!
//! Zones live in memory ([`zone`]) and on disk as master files ([`store`]),
//! changed through the call operations `dns/*` ([`ops`]).
//!
//! pkarr names (`<z32>.`) are answered from signed packets: the node's own
//! ([`publish`]), those stock clients PUT to its relay ([`relay`]), and
//! others' fetched from relays and the Mainline DHT ([`resolver`], [`dht`]).
#![warn(missing_docs)]

pub mod answer;
pub mod config;
pub mod dht;
pub mod doh;
mod doq;
mod dot;
mod durable;
pub mod locate;
pub mod ops;
pub mod packets;
pub mod publish;
pub mod rate;
pub mod relay;
pub mod resolver;
pub mod store;
pub mod udp;
pub mod zone;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use answer::{Answerer, Reply, Transport};
pub use config::{DnsSection, PkarrSection};
pub use dht::Dht;
pub use doq::DoqHandler;
pub use dot::DotHandler;
pub use resolver::Resolver;
pub use store::{StoreError, ZoneStore};
pub use udp::UdpDns;

/// The ALPN of DNS over QUIC (RFC 9250 §4.1.1).
pub const DOQ_ALPN: &str = "doq";
/// The ALPN of DNS over TLS (RFC 7858 §3.2, registered by RFC 9250 §9.1).
pub const DOT_ALPN: &str = "dot";

/// The DNS service: the zones, the query path and the settings every
/// transport shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dns {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<ZoneStore>,
    answerer: Answerer,
    section: DnsSection,
    resolver: Option<Arc<Resolver>>,
}

impl Dns {
    /// Loads the zones `section` names from `<data_dir>/dns/zones`.
    pub fn new(section: &DnsSection, data_dir: &Path) -> Result<Self, StoreError> {
        Self::with_pkarr(section, data_dir, None)
    }

    /// [`Self::new`], answering pkarr names through `resolver` too; `own` is
    /// the node's key, whose answers are authoritative.
    pub fn with_pkarr(
        section: &DnsSection,
        data_dir: &Path,
        pkarr: Option<(Arc<Resolver>, pkarr::PublicKey)>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(ZoneStore::open(
            &Self::zone_dir(data_dir),
            &section.origins(),
        )?);
        let mut answerer = Answerer::new(store.clone());
        let mut resolver = None;
        if let Some((pkarr_resolver, own)) = pkarr {
            answerer = answerer.with_pkarr(pkarr_resolver.clone(), Some(own));
            resolver = Some(pkarr_resolver);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                answerer,
                store,
                section: section.clone(),
                resolver,
            }),
        })
    }

    /// Where the pkarr packets of a data directory live.
    pub fn packet_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("dns").join("pkarr")
    }

    /// The pkarr resolver, when pkarr names are answered.
    pub fn resolver(&self) -> Option<&Arc<Resolver>> {
        self.inner.resolver.as_ref()
    }

    /// Where the zone files of a data directory live.
    pub fn zone_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("dns").join("zones")
    }

    /// The query path.
    pub fn answerer(&self) -> &Answerer {
        &self.inner.answerer
    }

    /// The zones.
    pub fn store(&self) -> &Arc<ZoneStore> {
        &self.inner.store
    }

    /// The settings it was started with.
    pub fn section(&self) -> &DnsSection {
        &self.inner.section
    }
}

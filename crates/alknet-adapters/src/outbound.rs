//! The one outbound HTTP client every HTTP importer shares.
//!
//! Imported operations call third-party APIs; doing that well is the same job
//! for all of them, so it is done once: a pooled reqwest client (one
//! connection pool per host, kept across calls), transient failures (connect
//! errors, 408, 429, 5xx) retried with exponential backoff, and a per-URL
//! `Retry-After` gate. When a 429 or 503 says `Retry-After` (seconds or an
//! HTTP date), no request to that URL leaves this node before that moment —
//! neither the retry nor a later call — because hammering an API that asked
//! for quiet gets a node banned.
//!
//! TLS is rustls with the node's crypto provider (ring): the Mozilla roots
//! plus an optional CA bundle, and an optional client certificate. Imports
//! that talk to a self-signed peer (another alknet node in a lab) may opt out
//! of verification per import (`insecure`).
//!
//! [`Outbound::swap`] rebuilds the clients from new settings and swaps them in
//! atomically: calls in flight finish on the old pool, the next call uses the
//! new one, and the `Retry-After` gate survives the swap.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use alknet_core::tls::ServerVerification;
use axum::http::Extensions;
use reqwest::header::RETRY_AFTER;
use reqwest_middleware::{ClientWithMiddleware, Middleware, Next};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

/// The longest `Retry-After` honoured; a server asking for more is waited on
/// for this long (a call would time out long before anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How many URLs the `Retry-After` gate remembers before it forgets expired ones.
const GATE_PRUNE_AT: usize = 1024;

/// Settings of the outbound client (`[import.client]` in `alknet.toml`).
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// Deadline of one request/response exchange (not of an SSE stream).
    pub timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
    /// Retries of a transient failure (0 disables retrying).
    pub retries: u32,
    /// First backoff delay; each retry doubles it (with jitter).
    pub backoff: Duration,
    /// Extra trust anchors, beyond the Mozilla roots.
    pub ca_bundle: Vec<CertificateDer<'static>>,
    /// A client certificate chain and key to present.
    pub client_identity: Option<ClientIdentity>,
}

/// A client certificate and its key.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Default for OutboundSettings {
    /// Also the defaults of `[import.client]`, which the template of
    /// `alknet init` documents.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retries: 3,
            backoff: Duration::from_millis(100),
            ca_bundle: Vec::new(),
            client_identity: None,
        }
    }
}

/// Why outbound settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// reqwest could not build the client.
    #[error("HTTP client: {0}")]
    Client(String),
}

impl OutboundSettings {
    /// Reads a PEM CA bundle into the settings.
    pub fn load_ca_bundle(&mut self, path: &Path) -> Result<(), OutboundError> {
        let pem_error = |reason: String| OutboundError::Pem {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| pem_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(pem_error("no CERTIFICATE block".to_owned()));
        }
        self.ca_bundle = certs;
        Ok(())
    }

    /// Reads a PEM client certificate chain and key into the settings.
    pub fn load_client_identity(&mut self, cert: &Path, key: &Path) -> Result<(), OutboundError> {
        let pem_error = |path: &Path, reason: String| OutboundError::Pem {
            path: path.display().to_string(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_error(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_error(cert, "no CERTIFICATE block".to_owned()));
        }
        // Never echo key material: only say what is wrong.
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|_| pem_error(key, "no readable PEM private key".to_owned()))?;
        self.client_identity = Some(ClientIdentity { chain, key });
        Ok(())
    }
}

/// One set of built clients: verifying, and not verifying the server.
struct Clients {
    verified: ClientWithMiddleware,
    insecure: ClientWithMiddleware,
    raw_verified: reqwest::Client,
    raw_insecure: reqwest::Client,
    settings: OutboundSettings,
}

/// The shared outbound client. Cheap to clone handles via `Arc`.
pub struct Outbound {
    clients: RwLock<Arc<Clients>>,
    gate: Arc<RetryAfterGate>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

impl Outbound {
    /// Builds the clients.
    pub fn new(settings: OutboundSettings) -> Result<Self, OutboundError> {
        let gate = Arc::new(RetryAfterGate::default());
        let clients = build(&settings, &gate)?;
        Ok(Self {
            clients: RwLock::new(Arc::new(clients)),
            gate,
        })
    }

    /// Rebuilds the clients from `settings` and swaps them in; on error the
    /// current clients stay.
    pub fn swap(&self, settings: OutboundSettings) -> Result<(), OutboundError> {
        let clients = Arc::new(build(&settings, &self.gate)?);
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = clients;
        Ok(())
    }

    fn current(&self) -> Arc<Clients> {
        self.clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The client with retries and the `Retry-After` gate.
    pub fn client(&self, insecure: bool) -> ClientWithMiddleware {
        let clients = self.current();
        if insecure {
            clients.insecure.clone()
        } else {
            clients.verified.clone()
        }
    }

    /// The plain pooled client (same TLS and timeouts, no retries): for
    /// protocols that manage their own retries (the MCP client transport).
    pub fn raw_client(&self, insecure: bool) -> reqwest::Client {
        let clients = self.current();
        if insecure {
            clients.raw_insecure.clone()
        } else {
            clients.raw_verified.clone()
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> OutboundSettings {
        self.current().settings.clone()
    }
}

fn build(
    settings: &OutboundSettings,
    gate: &Arc<RetryAfterGate>,
) -> Result<Clients, OutboundError> {
    let raw_verified = reqwest_client(settings, tls_config(settings, false)?)?;
    let raw_insecure = reqwest_client(settings, tls_config(settings, true)?)?;
    let with_middleware = |client: reqwest::Client| {
        let policy = ExponentialBackoff::builder()
            .retry_bounds(settings.backoff, settings.backoff.saturating_mul(64))
            .build_with_max_retries(settings.retries);
        reqwest_middleware::ClientBuilder::new(client)
            .with(RetryTransientMiddleware::new_with_policy(policy))
            .with_arc(gate.clone())
            .build()
    };
    Ok(Clients {
        verified: with_middleware(raw_verified.clone()),
        insecure: with_middleware(raw_insecure.clone()),
        raw_verified,
        raw_insecure,
        settings: settings.clone(),
    })
}

fn reqwest_client(
    settings: &OutboundSettings,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, OutboundError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("alknet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OutboundError::Client(e.to_string()))
}

fn tls_config(
    settings: &OutboundSettings,
    insecure: bool,
) -> Result<rustls::ClientConfig, OutboundError> {
    let tls_error = |e: rustls::Error| OutboundError::Tls(e.to_string());
    // The HTTP versions reqwest speaks, preferred first.
    let alpns = [
        alknet_core::Alpn::new("h2"),
        alknet_core::Alpn::new("http/1.1"),
    ];
    if insecure {
        // The node's own "accept any certificate" verifier; a client
        // certificate is not presented to a server nobody verified.
        return alknet_core::tls::client_config(ServerVerification::Insecure, None, &alpns, false)
            .map_err(|e| OutboundError::Tls(e.to_string()));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in &settings.ca_bundle {
        roots.add(cert.clone()).map_err(tls_error)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(alknet_core::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(roots);
    let mut config = match &settings.client_identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(tls_error)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(config)
}

/// Remembers, per URL, the moment before which no request may be sent
/// (`Retry-After` of a 429 or 503), and holds requests until then.
#[derive(Default)]
struct RetryAfterGate {
    not_before: Mutex<HashMap<String, Instant>>,
}

impl RetryAfterGate {
    fn key(url: &reqwest::Url) -> String {
        // Per URL, without the query: `/pets?limit=1` and `/pets?limit=2`
        // are the same resource to a rate limiter.
        format!(
            "{}://{}:{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0),
            url.path()
        )
    }

    fn wait_until(&self, key: &str) -> Option<Instant> {
        let map = self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).copied().filter(|at| *at > Instant::now())
    }

    fn hold(&self, key: String, delay: Duration) {
        let mut map = self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if map.len() >= GATE_PRUNE_AT {
            map.retain(|_, at| *at > now);
        }
        let at = now + delay.min(MAX_RETRY_AFTER);
        let entry = map.entry(key).or_insert(at);
        *entry = (*entry).max(at);
    }
}

#[async_trait::async_trait]
impl Middleware for RetryAfterGate {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let key = Self::key(request.url());
        if let Some(at) = self.wait_until(&key) {
            tokio::time::sleep_until(at).await;
        }
        let response = next.run(request, extensions).await?;
        let status = response.status().as_u16();
        if (status == 429 || status == 503)
            && let Some(delay) = retry_after(response.headers())
        {
            self.hold(key, delay);
        }
        Ok(response)
    }
}

/// A `Retry-After` header as a delay from now: delta-seconds or an HTTP date
/// (a date in the past is no delay). `None` when absent or unreadable.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let later = SystemTime::now() + Duration::from_secs(120);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let delay = retry_after(&headers).unwrap();
        assert!(delay > Duration::from_secs(110) && delay <= Duration::from_secs(120));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn the_gate_is_per_url_without_query_and_capped() {
        let gate = RetryAfterGate::default();
        let a: reqwest::Url = "https://api.example/pets?limit=1".parse().unwrap();
        let b: reqwest::Url = "https://api.example/pets?limit=2".parse().unwrap();
        let c: reqwest::Url = "https://api.example/store".parse().unwrap();
        gate.hold(RetryAfterGate::key(&a), Duration::from_secs(100_000));
        let until = gate.wait_until(&RetryAfterGate::key(&b)).unwrap();
        assert!(until <= Instant::now() + MAX_RETRY_AFTER);
        assert!(gate.wait_until(&RetryAfterGate::key(&c)).is_none());
    }
}

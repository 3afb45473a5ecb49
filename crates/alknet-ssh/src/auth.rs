//! Failed logins: counted per source address, so that one address cannot
//! try keys without end; logged (rate-limited) with the key's fingerprint.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use alknet_core::Fingerprint;
use alknet_core::log_limit::LogLimit;

/// The period the per-address count covers.
const WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked at once. Past it, expired entries go first, then the
/// oldest: spoofing many addresses costs the attacker its own entries, not
/// the node memory.
const MAX_TRACKED: usize = 4096;

/// Failed logins per source address in the current window.
pub(crate) struct FailedLogins {
    limit: u32,
    by_address: Mutex<HashMap<IpAddr, Count>>,
}

#[derive(Clone, Copy)]
struct Count {
    since: Instant,
    failures: u32,
}

impl FailedLogins {
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            limit,
            by_address: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `address` failed `limit` times in its current window.
    pub(crate) fn is_blocked(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let counts = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts
            .get(&address)
            .is_some_and(|c| now.duration_since(c.since) < WINDOW && c.failures >= self.limit)
    }

    /// Counts one failed login from `address`.
    pub(crate) fn record(&self, address: IpAddr) {
        let now = Instant::now();
        let mut counts = self
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= MAX_TRACKED && !counts.contains_key(&address) {
            counts.retain(|_, c| now.duration_since(c.since) < WINDOW);
            if counts.len() >= MAX_TRACKED
                && let Some(oldest) = counts.iter().min_by_key(|(_, c)| c.since).map(|(a, _)| *a)
            {
                counts.remove(&oldest);
            }
        }
        let count = counts.entry(address).or_insert(Count {
            since: now,
            failures: 0,
        });
        if now.duration_since(count.since) >= WINDOW {
            *count = Count {
                since: now,
                failures: 0,
            };
        }
        count.failures = count.failures.saturating_add(1);
    }
}

/// The certificate authorities `[[ssh.user_ca]]` names, parsed.
pub(crate) struct UserCas(Vec<(russh::keys::PublicKey, crate::config::UserCa)>);

/// Why a user certificate does not log in.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateRefusal {
    #[error("a host certificate, not a user certificate")]
    NotUser,
    #[error("signed by a CA not in ssh.user_ca ({0})")]
    UnknownCa(String),
    #[error("the user name {0:?} is not one of the certificate's principals")]
    NotAPrincipal(String),
    #[error("the user name {0:?} is not among the principals ssh.user_ca allows")]
    NotAllowed(String),
}

impl UserCas {
    /// Parses the configured CAs (validation has checked every key).
    pub(crate) fn of(configured: &[crate::config::UserCa]) -> Self {
        Self(
            configured
                .iter()
                .filter_map(|ca| Some((crate::keys::parse_public_key(&ca.key).ok()?, ca.clone())))
                .collect(),
        )
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The identity a certificate logs `user` in as. russh has checked its
    /// validity period and its signature; this checks who signed it and for
    /// whom.
    pub(crate) fn identity(
        &self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<alknet_core::Identity, CertificateRefusal> {
        use russh::keys::ssh_key::certificate::CertType;
        if certificate.cert_type() != CertType::User {
            return Err(CertificateRefusal::NotUser);
        }
        let signer = certificate.signature_key();
        let Some((_, ca)) = self.0.iter().find(|(key, _)| key.key_data() == signer) else {
            return Err(CertificateRefusal::UnknownCa(
                signer.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
            ));
        };
        // As sshd with TrustedUserCAKeys: a certificate without principals
        // names nobody.
        if !certificate.valid_principals().iter().any(|p| p == user) {
            return Err(CertificateRefusal::NotAPrincipal(user.to_owned()));
        }
        if !ca.principals.is_empty() && !ca.principals.iter().any(|p| p == user) {
            return Err(CertificateRefusal::NotAllowed(user.to_owned()));
        }
        Ok(alknet_core::Identity::new(user, ca.scopes.iter().cloned()))
    }
}

static CERTIFICATE_REFUSED: LogLimit = LogLimit::info("auth: SSH user certificate refused");

/// A user certificate that did not log in.
pub(crate) fn certificate_refused(source: SocketAddr, key_id: &str, reason: &CertificateRefusal) {
    if CERTIFICATE_REFUSED.admit() {
        tracing::info!(
            target: alknet_core::auth_log::TARGET,
            %source,
            key_id,
            "SSH user certificate refused: {reason}"
        );
    }
}

static KEY_REFUSED: LogLimit = LogLimit::info("auth: SSH key not known");
static LOGIN_FAILED: LogLimit = LogLimit::warn("auth: SSH login failed");
static BLOCKED: LogLimit = LogLimit::warn("auth: SSH connection refused after failed logins");

/// A public key no peer entry names.
pub(crate) fn key_refused(source: SocketAddr, fingerprint: &Fingerprint, user: &str) {
    if KEY_REFUSED.admit() {
        tracing::info!(
            target: alknet_core::auth_log::TARGET,
            %source,
            %fingerprint,
            user,
            "SSH public key not known (alknet peer add grants it)"
        );
    }
}

/// A connection that ended without logging in after trying keys.
pub(crate) fn login_failed(source: SocketAddr, tried: &[Fingerprint]) {
    if LOGIN_FAILED.admit() {
        let keys: Vec<String> = tried.iter().map(ToString::to_string).collect();
        tracing::warn!(
            target: alknet_core::auth_log::TARGET,
            %source,
            keys = ?keys,
            "SSH login failed"
        );
    }
}

/// A connection from an address over its failed-login limit.
pub(crate) fn refused_while_blocked(source: SocketAddr) {
    if BLOCKED.admit() {
        tracing::warn!(
            target: alknet_core::auth_log::TARGET,
            %source,
            "SSH connection refused: too many failed logins from this address in the last minute (ssh.max_failed_logins_per_minute)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_at_its_limit_and_others_are_not() {
        let logins = FailedLogins::new(3);
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            logins.record(attacker);
        }
        assert!(!logins.is_blocked(attacker));
        logins.record(attacker);
        assert!(logins.is_blocked(attacker));
        assert!(!logins.is_blocked(other));
    }

    #[test]
    fn many_addresses_stay_within_the_table() {
        let logins = FailedLogins::new(1);
        for i in 0..(MAX_TRACKED as u32 + 100) {
            logins.record(IpAddr::from(i.to_be_bytes()));
        }
        let tracked = logins.by_address.lock().unwrap().len();
        assert!(tracked <= MAX_TRACKED, "{tracked}");
        // The newest is tracked.
        assert!(logins.is_blocked(IpAddr::from((MAX_TRACKED as u32 + 99).to_be_bytes())));
    }
}

//! One line for every refused credential, under the stable target
//! [`TARGET`] (`alknet::auth`), so that an operator (or fail2ban) can follow
//! who presents bad tokens or unknown certificates, and from where.
//!
//! Anyone who reaches the port can cause these lines, so they are
//! rate-limited ([`LogLimit`]). A token is named by its lookup prefix
//! (`alk_3xYz`, as `alknet token list` shows it), never by more: the rest is
//! the secret, and a string that is not an alknet token may be someone's
//! secret for another system.

use std::net::SocketAddr;

use crate::fingerprint::Fingerprint;
use crate::log_limit::LogLimit;

/// The `tracing` target of every line of this module.
pub const TARGET: &str = "alknet::auth";

static TOKEN_REFUSED: LogLimit = LogLimit::warn("auth: bearer token refused");
static PEER_UNKNOWN: LogLimit = LogLimit::info("auth: client certificate not known");

/// Characters of a token that identify it without authenticating it: `alk_`
/// and four more (alknet-identity's `TOKEN_PREFIX_LEN`).
const PREFIX_LEN: usize = 8;

/// What may be logged of a presented token: its lookup prefix, or a
/// placeholder for anything that is not an alknet token.
pub fn token_label(token: &str) -> &str {
    match token.get(..PREFIX_LEN) {
        Some(prefix) if token.starts_with("alk_") && token.len() > PREFIX_LEN => prefix,
        _ => "(not an alk_ token)",
    }
}

/// A bearer token that resolved to no identity (unknown, revoked, expired),
/// presented from `source` over `via` (e.g. `http`, `alknet/call`).
pub fn token_refused(source: SocketAddr, token: &str, via: &'static str) {
    if TOKEN_REFUSED.admit() {
        tracing::warn!(
            target: "alknet::auth",
            %source,
            token_prefix = %token_label(token),
            via,
            "bearer token refused"
        );
    }
}

/// A client certificate that maps to no identity: the connection goes on
/// anonymous, and the operator learns the key to `alknet peer add`.
pub fn peer_unknown(source: SocketAddr, fingerprint: &Fingerprint, alpn: &str) {
    if PEER_UNKNOWN.admit() {
        tracing::info!(
            target: "alknet::auth",
            %source,
            %fingerprint,
            %alpn,
            "client certificate not known: connection is anonymous"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_lookup_prefix_of_a_token_is_logged() {
        assert_eq!(token_label("alk_3xYzSECRETSECRET"), "alk_3xYz");
        assert_eq!(token_label("alk_3xYz"), "(not an alk_ token)");
        assert_eq!(token_label("ghp_secretsecret"), "(not an alk_ token)");
        assert_eq!(token_label("alk_é€xxxxxxxx"), "(not an alk_ token)");
        assert_eq!(token_label(""), "(not an alk_ token)");
    }
}

//! The node's identity store: API keys (bearer tokens) and peer certificates.
//!
//! docs/protocol.md §7.2 resolves two kinds of credentials to an
//! [`Identity`](alknet_core::Identity): a bearer token presented with a request
//! (`auth_token`, later HTTP `Authorization: Bearer`), and the fingerprint of a
//! client certificate presented in the TLS handshake. This crate keeps both in
//! one file of the data directory, `identities.redb` (a [redb] database), and
//! offers two views of it:
//!
//! - [`IdentityStore`] — the administrative side (`alknet init`, `alknet token …`,
//!   `alknet peer …`): create, list and revoke tokens; add, list and remove peers.
//! - [`StoreIdentities`] — the node's side: an
//!   [`IdentityProvider`](alknet_core::IdentityProvider) answering from an
//!   in-memory snapshot of the file.
//!
//! # What is stored for a token
//!
//! A token is `alk_` followed by the base58 encoding of 32 bytes from the
//! operating system's random number generator (256 bits of entropy). It is shown
//! once, when it is created, and never stored: the store keeps the SHA-256 hash of
//! the whole token string, the identity it stands for (id, scopes), an optional
//! expiry, a description and the creation time, keyed by its *prefix* — the first
//! eight characters of the token (`alk_` and four base58 characters). The prefix
//! is what operators see in `alknet token list` and pass to `alknet token
//! revoke`; it only finds the entry. Authentication compares the SHA-256 of the
//! presented token with the stored hash in constant time, so knowing a prefix
//! (or any number of them) grants nothing. A plain hash rather than a password
//! hash is enough because the secret has 256 bits of entropy: there is nothing to
//! guess. Prefixes are unique; a new token whose prefix is taken is generated
//! again. Revoking a token deletes its entry.
//!
//! # Why every operation opens and closes the database
//!
//! redb holds an exclusive `flock` on the file for as long as a `Database` is
//! open, so a node that kept it open would lock the CLI out until it stopped.
//! Instead, every [`IdentityStore`] operation opens the database, runs one
//! transaction and closes it again; when another process holds the file it
//! retries for up to two seconds ([`OPEN_RETRY_LIMIT`]) before reporting
//! [`StoreError::Busy`].
//!
//! # How a running node sees changes without a restart
//!
//! [`StoreIdentities`] never opens the database in place: redb rewrites the
//! file's header whenever it opens it (it marks the file as in use and clears
//! the mark on close), so reading through redb would itself change the file and
//! make every reload look like a new change. Instead the node takes a *shared*
//! `flock` on the file (which keeps writers out, since redb's lock is exclusive),
//! notes the file's `(mtime, size, inode)`, copies its bytes, releases the lock
//! and opens the copy with redb in memory. The resulting snapshot answers every
//! lookup until the file changes:
//!
//! - each `resolve_*` call costs one `stat` of the file; when `(mtime, size,
//!   inode)` equals what the snapshot was loaded from, the snapshot answers;
//! - otherwise the file is reloaded once, and the new snapshot answers;
//! - a writer holding the file at that moment makes the reload wait for the next
//!   call (the node never blocks on the CLI);
//! - a reload that fails (a corrupt or unreadable file) keeps the last good
//!   snapshot and logs one warning per change of the file;
//! - a deleted file means nobody is known (fail closed).
//!
//! File timestamps come from a coarse clock (one kernel tick, up to 10 ms), so a
//! write landing in the same tick as the copy would leave the stamp unchanged.
//! A snapshot loaded less than [`RACY_WINDOW`] after the file's mtime is
//! therefore not trusted: the next call reloads again, until one reload happens
//! late enough that any later write must carry a later mtime. (Filesystems with
//! whole-second timestamps, such as FAT, are not covered by this window.)
//!
//! [redb]: https://docs.rs/redb

#![warn(missing_docs)]

mod entry;
mod provider;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;
mod token;

pub use entry::{
    InvalidEntry, MAX_DESCRIPTION_LEN, MAX_ID_LEN, MAX_SCOPE_LEN, PeerInfo, TokenInfo, TokenSpec,
};
pub use provider::{RACY_WINDOW, StoreIdentities};
pub use store::{IdentityStore, OPEN_RETRY_LIMIT, StoreError};
pub use token::{TOKEN_PREFIX, TOKEN_PREFIX_LEN, token_prefix};

/// The file name of the identity store inside a data directory.
pub const IDENTITIES_FILE: &str = "identities.redb";

//! An immutable, in-memory copy of the store that answers lookups.
//!
//! Built from the bytes of `identities.redb`, opened by redb over memory so that
//! reading never writes to the real file (see the crate documentation).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use alknet_core::{Fingerprint, Identity};
use redb::{Builder, StorageBackend};

use crate::entry::is_expired;
use crate::store::{self, Contents, StoreError};
use crate::token::{self, Hash};

/// A token as the node needs it for resolving.
#[derive(Debug)]
struct TokenEntry {
    hash: Hash,
    identity: Identity,
    expires_at: Option<u64>,
}

/// Every token and peer, ready for lookups.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    tokens: HashMap<String, TokenEntry>,
    peers: HashMap<Fingerprint, Identity>,
}

impl Snapshot {
    /// Parses a copy of the database file.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self, StoreError> {
        let mut builder = Builder::new();
        builder.set_cache_size(1 << 20);
        let db = builder
            .create_with_backend(MemoryFile(RwLock::new(bytes)))
            .map_err(|error| StoreError::Database {
                path: path.to_owned(),
                source: Box::new(error.into()),
            })?;
        Self::from_contents(store::read_contents(&db, path)?, path)
    }

    fn from_contents(contents: Contents, path: &Path) -> Result<Self, StoreError> {
        let mut tokens = HashMap::with_capacity(contents.tokens.len());
        for (prefix, record) in contents.tokens {
            let hash = record.hash().ok_or_else(|| StoreError::CorruptEntry {
                path: path.to_owned(),
                table: "tokens",
                key: prefix.clone(),
                reason: "the hash is not 64 hexadecimal digits".to_owned(),
            })?;
            let entry = TokenEntry {
                hash,
                identity: record.identity(),
                expires_at: record.expires_at,
            };
            tokens.insert(prefix, entry);
        }
        let mut peers = HashMap::with_capacity(contents.peers.len());
        for (key, record) in contents.peers {
            peers.insert(store::parse_fingerprint(path, &key)?, record.identity());
        }
        Ok(Self { tokens, peers })
    }

    /// The identity `token` stands for at `now` (seconds since the Unix epoch):
    /// found by prefix, accepted only if its SHA-256 equals the stored hash and
    /// it has not expired.
    pub fn resolve_token_at(&self, token: &str, now: u64) -> Option<Identity> {
        let entry = self.tokens.get(token::token_prefix(token)?)?;
        if !token::hashes_match(&token::hash(token), &entry.hash) {
            return None;
        }
        if is_expired(entry.expires_at, now) {
            return None;
        }
        Some(entry.identity.clone())
    }

    /// The identity configured for a client certificate.
    pub fn resolve_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity> {
        self.peers.get(fingerprint).cloned()
    }
}

/// A database file's bytes as a redb storage backend. redb writes its header
/// when it opens a database; those writes land here, never in the real file.
#[derive(Debug)]
struct MemoryFile(RwLock<Vec<u8>>);

impl MemoryFile {
    fn out_of_range() -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "offset beyond the end of the copy",
        )
    }
}

impl StorageBackend for MemoryFile {
    fn len(&self) -> Result<u64, io::Error> {
        let bytes = self.0.read().unwrap_or_else(PoisonError::into_inner);
        Ok(bytes.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let bytes = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(offset).map_err(|_| Self::out_of_range())?;
        let end = start.checked_add(len).ok_or_else(Self::out_of_range)?;
        bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(Self::out_of_range)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let len = usize::try_from(len).map_err(|_| Self::out_of_range())?;
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .resize(len, 0);
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut bytes = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let start = usize::try_from(offset).map_err(|_| Self::out_of_range())?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(Self::out_of_range)?;
        bytes
            .get_mut(start..end)
            .ok_or_else(Self::out_of_range)?
            .copy_from_slice(data);
        Ok(())
    }
}

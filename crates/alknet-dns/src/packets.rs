//! Signed pkarr packets the node keeps: its own, and those stock pkarr
//! clients publish to its relay API.
//!
//! One file per key, `<dir>/<z32>`, holding the relay payload (signature,
//! timestamp, DNS packet); written to a temporary file, synced and renamed,
//! so a stored packet survives `kill -9` and a crash mid-write leaves the
//! previous one. A packet replaces the stored one only when it is newer
//! (pkarr's compare-by-timestamp); the store holds at most `max` keys.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use pkarr::{PublicKey, SignedPacket, Timestamp};

/// How far ahead of the node's clock a packet's timestamp may be.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Why a packet is not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// A newer packet (or this one) is stored already.
    #[error("a newer packet for this key is stored")]
    NotNewer,
    /// Its timestamp is further in the future than [`MAX_CLOCK_SKEW`].
    #[error("the packet's timestamp is in the future")]
    FromTheFuture,
    /// The store holds its maximum of keys.
    #[error("the relay stores at most {0} keys")]
    Full(usize),
    /// Writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The stored packets, by key.
#[derive(Debug)]
pub struct PacketStore {
    dir: PathBuf,
    max: usize,
    packets: RwLock<HashMap<[u8; 32], SignedPacket>>,
    /// One write at a time: each compares with the packet it replaces.
    writer: tokio::sync::Mutex<()>,
}

impl PacketStore {
    /// Loads the packets in `dir` (created, mode 0700, at the first
    /// packet); a file that is not a valid packet for its name is skipped
    /// with a warning.
    pub fn open(dir: &Path, max: usize) -> std::io::Result<Self> {
        let mut packets = HashMap::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries.collect::<Vec<_>>(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(key) = PublicKey::try_from(name) else {
                continue;
            };
            let payload = Bytes::from(fs::read(entry.path())?);
            match SignedPacket::from_relay_payload(&key, &payload) {
                Ok(packet) => {
                    packets.insert(key.to_bytes(), packet);
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), "stored pkarr packet skipped: {error}");
                }
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            max,
            packets: RwLock::new(packets),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// The stored packet of `key`.
    pub fn get(&self, key: &PublicKey) -> Option<SignedPacket> {
        self.packets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key.to_bytes())
            .cloned()
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.packets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `packet` durably if it is newer than the stored one.
    pub async fn put(&self, packet: SignedPacket) -> Result<(), PutError> {
        let _one_at_a_time = self.writer.lock().await;
        let skew = Timestamp::now() + MAX_CLOCK_SKEW.as_micros() as u64;
        if packet.timestamp() > skew {
            return Err(PutError::FromTheFuture);
        }
        let key = packet.public_key();
        match self.get(&key) {
            Some(stored) if !packet.more_recent_than(&stored) => return Err(PutError::NotNewer),
            None if self.len() >= self.max => return Err(PutError::Full(self.max)),
            _ => {}
        }
        let path = self.dir.join(key.to_z32());
        let payload = packet.to_relay_payload();
        let written = path.clone();
        tokio::task::spawn_blocking(move || crate::durable::write(&written, &payload))
            .await
            .map_err(|_| PutError::Io {
                path: path.clone(),
                source: std::io::Error::other("the writer stopped"),
            })?
            .map_err(|source| PutError::Io { path, source })?;
        self.packets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_bytes(), packet);
        Ok(())
    }
}

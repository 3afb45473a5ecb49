//! [`IdentityStore`]: the administrative side of `identities.redb`.
//!
//! Every operation opens the database, runs one transaction and closes it, so
//! that no process holds redb's exclusive file lock for longer than one
//! operation (see the crate documentation).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alknet_core::Fingerprint;
use redb::{
    Builder, Database, DatabaseError, ReadTransaction, ReadableTable, TableDefinition, TableError,
    WriteTransaction,
};

use crate::entry::{
    self, InvalidEntry, PeerInfo, PeerRecord, TokenInfo, TokenRecord, TokenSpec, is_expired,
};
use crate::token::{self, TOKEN_ENTROPY_BYTES};

/// Token entries (JSON [`TokenRecord`]), keyed by prefix.
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// Peer entries (JSON [`PeerRecord`]), keyed by the fingerprint's text form.
pub(crate) const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// Store metadata: `schema` → [`SCHEMA_VERSION`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SCHEMA_KEY: &str = "schema";
/// The layout written by this version. A file with a newer one is refused
/// rather than misread.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// How long opening the database waits for another process to close it
/// before giving up with [`StoreError::Busy`].
pub const OPEN_RETRY_LIMIT: Duration = Duration::from_secs(2);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(2);
const MAX_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Draws before giving up on finding an unused prefix. With 58⁴ ≈ 11 million
/// prefixes a second draw is already rare.
const MAX_PREFIX_ATTEMPTS: u32 = 16;

/// redb's page cache for our few kilobytes of entries.
const CACHE_BYTES: usize = 4 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process kept the database open for longer than [`OPEN_RETRY_LIMIT`].
    #[error("{}: in use by another process (waited {waited:?})", path.display())]
    Busy {
        /// The database file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The file could not be created, read or locked.
    #[error("{}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// redb reported an error (a damaged file, a failed commit, …).
    #[error("{}: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error (boxed: redb's is large).
        source: Box<redb::Error>,
    },
    /// The file was written by a newer alknet with a different layout.
    #[error("{}: schema version {found} is newer than this alknet understands ({SCHEMA_VERSION})", path.display())]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
    },
    /// An entry in the file could not be decoded.
    #[error("{}: damaged entry {key:?} in table `{table}`: {reason}", path.display())]
    CorruptEntry {
        /// The database file.
        path: PathBuf,
        /// The table holding the entry.
        table: &'static str,
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry could not be encoded (cannot happen with the types stored).
    #[error("cannot encode an entry: {0}")]
    Encode(#[source] serde_json::Error),
    /// The entry was refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidEntry),
    /// No token has this prefix (it was never created, or was revoked).
    #[error("no token with prefix `{0}`")]
    UnknownToken(String),
    /// No peer has this fingerprint.
    #[error("no peer with fingerprint {0}")]
    UnknownPeer(Fingerprint),
    /// The operating system's random number generator failed.
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(rand_core::Error),
    /// Every prefix drawn was already taken.
    #[error("no unused token prefix found after {MAX_PREFIX_ATTEMPTS} attempts")]
    PrefixesExhausted,
}

/// The identity store in a file: tokens and peers, opened per operation.
///
/// Cheap to construct and to hold: it is only the file's path. Any number of
/// handles, in any number of processes, may use the same file; each operation
/// waits (up to [`OPEN_RETRY_LIMIT`]) for the others.
#[derive(Clone, Debug)]
pub struct IdentityStore {
    path: PathBuf,
}

/// Everything in the file, undecoded keys aside.
pub(crate) struct Contents {
    pub tokens: Vec<(String, TokenRecord)>,
    pub peers: Vec<(String, PeerRecord)>,
}

impl IdentityStore {
    /// Opens the store at `path`, creating the file (mode 0600) and its tables
    /// if missing, and checks that this version understands its layout.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let store = Self { path: path.into() };
        store.create_file_if_missing()?;
        let db = open_database(&store.path, true)?;
        store.commit(&db, |txn| {
            let mut meta = txn.open_table(META).map_err(store.db_error())?;
            let found = meta
                .get(SCHEMA_KEY)
                .map_err(store.db_error())?
                .map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => Err(StoreError::UnsupportedSchema {
                    path: store.path.clone(),
                    found,
                }),
                Some(_) => Ok(()),
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                        .map_err(store.db_error())?;
                    Ok(())
                }
            }?;
            txn.open_table(TOKENS).map_err(store.db_error())?;
            txn.open_table(PEERS).map_err(store.db_error())?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a token for `spec`. Returns the token — the only time it is
    /// available: only its hash is stored — and what `list_tokens` will show.
    pub fn create_token(&self, spec: TokenSpec) -> Result<(String, TokenInfo), StoreError> {
        self.create_token_with(spec, unix_now(), &mut token::os_random)
    }

    pub(crate) fn create_token_with(
        &self,
        spec: TokenSpec,
        now: u64,
        random: &mut dyn FnMut() -> Result<[u8; TOKEN_ENTROPY_BYTES], rand_core::Error>,
    ) -> Result<(String, TokenInfo), StoreError> {
        if let Some(id) = &spec.id {
            entry::validate_id(id)?;
        }
        entry::validate_scopes(&spec.scopes)?;
        entry::validate_description(&spec.description)?;
        if let Some(expires_at) = spec.expires_at
            && is_expired(Some(expires_at), now)
        {
            return Err(InvalidEntry::ExpiryNotInFuture { expires_at, now }.into());
        }
        let db = open_database(&self.path, false)?;
        self.commit(&db, |txn| {
            let mut tokens = txn.open_table(TOKENS).map_err(self.db_error())?;
            for _ in 0..MAX_PREFIX_ATTEMPTS {
                let token = token::encode(&random().map_err(StoreError::Random)?);
                let Some(prefix) = token::token_prefix(&token) else {
                    continue;
                };
                if tokens.get(prefix).map_err(self.db_error())?.is_some() {
                    continue;
                }
                let record = TokenRecord {
                    hash: hex::encode(token::hash(&token)),
                    id: spec.id.clone().unwrap_or_else(|| format!("token:{prefix}")),
                    scopes: entry::normalise_scopes(&spec.scopes),
                    expires_at: spec.expires_at,
                    description: spec.description.clone(),
                    created_at: now,
                };
                let bytes = serde_json::to_vec(&record).map_err(StoreError::Encode)?;
                tokens
                    .insert(prefix, bytes.as_slice())
                    .map_err(self.db_error())?;
                let info = record.info(prefix);
                return Ok((token, info));
            }
            Err(StoreError::PrefixesExhausted)
        })
    }

    /// Every stored token, oldest first, without hashes.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut tokens: Vec<TokenInfo> = self
            .read_all()?
            .tokens
            .iter()
            .map(|(prefix, record)| record.info(prefix))
            .collect();
        tokens.sort_by(|a, b| (a.created_at, &a.prefix).cmp(&(b.created_at, &b.prefix)));
        Ok(tokens)
    }

    /// Revokes (deletes) the token with this prefix; it stops resolving on
    /// every node reading this file. Returns what it was.
    pub fn revoke_token(&self, prefix: &str) -> Result<TokenInfo, StoreError> {
        let db = open_database(&self.path, false)?;
        self.commit(&db, |txn| {
            let mut tokens = txn.open_table(TOKENS).map_err(self.db_error())?;
            let removed = tokens.remove(prefix).map_err(self.db_error())?;
            let Some(bytes) = removed else {
                return Err(StoreError::UnknownToken(prefix.to_owned()));
            };
            let record: TokenRecord = self.decode("tokens", prefix, bytes.value())?;
            Ok(record.info(prefix))
        })
    }

    /// Maps a client-certificate fingerprint to an identity, replacing any
    /// entry for the same fingerprint (which is returned).
    pub fn add_peer(
        &self,
        fingerprint: &Fingerprint,
        id: &str,
        scopes: &[String],
    ) -> Result<Option<PeerInfo>, StoreError> {
        entry::validate_id(id)?;
        entry::validate_scopes(scopes)?;
        let record = PeerRecord {
            id: id.to_owned(),
            scopes: entry::normalise_scopes(scopes),
        };
        let bytes = serde_json::to_vec(&record).map_err(StoreError::Encode)?;
        let key = fingerprint.to_string();
        let db = open_database(&self.path, false)?;
        self.commit(&db, |txn| {
            let mut peers = txn.open_table(PEERS).map_err(self.db_error())?;
            let previous = peers
                .insert(key.as_str(), bytes.as_slice())
                .map_err(self.db_error())?;
            match previous {
                Some(old) => {
                    let old: PeerRecord = self.decode("peers", &key, old.value())?;
                    Ok(Some(peer_info(*fingerprint, old)))
                }
                None => Ok(None),
            }
        })
    }

    /// Every configured peer, ordered by fingerprint.
    pub fn list_peers(&self) -> Result<Vec<PeerInfo>, StoreError> {
        let mut peers = Vec::new();
        for (key, record) in self.read_all()?.peers {
            let fingerprint = self.parse_fingerprint(&key)?;
            peers.push(peer_info(fingerprint, record));
        }
        Ok(peers)
    }

    /// Removes the peer entry for `fingerprint`; returns what it was.
    pub fn remove_peer(&self, fingerprint: &Fingerprint) -> Result<PeerInfo, StoreError> {
        let key = fingerprint.to_string();
        let db = open_database(&self.path, false)?;
        self.commit(&db, |txn| {
            let mut peers = txn.open_table(PEERS).map_err(self.db_error())?;
            let removed = peers.remove(key.as_str()).map_err(self.db_error())?;
            let Some(bytes) = removed else {
                return Err(StoreError::UnknownPeer(*fingerprint));
            };
            let record: PeerRecord = self.decode("peers", &key, bytes.value())?;
            Ok(peer_info(*fingerprint, record))
        })
    }

    fn read_all(&self) -> Result<Contents, StoreError> {
        let db = open_database(&self.path, false)?;
        read_contents(&db, &self.path)
    }

    /// Runs `f` in one write transaction and commits it if `f` succeeded (a
    /// failed `f` aborts the transaction when it is dropped).
    fn commit<T>(
        &self,
        db: &Database,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = db.begin_write().map_err(self.db_error())?;
        let out = f(&txn)?;
        txn.commit().map_err(self.db_error())?;
        Ok(out)
    }

    fn create_file_if_missing(&self) -> Result<(), StoreError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        decode(&self.path, table, key, bytes)
    }

    fn parse_fingerprint(&self, key: &str) -> Result<Fingerprint, StoreError> {
        parse_fingerprint(&self.path, key)
    }

    fn db_error<E: Into<redb::Error>>(&self) -> impl Fn(E) -> StoreError + '_ {
        db_error(&self.path)
    }
}

fn peer_info(fingerprint: Fingerprint, record: PeerRecord) -> PeerInfo {
    PeerInfo {
        fingerprint,
        id: record.id,
        scopes: record.scopes,
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens (or, with `create`, creates) the database, waiting while another
/// process has it open.
fn open_database(path: &Path, create: bool) -> Result<Database, StoreError> {
    let started = Instant::now();
    let mut delay = FIRST_RETRY_DELAY;
    let mut builder = Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    loop {
        let opened = if create {
            builder.create(path)
        } else {
            builder.open(path)
        };
        match opened {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                let waited = started.elapsed();
                if waited >= OPEN_RETRY_LIMIT {
                    return Err(StoreError::Busy {
                        path: path.to_owned(),
                        waited,
                    });
                }
                std::thread::sleep(delay.min(OPEN_RETRY_LIMIT - waited));
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(error) => return Err(db_error(path)(error)),
        }
    }
}

/// Reads every entry of an open database.
pub(crate) fn read_contents(db: &Database, path: &Path) -> Result<Contents, StoreError> {
    let txn = db.begin_read().map_err(db_error(path))?;
    check_schema(&txn, path)?;
    Ok(Contents {
        tokens: read_table(&txn, TOKENS, "tokens", path)?,
        peers: read_table(&txn, PEERS, "peers", path)?,
    })
}

fn check_schema(txn: &ReadTransaction, path: &Path) -> Result<(), StoreError> {
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(error) => return Err(db_error(path)(error)),
    };
    match meta.get(SCHEMA_KEY).map_err(db_error(path))? {
        Some(found) if found.value() > SCHEMA_VERSION => Err(StoreError::UnsupportedSchema {
            path: path.to_owned(),
            found: found.value(),
        }),
        _ => Ok(()),
    }
}

fn read_table<T: serde::de::DeserializeOwned>(
    txn: &ReadTransaction,
    definition: TableDefinition<&str, &[u8]>,
    name: &'static str,
    path: &Path,
) -> Result<Vec<(String, T)>, StoreError> {
    let table = match txn.open_table(definition) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(db_error(path)(error)),
    };
    let mut out = Vec::new();
    for item in table.iter().map_err(db_error(path))? {
        let (key, value) = item.map_err(db_error(path))?;
        let key = key.value().to_owned();
        let record = decode(path, name, &key, value.value())?;
        out.push((key, record));
    }
    Ok(out)
}

fn decode<T: serde::de::DeserializeOwned>(
    path: &Path,
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::CorruptEntry {
        path: path.to_owned(),
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

pub(crate) fn parse_fingerprint(path: &Path, key: &str) -> Result<Fingerprint, StoreError> {
    key.parse()
        .map_err(
            |e: alknet_core::fingerprint::FingerprintParseError| StoreError::CorruptEntry {
                path: path.to_owned(),
                table: "peers",
                key: key.to_owned(),
                reason: e.to_string(),
            },
        )
}

fn db_error<E: Into<redb::Error>>(path: &Path) -> impl Fn(E) -> StoreError + '_ {
    move |error| StoreError::Database {
        path: path.to_owned(),
        source: Box::new(error.into()),
    }
}

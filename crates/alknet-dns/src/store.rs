//! The node's zones, in memory and on disk.
//!
//! Each zone is one master file (RFC 1035 §5), `<dir>/<zone>.zone`, that the
//! node writes and reads back with hickory's zone-file parser; the file is
//! what Knot or hickory-dns would load too. A change is applied to a copy of
//! the zone, written to a temporary file, synced, renamed over the old one
//! and the directory synced, and only then served: a change the caller saw
//! acknowledged survives `kill -9`, and a crash mid-write leaves the old
//! file whole. Before any write the rendered text is parsed back and
//! compared with the zone, so the node never writes a file it cannot load.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::serialize::txt::Parser;

use crate::zone::{Zone, ZoneError, fqdn, unix_now};

/// The SOA a new zone starts with: refresh, retry, expire and the negative
/// TTL (RFC 2308), in seconds.
const DEFAULT_SOA_TIMERS: (i32, i32, i32, u32) = (3600, 900, 1_209_600, 300);

/// Why the zones cannot be loaded or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing a zone file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A zone file does not parse, or breaks a zone rule.
    #[error("zone file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The name is in none of the node's zones.
    #[error("{0} is not inside any zone of this node (see [[dns.zones]])")]
    NoZone(String),
    /// The change breaks a zone rule.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The change would write a file that does not read back the same.
    #[error("the record does not survive the zone file's text form: {0}")]
    NotRepresentable(String),
}

/// The zones served at one moment. Cheap to share; replaced whole on a
/// change.
#[derive(Debug, Default)]
pub struct ZoneSet {
    by_origin: HashMap<LowerName, Arc<Zone>>,
}

impl ZoneSet {
    /// The zone `name` falls in: the one with the longest matching origin.
    pub fn zone_for(&self, name: &LowerName) -> Option<&Arc<Zone>> {
        if self.by_origin.is_empty() {
            return None;
        }
        let mut candidate = name.clone();
        loop {
            if let Some(zone) = self.by_origin.get(&candidate) {
                return Some(zone);
            }
            if candidate.is_root() {
                return None;
            }
            candidate = candidate.base_name();
        }
    }

    /// Every zone, by origin.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.by_origin.values()
    }
}

/// The zones, loaded from and saved to a directory.
#[derive(Debug)]
pub struct ZoneStore {
    dir: PathBuf,
    current: RwLock<Arc<ZoneSet>>,
    /// One change at a time: each reads the zone it replaces.
    writer: tokio::sync::Mutex<()>,
}

impl ZoneStore {
    /// Loads each of `origins` from `dir` (created, mode 0700, with the first
    /// zone file: a node without zones leaves no trace), starting a zone
    /// with only an SOA where no file exists yet. Files of zones not
    /// named are left alone.
    pub fn open(dir: &Path, origins: &[Name]) -> Result<Self, StoreError> {
        let mut by_origin = HashMap::new();
        for origin in origins {
            let origin = fqdn(origin).to_lowercase();
            let path = file_of(dir, &origin);
            let zone = match fs::read_to_string(&path) {
                Ok(text) => parse(&origin, &text).map_err(|reason| StoreError::Corrupt {
                    path: path.clone(),
                    reason,
                })?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    let zone = Zone::new(&origin, 3600, default_soa(&origin)?);
                    write_zone(dir, &zone)?;
                    tracing::info!(zone = %origin, file = %path.display(), "started a new zone");
                    zone
                }
                Err(source) => return Err(StoreError::Io { path, source }),
            };
            by_origin.insert(LowerName::new(&origin), Arc::new(zone));
        }
        Ok(Self {
            dir: dir.to_owned(),
            current: RwLock::new(Arc::new(ZoneSet { by_origin })),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Where zone files live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The zones now served.
    pub fn current(&self) -> Arc<ZoneSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `change` to the zone `name` is in, advances its serial, saves
    /// it durably and serves it. Returns the new zone.
    pub async fn change(
        &self,
        name: &Name,
        change: impl FnOnce(&Zone) -> Result<Zone, ZoneError>,
    ) -> Result<Arc<Zone>, StoreError> {
        let _one_at_a_time = self.writer.lock().await;
        let zones = self.current();
        let zone = zones
            .zone_for(&LowerName::new(&fqdn(name)))
            .ok_or_else(|| StoreError::NoZone(fqdn(name).to_string()))?;
        let changed = Arc::new(change(zone)?.bumped());
        let dir = self.dir.clone();
        let saved = changed.clone();
        tokio::task::spawn_blocking(move || write_zone(&dir, &saved))
            .await
            .map_err(|_| StoreError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("the zone writer stopped"),
            })??;
        let mut by_origin = zones.by_origin.clone();
        by_origin.insert(LowerName::new(changed.origin()), changed.clone());
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(ZoneSet { by_origin });
        Ok(changed)
    }
}

fn default_soa(origin: &Name) -> Result<SOA, StoreError> {
    let rname = origin
        .prepend_label("hostmaster")
        .map_err(|error| StoreError::NoZone(format!("{origin} ({error})")))?;
    let (refresh, retry, expire, minimum) = DEFAULT_SOA_TIMERS;
    Ok(SOA::new(
        origin.clone(),
        rname,
        unix_now(),
        refresh,
        retry,
        expire,
        minimum,
    ))
}

/// `<dir>/<zone>.zone`; origins are checked to be plain host names, so the
/// name is a safe file name.
fn file_of(dir: &Path, origin: &Name) -> PathBuf {
    let name = origin.to_ascii();
    dir.join(format!("{}.zone", name.trim_end_matches('.')))
}

/// A record's value in presentation format (RFC 1035 §5.1), as the zone
/// file and `dns/list` show it.
pub fn present(data: &RData) -> String {
    match data {
        // hickory's Display joins TXT strings without quotes; a zone file
        // needs each quoted, with `"` and `\` escaped.
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|bytes| quote(bytes))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte:03}")),
        }
    }
    out.push('"');
    out
}

/// The zone as a master file.
pub fn render(zone: &Zone) -> String {
    let mut text = format!(
        "; Zone {origin}, written by alknet: change it with `alknet dns set|delete`\n\
         ; (edits made here while the node runs are overwritten).\n",
        origin = zone.origin()
    );
    for record in zone.records() {
        text.push_str(&format!(
            "{} {} IN {} {}\n",
            record.name,
            record.ttl,
            record.record_type(),
            present(&record.data)
        ));
    }
    text
}

/// Parses a master file of `origin`.
fn parse(origin: &Name, text: &str) -> Result<Zone, String> {
    let (_, sets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|error| error.to_string())?;
    let records = sets
        .into_values()
        .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>());
    Zone::from_records(origin, records).map_err(|error| error.to_string())
}

/// Each record's wire form (lower-case owner, TTL included), sorted: equal
/// lists mean equal zones.
fn wire_forms(zone: &Zone) -> Result<Vec<Vec<u8>>, String> {
    let mut forms = zone
        .records()
        .into_iter()
        .map(|record| {
            let mut record: Record = record.clone();
            record.name = record.name.to_lowercase();
            record.to_bytes().map_err(|error| error.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    forms.sort();
    Ok(forms)
}

/// Checks the zone reads back from its text, then writes it durably.
fn write_zone(dir: &Path, zone: &Zone) -> Result<(), StoreError> {
    let text = render(zone);
    let reread = parse(zone.origin(), &text).map_err(StoreError::NotRepresentable)?;
    if wire_forms(&reread).map_err(StoreError::NotRepresentable)?
        != wire_forms(zone).map_err(StoreError::NotRepresentable)?
    {
        return Err(StoreError::NotRepresentable(
            "a value reads back differently from its zone-file text".into(),
        ));
    }
    let path = file_of(dir, zone.origin());
    crate::durable::write(&path, text.as_bytes()).map_err(|source| StoreError::Io { path, source })
}

/// The record types a value may be given as, by name (`"A"`, `"txt"`).
pub fn record_type(name: &str) -> Result<RecordType, ZoneError> {
    let kind: RecordType = name
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| ZoneError::UnsupportedType(name.to_owned()))?;
    if crate::zone::SERVED_TYPES.contains(&kind) {
        Ok(kind)
    } else {
        Err(ZoneError::UnsupportedType(name.to_owned()))
    }
}

/// Parses `value` as `kind`'s presentation format.
pub fn parse_value(kind: RecordType, value: &str) -> Result<RData, ZoneError> {
    if value.contains(['\n', '\r']) {
        return Err(ZoneError::Invalid("a value is one line".into()));
    }
    RData::try_from_str(kind, value)
        .map_err(|error| ZoneError::Invalid(format!("{kind} value {value:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn every_served_type_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let origin = name("example.net.");
        let store = ZoneStore::open(dir.path(), std::slice::from_ref(&origin)).unwrap();
        let sets: &[(&str, &str, &[&str])] = &[
            (
                "example.net.",
                "NS",
                &["ns1.example.net.", "ns2.example.org."],
            ),
            ("example.net.", "MX", &["10 mail.example.net."]),
            (
                "example.net.",
                "TXT",
                &["\"v=spf1 -all\"", "\"two\" \"strings \\\"quoted\\\"\""],
            ),
            ("example.net.", "CAA", &["0 issue \"letsencrypt.org\""]),
            ("www.example.net.", "A", &["192.0.2.1", "192.0.2.2"]),
            ("www.example.net.", "AAAA", &["2001:db8::1"]),
            ("www.example.net.", "HTTPS", &["1 . alpn=h2,h3"]),
            (
                "svc.example.net.",
                "SVCB",
                &["1 svc.example.net. port=8443"],
            ),
            ("alias.example.net.", "CNAME", &["www.example.net."]),
            (
                "_sip._tcp.example.net.",
                "SRV",
                &["10 60 5060 sip.example.net."],
            ),
            ("1.2.0.192.example.net.", "PTR", &["www.example.net."]),
        ];
        for (owner, kind, values) in sets {
            let kind = record_type(kind).unwrap();
            let values: Vec<RData> = values
                .iter()
                .map(|v| parse_value(kind, v).unwrap())
                .collect();
            store
                .change(&name(owner), |zone| {
                    zone.with_set(&name(owner), kind, 300, values)
                })
                .await
                .unwrap();
        }
        let served = store
            .current()
            .zone_for(&LowerName::new(&origin))
            .unwrap()
            .clone();
        // A second store reads exactly what the first wrote.
        let reopened = ZoneStore::open(dir.path(), std::slice::from_ref(&origin)).unwrap();
        let loaded = reopened
            .current()
            .zone_for(&LowerName::new(&origin))
            .unwrap()
            .clone();
        assert_eq!(wire_forms(&loaded).unwrap(), wire_forms(&served).unwrap());
        assert_eq!(loaded.len(), 15);
        assert_eq!(
            present(&parse_value(RecordType::TXT, "\"a\\\\b\" \"c\\\"d\"").unwrap()),
            "\"a\\\\b\" \"c\\\"d\""
        );
    }

    #[tokio::test]
    async fn names_outside_every_zone_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ZoneStore::open(dir.path(), &[name("example.net.")]).unwrap();
        let error = store
            .change(&name("example.org."), |zone| Ok(zone.clone()))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::NoZone(_)), "{error}");
        assert!(parse_value(RecordType::A, "not-an-address").is_err());
        assert!(parse_value(RecordType::TXT, "\"a\"\n@ IN A 1.2.3.4").is_err());
        assert!(record_type("NULL").is_err());
        assert_eq!(record_type("aaaa").unwrap(), RecordType::AAAA);
    }

    #[test]
    fn a_corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("example.net.zone"), "this is not a zone\n").unwrap();
        let error = ZoneStore::open(dir.path(), &[name("example.net.")]).unwrap_err();
        assert!(error.to_string().contains("example.net.zone"), "{error}");
    }
}

//! One authoritative zone in memory: its records by owner name and type,
//! the rules a change must keep, and the lookup a query needs.
//!
//! A [`Zone`] is immutable: a change builds a new one ([`Zone::with_set`],
//! [`Zone::without`]), so readers never lock and a refused change leaves
//! nothing half-applied. Names are compared in lower case; records keep the
//! spelling they were set with.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

/// The most records one zone holds: a bound on memory and on the work each
/// change does (a zone is rebuilt and rewritten on every change).
pub const MAX_RECORDS: usize = 100_000;
/// The most values one record set holds.
pub const MAX_SET: usize = 256;
/// The largest TTL taken (RFC 2181 §8).
pub const MAX_TTL: u32 = (1 << 31) - 1;

/// The record types a zone may hold.
pub const SERVED_TYPES: &[RecordType] = &[
    RecordType::SOA,
    RecordType::NS,
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::SRV,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::PTR,
];

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    /// The name is not inside the zone.
    #[error("{name} is not inside the zone {zone}")]
    OutsideZone {
        /// The name.
        name: String,
        /// The zone.
        zone: String,
    },
    /// A type this node does not serve from zones.
    #[error(
        "record type {0} is not served (served: SOA NS A AAAA CNAME TXT MX SRV CAA HTTPS SVCB PTR)"
    )]
    UnsupportedType(String),
    /// A wildcard owner name.
    #[error("wildcard names (`*.`) are not supported")]
    Wildcard,
    /// NS below the apex would be a delegation.
    #[error("NS records below the zone apex (delegations) are not supported")]
    Delegation,
    /// A CNAME beside other data, or at the apex, or with several targets.
    #[error("{0}")]
    Cname(&'static str),
    /// SOA anywhere but the apex, or more than one.
    #[error("a zone has exactly one SOA record, at its apex")]
    Soa,
    /// The apex SOA cannot be deleted.
    #[error("the SOA record of the zone cannot be deleted (set a new one instead)")]
    SoaDeleted,
    /// A value that does not parse for its type, or a bad TTL.
    #[error("{0}")]
    Invalid(String),
    /// Past [`MAX_RECORDS`] or [`MAX_SET`].
    #[error("{0}")]
    TooLarge(String),
}

/// What a lookup found at one name.
#[derive(Debug)]
pub enum Found<'a> {
    /// The record set of the asked type.
    Records(&'a [Record]),
    /// The name is an alias: its CNAME record (the asked type is not CNAME).
    Cname(&'a Record),
    /// The name exists (perhaps only as a parent of others) without the type.
    NoData,
    /// No such name in the zone.
    NxDomain,
}

/// The records at one owner name, by type.
#[derive(Clone, Debug, Default)]
struct Node {
    sets: BTreeMap<RecordType, Vec<Record>>,
}

/// An authoritative zone.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    /// Every owner name, and every name between an owner and the origin (an
    /// empty non-terminal exists: NODATA, not NXDOMAIN).
    nodes: HashMap<LowerName, Node>,
    records: usize,
}

impl Zone {
    /// A zone holding only `soa` at `origin`.
    pub fn new(origin: &Name, ttl: u32, soa: SOA) -> Self {
        let origin = fqdn(origin).to_lowercase();
        let mut zone = Self {
            origin: origin.clone(),
            nodes: HashMap::new(),
            records: 0,
        };
        zone.insert(Record::from_rdata(origin, ttl, RData::SOA(soa)));
        zone
    }

    /// A zone from records already checked (a zone file the node wrote):
    /// the origin's SOA must be among them.
    pub fn from_records(
        origin: &Name,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<Self, ZoneError> {
        let origin = fqdn(origin).to_lowercase();
        let mut zone = Self {
            origin,
            nodes: HashMap::new(),
            records: 0,
        };
        let mut sets: BTreeMap<(LowerName, RecordType), (Name, u32, Vec<RData>)> = BTreeMap::new();
        for record in records {
            let key = (LowerName::new(&record.name), record.record_type());
            let entry = sets
                .entry(key)
                .or_insert_with(|| (record.name.clone(), record.ttl, Vec::new()));
            entry.2.push(record.data);
        }
        for ((_, kind), (name, ttl, values)) in sets {
            let name = fqdn(&name);
            zone.check_set(&name, kind, ttl, &values)?;
            zone.apply_set(&name, kind, ttl, values);
        }
        if zone.soa().is_none() {
            return Err(ZoneError::Soa);
        }
        Ok(zone)
    }

    /// The zone's apex, lower case, fully qualified.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether it holds no records (never true of a served zone: it has an SOA).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The apex SOA record.
    pub fn soa(&self) -> Option<&Record> {
        self.nodes
            .get(&LowerName::new(&self.origin))?
            .sets
            .get(&RecordType::SOA)?
            .first()
    }

    /// The SOA's data.
    pub fn soa_data(&self) -> Option<&SOA> {
        match &self.soa()?.data {
            RData::SOA(soa) => Some(soa),
            _ => None,
        }
    }

    /// The SOA to put in a negative answer: its TTL is the lesser of its own
    /// and the SOA minimum (RFC 2308 §3).
    pub fn negative_soa(&self) -> Option<Record> {
        let mut soa = self.soa()?.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        Some(soa)
    }

    /// Whether `name` is inside the zone.
    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// What the zone holds for `name` and `kind`.
    pub fn find(&self, name: &LowerName, kind: RecordType) -> Found<'_> {
        let Some(node) = self.nodes.get(name) else {
            return Found::NxDomain;
        };
        if let Some(set) = node.sets.get(&kind) {
            return Found::Records(set);
        }
        if let Some(cname) = node
            .sets
            .get(&RecordType::CNAME)
            .and_then(|set| set.first())
        {
            return Found::Cname(cname);
        }
        Found::NoData
    }

    /// Whether anything (records, or names below) exists at `name`.
    pub fn exists(&self, name: &LowerName) -> bool {
        self.nodes.contains_key(name)
    }

    /// Every record, owners in canonical order, the SOA first.
    pub fn records(&self) -> Vec<&Record> {
        let mut records: Vec<&Record> = self
            .nodes
            .values()
            .flat_map(|node| node.sets.values().flatten())
            .collect();
        records.sort_by(|a, b| {
            let soa = |r: &Record| r.record_type() != RecordType::SOA;
            soa(a)
                .cmp(&soa(b))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| u16::from(a.record_type()).cmp(&u16::from(b.record_type())))
        });
        records
    }

    /// This zone with the record set at `name` of `kind` replaced by
    /// `values`, each with `ttl`. An SOA set here keeps a serial that grows
    /// ([`next_serial`]).
    pub fn with_set(
        &self,
        name: &Name,
        kind: RecordType,
        ttl: u32,
        values: Vec<RData>,
    ) -> Result<Self, ZoneError> {
        let name = fqdn(name);
        self.check_set(&name, kind, ttl, &values)?;
        let mut zone = self.clone();
        zone.apply_set(&name, kind, ttl, values);
        Ok(zone)
    }

    /// Checks that setting `values` at `name` keeps the zone's rules.
    fn check_set(
        &self,
        name: &Name,
        kind: RecordType,
        ttl: u32,
        values: &[RData],
    ) -> Result<(), ZoneError> {
        let key = LowerName::new(name);
        let apex = LowerName::new(&self.origin);
        self.check_name(name)?;
        if !SERVED_TYPES.contains(&kind) {
            return Err(ZoneError::UnsupportedType(kind.to_string()));
        }
        if ttl > MAX_TTL {
            return Err(ZoneError::Invalid(format!(
                "a TTL is at most {MAX_TTL} seconds"
            )));
        }
        if values.is_empty() {
            return Err(ZoneError::Invalid(
                "a record set needs at least one value".into(),
            ));
        }
        if values.len() > MAX_SET {
            return Err(ZoneError::TooLarge(format!(
                "a record set holds at most {MAX_SET} values"
            )));
        }
        if let Some(value) = values.iter().find(|v| v.record_type() != kind) {
            return Err(ZoneError::Invalid(format!(
                "a {} value in a {kind} set",
                value.record_type()
            )));
        }
        let existing = self.nodes.get(&key);
        let has = |t: RecordType| existing.is_some_and(|node| node.sets.contains_key(&t));
        let others = existing.is_some_and(|node| node.sets.keys().any(|t| *t != kind));
        match kind {
            RecordType::SOA if key != apex || values.len() != 1 => return Err(ZoneError::Soa),
            RecordType::NS if key != apex => return Err(ZoneError::Delegation),
            RecordType::CNAME if key == apex => {
                return Err(ZoneError::Cname("the zone apex cannot be a CNAME"));
            }
            RecordType::CNAME if values.len() != 1 => {
                return Err(ZoneError::Cname("a CNAME has exactly one target"));
            }
            RecordType::CNAME if others => {
                return Err(ZoneError::Cname(
                    "a name with other records cannot also be a CNAME (RFC 1034 §3.6.2)",
                ));
            }
            _ if kind != RecordType::CNAME && has(RecordType::CNAME) => {
                return Err(ZoneError::Cname(
                    "the name is a CNAME; delete it before adding other records",
                ));
            }
            _ => {}
        }
        let replaced = existing
            .and_then(|node| node.sets.get(&kind))
            .map_or(0, Vec::len);
        if self.records - replaced + values.len() > MAX_RECORDS {
            return Err(ZoneError::TooLarge(format!(
                "a zone holds at most {MAX_RECORDS} records"
            )));
        }
        Ok(())
    }

    /// Replaces one set in place (checked by [`Self::check_set`]).
    /// A value given twice is kept once: an RRset is a set (RFC 2181 §5).
    fn apply_set(&mut self, name: &Name, kind: RecordType, ttl: u32, values: Vec<RData>) {
        self.remove_set(&LowerName::new(name), kind);
        let mut kept: Vec<RData> = Vec::with_capacity(values.len());
        for value in values {
            if !kept.contains(&value) {
                kept.push(value);
            }
        }
        for value in kept {
            self.insert(Record::from_rdata(name.clone(), ttl, value));
        }
    }

    /// This zone without the records at `name` (of `kind` only, if given).
    /// Deleting nothing is not an error.
    pub fn without(&self, name: &Name, kind: Option<RecordType>) -> Result<Self, ZoneError> {
        let name = fqdn(name);
        self.check_name(&name)?;
        let key = LowerName::new(&name);
        let apex = key == LowerName::new(&self.origin);
        if apex && kind.is_none_or(|k| k == RecordType::SOA) {
            if kind.is_some() {
                return Err(ZoneError::SoaDeleted);
            }
            // Everything at the apex but the SOA.
            let mut zone = self.clone();
            let kinds: Vec<RecordType> = zone
                .nodes
                .get(&key)
                .map(|node| node.sets.keys().copied().collect())
                .unwrap_or_default();
            for kind in kinds.into_iter().filter(|k| *k != RecordType::SOA) {
                zone.remove_set(&key, kind);
            }
            zone.prune();
            return Ok(zone);
        }
        let mut zone = self.clone();
        match kind {
            Some(kind) => zone.remove_set(&key, kind),
            None => {
                let kinds: Vec<RecordType> = zone
                    .nodes
                    .get(&key)
                    .map(|node| node.sets.keys().copied().collect())
                    .unwrap_or_default();
                for kind in kinds {
                    zone.remove_set(&key, kind);
                }
            }
        }
        zone.prune();
        Ok(zone)
    }

    /// This zone with its SOA serial advanced ([`next_serial`]): what every
    /// change applies last, so secondaries and caches see it.
    pub fn bumped(&self) -> Self {
        let Some(soa) = self.soa().cloned() else {
            return self.clone();
        };
        let RData::SOA(data) = &soa.data else {
            return self.clone();
        };
        let data = SOA::new(
            data.mname.clone(),
            data.rname.clone(),
            next_serial(data.serial, unix_now()),
            data.refresh,
            data.retry,
            data.expire,
            data.minimum,
        );
        let mut zone = self.clone();
        let apex = LowerName::new(&zone.origin);
        zone.remove_set(&apex, RecordType::SOA);
        zone.insert(Record::from_rdata(soa.name, soa.ttl, RData::SOA(data)));
        zone
    }

    fn check_name(&self, name: &Name) -> Result<(), ZoneError> {
        if !self.origin.zone_of(name) {
            return Err(ZoneError::OutsideZone {
                name: name.to_string(),
                zone: self.origin.to_string(),
            });
        }
        if name.iter().any(|label| label == b"*") {
            return Err(ZoneError::Wildcard);
        }
        Ok(())
    }

    fn insert(&mut self, mut record: Record) {
        record.dns_class = DNSClass::IN;
        let key = LowerName::new(&record.name);
        // The owner and each name between it and the origin exist.
        let mut parent = key.clone();
        while parent.num_labels() > self.origin.num_labels() {
            parent = parent.base_name();
            self.nodes.entry(parent.clone()).or_default();
        }
        let node = self.nodes.entry(key).or_default();
        node.sets
            .entry(record.record_type())
            .or_default()
            .push(record);
        self.records += 1;
    }

    fn remove_set(&mut self, key: &LowerName, kind: RecordType) {
        let Some(node) = self.nodes.get_mut(key) else {
            return;
        };
        if let Some(set) = node.sets.remove(&kind) {
            self.records -= set.len();
        }
    }

    /// Names that no longer lead to any record stop existing.
    fn prune(&mut self) {
        let apex = LowerName::new(&self.origin);
        let mut live: std::collections::HashSet<LowerName> = std::collections::HashSet::new();
        for (name, node) in &self.nodes {
            if node.sets.is_empty() {
                continue;
            }
            let mut name = name.clone();
            live.insert(name.clone());
            while name.num_labels() > self.origin.num_labels() {
                name = name.base_name();
                live.insert(name.clone());
            }
        }
        live.insert(apex);
        self.nodes.retain(|name, _| live.contains(name));
    }
}

/// The serial after `current` at time `now` (seconds since the epoch): the
/// time when that is larger, so serials say when a zone last changed, else
/// one more (RFC 1982 arithmetic wraps at 2^32).
pub fn next_serial(current: u32, now: u32) -> u32 {
    // `now` is "greater" than `current` in serial arithmetic when it is
    // less than 2^31 ahead.
    let ahead = now.wrapping_sub(current);
    if ahead != 0 && ahead < (1 << 31) {
        now
    } else {
        current.wrapping_add(1)
    }
}

/// Seconds since the epoch, as an SOA serial.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// `name`, fully qualified.
pub fn fqdn(name: &Name) -> Name {
    let mut name = name.clone();
    name.set_fqdn(true);
    name
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    fn zone() -> Zone {
        let soa = SOA::new(
            name("ns.example.net."),
            name("hostmaster.example.net."),
            1,
            3600,
            900,
            604_800,
            300,
        );
        Zone::new(&name("Example.NET."), 3600, soa)
    }

    fn value(kind: RecordType, text: &str) -> RData {
        RData::try_from_str(kind, text).unwrap()
    }

    #[test]
    fn lookups_distinguish_answers_nodata_and_nxdomain() {
        let zone = zone()
            .with_set(
                &name("a.b.example.net."),
                RecordType::A,
                300,
                vec![value(RecordType::A, "192.0.2.1")],
            )
            .unwrap();
        let lower = |t: &str| LowerName::new(&name(t));
        assert!(
            matches!(zone.find(&lower("A.B.example.net."), RecordType::A), Found::Records(r) if r.len() == 1)
        );
        assert!(matches!(
            zone.find(&lower("a.b.example.net."), RecordType::AAAA),
            Found::NoData
        ));
        // An empty non-terminal exists.
        assert!(matches!(
            zone.find(&lower("b.example.net."), RecordType::A),
            Found::NoData
        ));
        assert!(matches!(
            zone.find(&lower("c.example.net."), RecordType::A),
            Found::NxDomain
        ));
        // Deleting the only record removes the empty non-terminal too.
        let zone = zone.without(&name("a.b.example.net."), None).unwrap();
        assert!(matches!(
            zone.find(&lower("b.example.net."), RecordType::A),
            Found::NxDomain
        ));
        assert_eq!(zone.len(), 1);
    }

    #[test]
    fn cname_rules_are_kept() {
        let zone = zone()
            .with_set(
                &name("www.example.net."),
                RecordType::CNAME,
                300,
                vec![value(RecordType::CNAME, "web.example.net.")],
            )
            .unwrap();
        let a = vec![value(RecordType::A, "192.0.2.1")];
        assert!(matches!(
            zone.with_set(&name("www.example.net."), RecordType::A, 300, a.clone()),
            Err(ZoneError::Cname(_))
        ));
        assert!(matches!(
            zone.with_set(
                &name("example.net."),
                RecordType::CNAME,
                300,
                vec![value(RecordType::CNAME, "x.example.org.")]
            ),
            Err(ZoneError::Cname(_))
        ));
        let lower = LowerName::new(&name("www.example.net."));
        assert!(matches!(zone.find(&lower, RecordType::A), Found::Cname(_)));
        assert!(matches!(
            zone.find(&lower, RecordType::CNAME),
            Found::Records(_)
        ));
    }

    #[test]
    fn changes_outside_the_rules_are_refused() {
        let zone = zone();
        let a = vec![value(RecordType::A, "192.0.2.1")];
        assert!(matches!(
            zone.with_set(&name("example.org."), RecordType::A, 300, a.clone()),
            Err(ZoneError::OutsideZone { .. })
        ));
        assert_eq!(
            zone.with_set(&name("*.example.net."), RecordType::A, 300, a.clone())
                .unwrap_err(),
            ZoneError::Wildcard
        );
        assert_eq!(
            zone.with_set(
                &name("sub.example.net."),
                RecordType::NS,
                300,
                vec![value(RecordType::NS, "ns.other.org.")]
            )
            .unwrap_err(),
            ZoneError::Delegation
        );
        assert!(matches!(
            zone.with_set(
                &name("x.example.net."),
                RecordType::A,
                MAX_TTL + 1,
                a.clone()
            ),
            Err(ZoneError::Invalid(_))
        ));
        assert!(matches!(
            zone.with_set(
                &name("x.example.net."),
                RecordType::NULL,
                300,
                vec![RData::NULL(hickory_proto::rr::rdata::NULL::new())]
            ),
            Err(ZoneError::UnsupportedType(_))
        ));
        assert_eq!(
            zone.without(&name("example.net."), Some(RecordType::SOA))
                .unwrap_err(),
            ZoneError::SoaDeleted
        );
        // Deleting the apex keeps its SOA.
        let cleared = zone.without(&name("example.net."), None).unwrap();
        assert!(cleared.soa().is_some());
    }

    #[test]
    fn serials_grow() {
        assert_eq!(next_serial(1, 1_800_000_000), 1_800_000_000);
        assert_eq!(next_serial(1_800_000_000, 1_800_000_000), 1_800_000_001);
        assert_eq!(next_serial(1_800_000_005, 1_800_000_000), 1_800_000_006);
        assert_eq!(next_serial(u32::MAX, 5), 5);
        let zone = zone();
        let before = zone.soa_data().unwrap().serial;
        let after = zone.bumped().soa_data().unwrap().serial;
        assert_ne!(before, after);
        assert!(after.wrapping_sub(before) < (1 << 31));
    }
}

//! The query path, without I/O: request bytes in, response bytes out.
//!
//! Every transport (DoQ, DoT, DoH, plain UDP and TCP) hands the message it
//! framed to [`Answerer::answer`] and sends back what it returns. Nothing
//! here panics on any input: a message that does not parse gets FORMERR when
//! its header can be read, and nothing otherwise; a response is never
//! answered (two servers cannot be made to loop).
//!
//! Names under a pkarr key (`<z32>.`, `_alknet.<z32>.`) are answered from
//! that key's signed packet ([`crate::resolver`]). When the packet is not
//! at hand, [`Answerer::answer`] says [`Reply::Resolve`] and the transport
//! calls [`Answerer::answer_resolving`], which may wait for relays; the
//! zone path never waits.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use pkarr::{PublicKey, SignedPacket};

use crate::resolver::Resolver;
use crate::store::ZoneStore;
use crate::zone::{Found, Zone};

/// How many CNAMEs one answer follows inside a zone.
const MAX_CHAIN: usize = 8;
/// The EDNS UDP payload the node offers (the DNS flag day 2020 value: no
/// fragmentation on common paths).
pub const UDP_PAYLOAD: u16 = 1232;
/// The TTL of the RFC 8482 answer to ANY.
const ANY_TTL: u32 = 3600;

/// Where the response goes: its size limit and how an oversized one ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: at most the requester's EDNS payload (512 without EDNS),
    /// capped by [`UDP_PAYLOAD`]; a larger answer is truncated (TC).
    Udp,
    /// A stream or HTTPS: up to 65,535 bytes.
    Stream,
}

/// What became of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this.
    Send(Answered),
    /// Send nothing: not a query, or too short to have a header.
    Drop,
    /// The name is under this pkarr key, whose packet must be fetched:
    /// call [`Answerer::answer_resolving`].
    Resolve(PublicKey),
}

/// A response and what a transport needs to know about it.
#[derive(Debug, PartialEq, Eq)]
pub struct Answered {
    /// The encoded response.
    pub bytes: Vec<u8>,
    /// Its response code.
    pub code: ResponseCode,
    /// How long it may be cached: the least TTL in it (the negative TTL for
    /// NXDOMAIN and NODATA), 0 for errors (DoH's `Cache-Control`).
    pub max_age: u32,
}

/// A pkarr packet looked up for a request.
type Looked = Result<Option<SignedPacket>, ()>;

/// What filling a response came to.
enum Filled {
    /// Done; the response may be cached this long.
    Done(u32),
    /// The packet of this key is needed first.
    Resolve(PublicKey),
}

/// Answers queries from the node's zones and pkarr packets.
#[derive(Clone, Debug)]
pub struct Answerer {
    zones: Arc<ZoneStore>,
    pkarr: Option<Pkarr>,
}

#[derive(Clone, Debug)]
struct Pkarr {
    resolver: Arc<Resolver>,
    /// The node's own key: its answers are authoritative.
    own: Option<PublicKey>,
}

impl Answerer {
    /// Answers from `zones`.
    pub fn new(zones: Arc<ZoneStore>) -> Self {
        Self { zones, pkarr: None }
    }

    /// Also answers pkarr names, through `resolver`; `own` is the node's key.
    pub fn with_pkarr(mut self, resolver: Arc<Resolver>, own: Option<PublicKey>) -> Self {
        self.pkarr = Some(Pkarr { resolver, own });
        self
    }

    /// The response to `request`, sized for `transport`, from what is at
    /// hand; [`Reply::Resolve`] when a pkarr packet must be fetched first.
    pub fn answer(&self, request: &[u8], transport: Transport) -> Reply {
        self.respond(request, transport, None)
    }

    /// The response to `request`, fetching a pkarr packet when needed.
    pub async fn answer_resolving(&self, request: &[u8], transport: Transport) -> Reply {
        match self.answer(request, transport) {
            Reply::Resolve(key) => {
                let looked = match &self.pkarr {
                    Some(pkarr) => pkarr.resolver.resolve(&key).await.map_err(|error| {
                        tracing::debug!(key = %key.to_z32(), "pkarr lookup failed: {error}");
                    }),
                    None => Ok(None),
                };
                match self.respond(request, transport, Some(looked)) {
                    // Never loop: a second Resolve means nothing was found.
                    Reply::Resolve(_) => Reply::Drop,
                    reply => reply,
                }
            }
            reply => reply,
        }
    }

    fn respond(&self, request: &[u8], transport: Transport, looked: Option<Looked>) -> Reply {
        let message = match Message::from_vec(request) {
            Ok(message) => message,
            Err(_) => return format_error(request),
        };
        if message.metadata.message_type != MessageType::Query {
            return Reply::Drop;
        }
        let limit = match transport {
            Transport::Stream => usize::from(u16::MAX),
            Transport::Udp => message
                .edns
                .as_ref()
                .map_or(512, |edns| edns.max_payload().clamp(512, UDP_PAYLOAD))
                .into(),
        };
        let mut response = Message::response(message.metadata.id, message.metadata.op_code);
        response.metadata.recursion_desired = message.metadata.recursion_desired;
        response.add_queries(message.queries.iter().cloned());
        if message.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(UDP_PAYLOAD);
            response.set_edns(edns);
        }
        match self.fill(&message, &mut response, looked) {
            Filled::Done(max_age) => encode(response, limit, max_age),
            Filled::Resolve(key) => Reply::Resolve(key),
        }
    }

    /// Fills `response` for `request`.
    fn fill(&self, request: &Message, response: &mut Message, looked: Option<Looked>) -> Filled {
        let code = |response: &mut Message, code| {
            response.metadata.response_code = code;
            Filled::Done(0)
        };
        if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            return code(response, ResponseCode::BADVERS);
        }
        if request.metadata.op_code != OpCode::Query {
            return code(response, ResponseCode::NotImp);
        }
        let [query] = request.queries.as_slice() else {
            return code(response, ResponseCode::FormErr);
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return code(response, ResponseCode::Refused);
        }
        if matches!(
            query.query_type(),
            RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        ) {
            return code(response, ResponseCode::Refused);
        }
        let zones = self.zones.current();
        let asked = LowerName::new(query.name());
        if let Some(zone) = zones.zone_for(&asked) {
            response.metadata.authoritative = true;
            return Filled::Done(answer_in_zone(zone, query, response));
        }
        let (Some(pkarr), Some(key)) = (&self.pkarr, pkarr_key(query.name())) else {
            return code(response, ResponseCode::Refused);
        };
        let looked = match looked {
            Some(looked) => looked,
            None => match pkarr.resolver.known(&key) {
                Some(known) => Ok(known),
                None => return Filled::Resolve(key),
            },
        };
        match looked {
            Ok(Some(packet)) => {
                response.metadata.authoritative = pkarr.own.as_ref() == Some(&key);
                Filled::Done(answer_from_packet(&packet, query, response))
            }
            Ok(None) => code(response, ResponseCode::NXDomain),
            Err(()) => code(response, ResponseCode::ServFail),
        }
    }
}

/// The pkarr key a name is under: its last label, when that is a key's
/// z-base-32 form.
pub fn pkarr_key(name: &hickory_proto::rr::Name) -> Option<PublicKey> {
    let last = name.iter().next_back()?;
    if last.len() != 52 {
        return None;
    }
    PublicKey::try_from(
        std::str::from_utf8(last)
            .ok()?
            .to_ascii_lowercase()
            .as_str(),
    )
    .ok()
}

/// Answers `query` from a pkarr packet: the records at the asked name of
/// the asked type (or its CNAME), NODATA when the name has others or names
/// below it, NXDOMAIN otherwise.
fn answer_from_packet(packet: &SignedPacket, query: &Query, response: &mut Message) -> u32 {
    let Ok(records) = Message::from_vec(&packet.encoded_packet()) else {
        response.metadata.response_code = ResponseCode::ServFail;
        return 0;
    };
    let asked = LowerName::new(query.name());
    let kind = query.query_type();
    let mut exists = false;
    let mut max_age = u32::MAX;
    for record in &records.answers {
        let owner = LowerName::new(&record.name);
        if owner != asked {
            exists |= asked.zone_of(&owner);
            continue;
        }
        exists = true;
        let wanted = record.record_type() == kind
            || (record.record_type() == RecordType::CNAME && kind != RecordType::CNAME);
        if wanted {
            let mut record = record.clone();
            record.name = query.name().clone();
            max_age = max_age.min(record.ttl);
            response.add_answer(record);
        }
    }
    if !exists {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    if max_age == u32::MAX {
        // Nothing to cache by: as long as the packet lives.
        packet.ttl(pkarr::DEFAULT_MINIMUM_TTL, pkarr::DEFAULT_MAXIMUM_TTL)
    } else {
        max_age
    }
}

/// Answers `query` from `zone`, following CNAMEs inside it.
fn answer_in_zone(zone: &Zone, query: &Query, response: &mut Message) -> u32 {
    let kind = query.query_type();
    if kind == RecordType::ANY {
        // RFC 8482: one small synthesized record instead of everything,
        // which would make the node an amplifier.
        if !zone.exists(&LowerName::new(query.name())) {
            return negative(zone, response, ResponseCode::NXDomain);
        }
        let hinfo = HINFO::new("RFC8482".into(), String::new());
        response.add_answer(Record::from_rdata(
            query.name().clone(),
            ANY_TTL,
            RData::HINFO(hinfo),
        ));
        return ANY_TTL;
    }
    let mut name = query.name().clone();
    let mut max_age = u32::MAX;
    for step in 0..=MAX_CHAIN {
        let key = LowerName::new(&name);
        match zone.find(&key, kind) {
            Found::Records(records) => {
                for record in records {
                    let mut record = record.clone();
                    // The asker's spelling of its own name (0x20 clients).
                    if step == 0 {
                        record.name = name.clone();
                    }
                    max_age = max_age.min(record.ttl);
                    response.add_answer(record);
                }
                return max_age;
            }
            Found::Cname(cname) => {
                let mut record = cname.clone();
                if step == 0 {
                    record.name = name.clone();
                }
                max_age = max_age.min(record.ttl);
                let RData::CNAME(target) = &record.data else {
                    return max_age;
                };
                let target = target.0.clone();
                response.add_answer(record);
                if step == MAX_CHAIN || !zone.contains(&target) {
                    // The asker's resolver follows the rest.
                    return max_age;
                }
                name = target;
            }
            Found::NoData => {
                return negative(zone, response, ResponseCode::NoError).min(max_age);
            }
            Found::NxDomain => {
                // After a CNAME the code is the last name's (RFC 6604).
                return negative(zone, response, ResponseCode::NXDomain).min(max_age);
            }
        }
    }
    max_age
}

/// NXDOMAIN or NODATA: the zone's SOA in the authority section (RFC 2308).
fn negative(zone: &Zone, response: &mut Message, code: ResponseCode) -> u32 {
    response.metadata.response_code = code;
    match zone.negative_soa() {
        Some(soa) => {
            let ttl = soa.ttl;
            response.add_authority(soa);
            ttl
        }
        None => 0,
    }
}

/// Encodes `response`, truncating it to `limit` bytes (TC set, answers
/// dropped) when it does not fit.
fn encode(response: Message, limit: usize, max_age: u32) -> Reply {
    let code = response.metadata.response_code;
    let max_age = if max_age == u32::MAX { 0 } else { max_age };
    match response.to_bytes() {
        Ok(bytes) if bytes.len() <= limit => Reply::Send(Answered {
            bytes,
            code,
            max_age,
        }),
        Ok(_) => match response.truncate().to_bytes() {
            Ok(bytes) if bytes.len() <= limit => Reply::Send(Answered {
                bytes,
                code,
                max_age: 0,
            }),
            _ => server_failure(&response),
        },
        Err(_) => server_failure(&response),
    }
}

fn server_failure(response: &Message) -> Reply {
    let message = Message::error_msg(
        response.metadata.id,
        response.metadata.op_code,
        ResponseCode::ServFail,
    );
    match message.to_bytes() {
        Ok(bytes) => Reply::Send(Answered {
            bytes,
            code: ResponseCode::ServFail,
            max_age: 0,
        }),
        Err(_) => Reply::Drop,
    }
}

/// FORMERR for a query whose header can be read (RFC 1035 §4.1.1); nothing
/// for anything shorter or for a response.
fn format_error(request: &[u8]) -> Reply {
    let Some(header) = request.get(..12) else {
        return Reply::Drop;
    };
    let is_response = header[2] & 0x80 != 0;
    if is_response {
        return Reply::Drop;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    let op_code = OpCode::from_u8((header[2] >> 3) & 0x0f);
    let message = Message::error_msg(id, op_code, ResponseCode::FormErr);
    match message.to_bytes() {
        Ok(bytes) => Reply::Send(Answered {
            bytes,
            code: ResponseCode::FormErr,
            max_age: 0,
        }),
        Err(_) => Reply::Drop,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::store::parse_value;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    async fn answerer() -> (tempfile::TempDir, Answerer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ZoneStore::open(dir.path(), &[name("example.net.")]).unwrap());
        let sets: &[(&str, RecordType, &str)] = &[
            ("www.example.net.", RecordType::A, "192.0.2.1"),
            ("alias.example.net.", RecordType::CNAME, "www.example.net."),
            (
                "dangling.example.net.",
                RecordType::CNAME,
                "gone.example.net.",
            ),
            ("out.example.net.", RecordType::CNAME, "www.example.org."),
            (
                "loop1.example.net.",
                RecordType::CNAME,
                "loop2.example.net.",
            ),
            (
                "loop2.example.net.",
                RecordType::CNAME,
                "loop1.example.net.",
            ),
        ];
        for (owner, kind, value) in sets {
            let value = parse_value(*kind, value).unwrap();
            store
                .change(&name(owner), |zone| {
                    zone.with_set(&name(owner), *kind, 300, vec![value])
                })
                .await
                .unwrap();
        }
        (dir, Answerer::new(store))
    }

    fn query(qname: &str, kind: RecordType, edns: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        // from_ascii keeps the case, as a 0x20 client sends it.
        message.add_query(Query::query(Name::from_ascii(qname).unwrap(), kind));
        if edns {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            message.set_edns(edns);
        }
        message.to_bytes().unwrap()
    }

    fn ask(answerer: &Answerer, request: &[u8]) -> Message {
        match answerer.answer(request, Transport::Udp) {
            Reply::Send(answered) => Message::from_vec(&answered.bytes).unwrap(),
            other => panic!("no response: {other:?}"),
        }
    }

    #[tokio::test]
    async fn answers_nodata_nxdomain_and_refusals() {
        let (_dir, answerer) = answerer().await;
        let reply = ask(&answerer, &query("WWW.example.net.", RecordType::A, true));
        assert_eq!(reply.metadata.id, 0x1234);
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].name.to_string(), "WWW.example.net.");
        assert!(reply.edns.is_some());

        let nodata = ask(
            &answerer,
            &query("www.example.net.", RecordType::AAAA, false),
        );
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(nodata.authorities[0].ttl, 300);

        let nx = ask(&answerer, &query("nope.example.net.", RecordType::A, false));
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);

        let refused = ask(&answerer, &query("example.org.", RecordType::A, false));
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        assert!(!refused.metadata.authoritative);
        let axfr = ask(&answerer, &query("example.net.", RecordType::AXFR, false));
        assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn cnames_are_chased_inside_the_zone_only() {
        let (_dir, answerer) = answerer().await;
        let reply = ask(
            &answerer,
            &query("alias.example.net.", RecordType::A, false),
        );
        let kinds: Vec<RecordType> = reply.answers.iter().map(Record::record_type).collect();
        assert_eq!(kinds, [RecordType::CNAME, RecordType::A]);
        let dangling = ask(
            &answerer,
            &query("dangling.example.net.", RecordType::A, false),
        );
        assert_eq!(dangling.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(dangling.answers.len(), 1);
        let out = ask(&answerer, &query("out.example.net.", RecordType::A, false));
        assert_eq!(out.answers.len(), 1);
        assert_eq!(out.metadata.response_code, ResponseCode::NoError);
        let looped = ask(
            &answerer,
            &query("loop1.example.net.", RecordType::A, false),
        );
        assert_eq!(looped.answers.len(), MAX_CHAIN + 1);
        let cname = ask(
            &answerer,
            &query("alias.example.net.", RecordType::CNAME, false),
        );
        assert_eq!(cname.answers.len(), 1);
    }

    #[tokio::test]
    async fn bad_input_gets_formerr_or_nothing() {
        let (_dir, answerer) = answerer().await;
        assert_eq!(answerer.answer(b"", Transport::Udp), Reply::Drop);
        assert_eq!(answerer.answer(&[0u8; 11], Transport::Udp), Reply::Drop);
        // A header claiming one question, then nothing.
        let mut truncated = query("www.example.net.", RecordType::A, false);
        truncated.truncate(14);
        let Reply::Send(answered) = answerer.answer(&truncated, Transport::Udp) else {
            panic!("no FORMERR");
        };
        assert_eq!(answered.code, ResponseCode::FormErr);
        // A compression pointer to itself.
        let mut looped = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend([0xc0, 12, 0, 1, 0, 1]);
        let Reply::Send(answered) = answerer.answer(&looped, Transport::Udp) else {
            panic!("no FORMERR");
        };
        assert_eq!(answered.code, ResponseCode::FormErr);
        // A response is never answered.
        let mut response = query("www.example.net.", RecordType::A, false);
        response[2] |= 0x80;
        assert_eq!(answerer.answer(&response, Transport::Udp), Reply::Drop);
        // Two questions.
        let mut two = Message::query();
        two.add_query(Query::query(name("a.example.net."), RecordType::A));
        two.add_query(Query::query(name("b.example.net."), RecordType::A));
        let reply = ask(&answerer, &two.to_bytes().unwrap());
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    #[tokio::test]
    async fn large_answers_are_truncated_over_udp_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ZoneStore::open(dir.path(), &[name("example.net.")]).unwrap());
        let values: Vec<RData> = (0..60)
            .map(|i| parse_value(RecordType::A, &format!("192.0.2.{i}")).unwrap())
            .collect();
        store
            .change(&name("big.example.net."), |zone| {
                zone.with_set(&name("big.example.net."), RecordType::A, 60, values)
            })
            .await
            .unwrap();
        let answerer = Answerer::new(store);
        let request = query("big.example.net.", RecordType::A, false);
        let udp = ask(&answerer, &request);
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        let Reply::Send(stream) = answerer.answer(&request, Transport::Stream) else {
            panic!("no response");
        };
        let stream = Message::from_vec(&stream.bytes).unwrap();
        assert!(!stream.metadata.truncation);
        assert_eq!(stream.answers.len(), 60);
        // With EDNS the datagram may be larger: 60 A records fit in 1232.
        let edns = ask(&answerer, &query("big.example.net.", RecordType::A, true));
        assert!(!edns.metadata.truncation);
    }

    #[tokio::test]
    async fn pkarr_names_are_answered_from_signed_packets() {
        use crate::packets::PacketStore;
        use crate::publish::NodeRecord;

        let dir = tempfile::tempdir().unwrap();
        let zones = Arc::new(ZoneStore::open(dir.path(), &[]).unwrap());
        let store = Arc::new(PacketStore::open(&dir.path().join("pkarr"), 10).unwrap());
        let keypair = pkarr::Keypair::random();
        let record = NodeRecord {
            node_id: "ed25519:00".into(),
            port: 4433,
            addresses: vec!["127.0.0.1".parse().unwrap()],
            alpns: vec!["alknet/call".into(), "doq".into()],
            ttl: 600,
        };
        store.put(record.sign(&keypair).unwrap()).await.unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(alknet_core::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let resolver = Arc::new(Resolver::new(store, Vec::new(), http, None, 10));
        let answerer = Answerer::new(zones).with_pkarr(resolver, Some(keypair.public_key()));
        let z32 = keypair.public_key().to_z32();

        let txt = ask(
            &answerer,
            &query(&format!("_alknet.{z32}."), RecordType::TXT, false),
        );
        assert!(txt.metadata.authoritative);
        assert_eq!(txt.answers.len(), 1);
        assert!(
            txt.answers[0].data.to_string().contains("port=4433"),
            "{txt:?}"
        );
        let address = ask(&answerer, &query(&format!("{z32}."), RecordType::A, false));
        assert_eq!(address.answers[0].data.to_string(), "127.0.0.1");
        assert_eq!(address.answers[0].ttl, 600);
        let nodata = ask(
            &answerer,
            &query(&format!("{z32}."), RecordType::AAAA, false),
        );
        assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        let nx = ask(
            &answerer,
            &query(&format!("nope.{z32}."), RecordType::A, false),
        );
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

        // Another key is not at hand: it must be looked up, and with no
        // relay to ask it does not exist.
        let other = pkarr::Keypair::random().public_key().to_z32();
        let request = query(&format!("{other}."), RecordType::A, false);
        assert!(matches!(
            answerer.answer(&request, Transport::Udp),
            Reply::Resolve(_)
        ));
        let Reply::Send(answered) = answerer.answer_resolving(&request, Transport::Udp).await
        else {
            panic!("no answer");
        };
        assert_eq!(answered.code, ResponseCode::NXDomain);
        // Not a key: refused as outside every zone.
        let refused = ask(&answerer, &query("a.b.c.", RecordType::A, false));
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    }
}

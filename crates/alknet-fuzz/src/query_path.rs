//! Arbitrary bytes as a DNS request through the whole query path
//! (`Answerer::answer`, over UDP and over a stream) against a zone with
//! every served type, CNAME chains and a loop.
//!
//! Invariants: no panic; a reply is a response that parses, carries the
//! request's id, and fits its transport (1232 bytes over UDP).

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use alknet_dns::answer::{Answerer, Reply, Transport, UDP_PAYLOAD};
use alknet_dns::store::{ZoneStore, parse_value, record_type};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::Name;

fn answerer() -> &'static Answerer {
    static ANSWERER: OnceLock<(tempfile::TempDir, Answerer)> = OnceLock::new();
    &ANSWERER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let origin = Name::from_str("example.net.").unwrap();
            let store = Arc::new(ZoneStore::open(dir.path(), &[origin]).unwrap());
            let sets: &[(&str, &str, &[&str])] = &[
                ("example.net.", "NS", &["ns1.example.net."]),
                ("example.net.", "MX", &["10 mail.example.net."]),
                ("example.net.", "TXT", &["\"v=spf1 -all\""]),
                ("www.example.net.", "A", &["192.0.2.1", "192.0.2.2"]),
                ("www.example.net.", "AAAA", &["2001:db8::1"]),
                ("www.example.net.", "HTTPS", &["1 . alpn=h2"]),
                ("alias.example.net.", "CNAME", &["www.example.net."]),
                ("a.b.c.example.net.", "CAA", &["0 issue \"ca.example\""]),
                ("loop1.example.net.", "CNAME", &["loop2.example.net."]),
                ("loop2.example.net.", "CNAME", &["loop1.example.net."]),
            ];
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            for (owner, kind, values) in sets {
                let kind = record_type(kind).unwrap();
                let values = values
                    .iter()
                    .map(|v| parse_value(kind, v).unwrap())
                    .collect::<Vec<_>>();
                let name = Name::from_str(owner).unwrap();
                runtime
                    .block_on(store.change(&name, |zone| zone.with_set(&name, kind, 300, values)))
                    .unwrap();
            }
            (dir, Answerer::new(store))
        })
        .1
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(data: &[u8]) {
    for transport in [Transport::Udp, Transport::Stream] {
        let Reply::Send(answered) = answerer().answer(data, transport) else {
            continue;
        };
        let limit = match transport {
            Transport::Udp => usize::from(UDP_PAYLOAD),
            Transport::Stream => usize::from(u16::MAX),
        };
        assert!(
            answered.bytes.len() <= limit,
            "{} bytes",
            answered.bytes.len()
        );
        let reply = Message::from_vec(&answered.bytes).expect("the reply parses");
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.metadata.id.to_be_bytes(), data[..2]);
    }
}

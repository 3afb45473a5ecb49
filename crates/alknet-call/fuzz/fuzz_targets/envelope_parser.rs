//! Arbitrary bytes through the envelope parser and the payload reader.
//! Invariants: no panic; a parsed envelope satisfies §4.1 and round-trips.
#![no_main]

use alknet_call::EventEnvelope;
use alknet_call::envelope::MAX_ID_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = EventEnvelope::parse(data) else {
        return;
    };
    assert!(!envelope.id.is_empty() && envelope.id.len() <= MAX_ID_BYTES);
    if let Err(error) = envelope.event() {
        let call_error = error.to_call_error();
        assert!(call_error.code == "INVALID_INPUT" || call_error.code == "INTERNAL");
    }
    let reparsed = EventEnvelope::parse(&envelope.to_bytes()).expect("re-parses");
    assert_eq!(reparsed, envelope);
});

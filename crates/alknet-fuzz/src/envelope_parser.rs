//! Arbitrary bytes through the envelope parser, the payload reader and the
//! session's one-pass reader. Invariants: no panic; a parsed envelope
//! satisfies §4.1 and round-trips; the session reads every envelope as the
//! envelope parser and the payload reader do.

use alknet_call::ErrorCode;
use alknet_call::envelope::{EnvelopeError, MAX_ID_BYTES};
use alknet_call::{EventEnvelope, Incoming};

/// Checks the invariants above for one input; panics where one fails.
pub fn check(data: &[u8]) {
    let whole = EventEnvelope::parse(data);
    let incoming = Incoming::parse(data);
    match &whole {
        Ok(envelope) => assert_eq!(incoming, Ok(Incoming::from(envelope.clone()))),
        // The session only delimits the payload members it does not use: a
        // value that is JSON but fails to decode (too deep, a number out of
        // range, an escape that is no character) fails the whole envelope and
        // not the session's read.
        Err(EnvelopeError::Json(_)) => match &incoming {
            Ok(_) => assert!(
                serde_json::from_slice::<&serde_json::value::RawValue>(data).is_ok(),
                "accepted bytes that are not JSON"
            ),
            Err(error) => assert!(matches!(error, EnvelopeError::Json(_))),
        },
        Err(error) => assert_eq!(incoming.as_ref(), Err(error)),
    }
    let Ok(envelope) = whole else {
        return;
    };
    assert!(!envelope.id.is_empty() && envelope.id.len() <= MAX_ID_BYTES);
    if let Err(error) = envelope.event() {
        let call_error = error.to_call_error();
        assert!(
            call_error.code == ErrorCode::InvalidInput || call_error.code == ErrorCode::Internal
        );
    }
    let reparsed = EventEnvelope::parse(&envelope.to_bytes()).expect("re-parses");
    assert_eq!(reparsed, envelope);
}

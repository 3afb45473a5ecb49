//! The SFTP packet decoder, as the session uses it: the input is one packet
//! body (type byte and payload, the `u32` length already read) through
//! russh-sftp's `Packet::try_from(&mut Bytes)`.
//!
//! Invariants: decoding never panics; a decoded packet encodes again
//! (`Bytes::try_from(Packet)`) without error, into a frame whose length
//! prefix counts the rest and whose type byte is the input's; that frame's
//! body decodes completely (nothing left over) to a packet of the same kind
//! and request id, which encodes to the same bytes. `INIT` and `VERSION`
//! keep their extensions in a `HashMap`, whose order is not kept: for those
//! the version and the map must survive instead.

use std::collections::HashMap;
use std::mem::{Discriminant, discriminant};

use bytes::{Buf, Bytes};
use russh_sftp::protocol::Packet;

/// The version and extensions of `INIT` or `VERSION`.
fn hello(packet: &Packet) -> Hello {
    match packet {
        Packet::Init(init) => Some((init.version, init.extensions.clone())),
        Packet::Version(version) => Some((version.version, version.extensions.clone())),
        _ => None,
    }
}

/// Encodes `packet`, checks the frame, and decodes its body again.
fn round_trip(packet: Packet, kind: u8) -> (Bytes, Packet) {
    let frame = Bytes::try_from(packet).expect("a decoded packet encodes");
    assert!(frame.len() >= 5, "a frame holds a length and a type");
    let length = u32::from_be_bytes(frame[..4].try_into().expect("four bytes")) as usize;
    assert_eq!(length, frame.len() - 4, "the length prefix counts the rest");
    assert_eq!(frame[4], kind, "the type byte is kept");
    let mut body = frame.slice(4..);
    let again = Packet::try_from(&mut body).expect("an encoded packet decodes");
    assert_eq!(
        body.remaining(),
        0,
        "decoding an encoded packet leaves bytes over"
    );
    (frame, again)
}

/// The version and extensions of `INIT` or `VERSION`, as [`hello`] reads them.
type Hello = Option<(u32, HashMap<String, String>)>;

/// Checks that `after` is `before`'s kind, request id and hello.
fn same_packet(before: (Discriminant<Packet>, u32, &Hello), after: &Packet) {
    assert_eq!(discriminant(after), before.0, "the packet changed kind");
    assert_eq!(after.get_request_id(), before.1, "the request id changed");
    assert_eq!(&hello(after), before.2, "the version or extensions changed");
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(input: &[u8]) {
    let mut body = Bytes::copy_from_slice(input);
    let Ok(first) = Packet::try_from(&mut body) else {
        return;
    };
    let kind = discriminant(&first);
    let type_byte = input[0];
    let (id, first_hello) = (first.get_request_id(), hello(&first));

    let (frame, second) = round_trip(first, type_byte);
    same_packet((kind, id, &first_hello), &second);
    let (frame2, third) = round_trip(second, type_byte);
    same_packet((kind, id, &first_hello), &third);
    if first_hello.is_none() {
        // Whatever the first decoding dropped or repaired (unknown
        // attribute flags, invalid UTF-8, trailing bytes), what it kept
        // encodes the same way every time.
        assert_eq!(frame2, frame, "encode ∘ decode is not stable");
    } else {
        assert_eq!(frame2.len(), frame.len(), "the hello changed length");
    }
}

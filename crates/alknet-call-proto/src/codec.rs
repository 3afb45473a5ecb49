//! Framing for byte streams (docs/protocol.md §3.1): a 4-byte big-endian length,
//! then exactly that many bytes of UTF-8 JSON holding one envelope.
//!
//! Sans-IO: the transport pushes whatever bytes it read and pulls complete
//! envelopes out, so every rule is tested here without a socket. The length is
//! checked as soon as its four bytes are known — before the body is read or
//! room is made for it — so a peer cannot make the node buffer more than one
//! maximum-size frame plus one read's worth of bytes. Any violation is a
//! [`FrameError`] after which the decoder refuses further input: the stream (or
//! the TCP+TLS connection) that carried it must be closed, and nothing is sent
//! back, since no id in that frame can be trusted.

use crate::envelope::{EnvelopeError, EventEnvelope, Incoming};

/// The largest frame any configuration may allow: 64 MiB.
pub const ABSOLUTE_MAX_FRAME: usize = alknet_core::config::ABSOLUTE_MAX_FRAME;
/// The default largest frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16_777_216;
const HEADER_LEN: usize = 4;
/// Room a decoder keeps once it has nothing buffered: a large frame's room
/// is given back, so that a session which once received one does not hold it
/// for the rest of its life.
const IDLE_CAPACITY: usize = 64 * 1024;

/// A framing violation (a protocol error, §3.1 rule 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame announced length 0.
    #[error("frame length 0 is not allowed")]
    Empty,
    /// A frame announced more than the limit.
    #[error("frame length {length} exceeds limit {limit}")]
    TooLarge {
        /// The announced length.
        length: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({received} of {expected} bytes)")]
    Truncated {
        /// Bytes the frame needed (header included).
        expected: usize,
        /// Bytes that arrived.
        received: usize,
    },
    /// The body is not a valid envelope.
    #[error("invalid EventEnvelope: {0}")]
    Envelope(EnvelopeError),
}

/// Turns a byte stream into envelopes.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: usize,
    buffer: Vec<u8>,
    /// Bytes of `buffer` before this offset are consumed.
    start: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// A decoder accepting frames up to `max_frame` bytes, clamped to
    /// 1..=[`ABSOLUTE_MAX_FRAME`].
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.clamp(1, ABSOLUTE_MAX_FRAME),
            buffer: Vec::new(),
            start: 0,
            failed: None,
        }
    }

    /// The limit in force.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Appends bytes read from the transport.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 && self.start >= self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    /// The announced body length of the frame at the front whose header has
    /// arrived but not yet all of its body; `None` otherwise (and for a length
    /// that [`FrameDecoder::next_frame`] will refuse).
    pub fn partial_frame_len(&self) -> Option<usize> {
        if self.failed.is_some() {
            return None;
        }
        let available = &self.buffer[self.start..];
        let length = u32::from_be_bytes(*available.first_chunk::<HEADER_LEN>()?) as usize;
        (length > 0 && length <= self.max_frame && available.len() < HEADER_LEN + length)
            .then_some(length)
    }

    /// The next complete frame's body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let available = &self.buffer[self.start..];
        let Some(header) = available.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*header);
        if length == 0 {
            return Err(self.fail(FrameError::Empty));
        }
        if length as usize > self.max_frame {
            return Err(self.fail(FrameError::TooLarge {
                length: u64::from(length),
                limit: self.max_frame,
            }));
        }
        let total = HEADER_LEN + length as usize;
        if available.len() < total {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + total;
        self.start += total;
        Ok(Some(&self.buffer[body]))
    }

    /// The next complete envelope, `Ok(None)` if more bytes are needed.
    pub fn next_envelope(&mut self) -> Result<Option<EventEnvelope>, FrameError> {
        self.next_parsed(EventEnvelope::parse)
    }

    /// The next complete envelope with its payload read, as a session
    /// applies it; `Ok(None)` if more bytes are needed.
    pub fn next_incoming(&mut self) -> Result<Option<Incoming>, FrameError> {
        self.next_parsed(Incoming::parse)
    }

    fn next_parsed<T>(
        &mut self,
        parse: fn(&[u8]) -> Result<T, EnvelopeError>,
    ) -> Result<Option<T>, FrameError> {
        let parsed = match self.next_frame()? {
            None => return Ok(None),
            Some(body) => parse(body),
        };
        if self.start == self.buffer.len() && self.buffer.capacity() > IDLE_CAPACITY {
            self.buffer = Vec::new();
            self.start = 0;
        }
        parsed
            .map(Some)
            .map_err(|error| self.fail(FrameError::Envelope(error)))
    }

    /// Call at end of stream: fine at a frame boundary, a protocol error
    /// inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let available = &self.buffer[self.start..];
        if available.is_empty() {
            return Ok(());
        }
        let expected = match available.first_chunk::<HEADER_LEN>() {
            Some(header) => HEADER_LEN + u32::from_be_bytes(*header) as usize,
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            expected,
            received: available.len(),
        })
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = Some(error.clone());
        self.buffer = Vec::new();
        self.start = 0;
        error
    }
}

/// Encodes one envelope as a frame (header and body, contiguous), or refuses
/// if its body would exceed `max_frame` (§3.1 rule 4). Anything that
/// serializes as an envelope will do (an [`EventEnvelope`], or a reply
/// borrowed from its output); the body is written once, straight after room
/// left for its header.
pub fn encode_frame<T: serde::Serialize>(
    envelope: &T,
    max_frame: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&[0; HEADER_LEN]);
    serde_json::to_writer(&mut frame, envelope)
        .expect("an envelope of strings and JSON values always serializes");
    let length = frame.len() - HEADER_LEN;
    let limit = max_frame.clamp(1, ABSOLUTE_MAX_FRAME);
    if length > limit {
        return Err(FrameError::TooLarge {
            length: length as u64,
            limit,
        });
    }
    frame[..HEADER_LEN].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(body);
        bytes
    }

    fn envelope(id: &str) -> EventEnvelope {
        EventEnvelope::responded(id, json!({"n": id}))
    }

    #[test]
    fn frames_split_anywhere_are_reassembled_in_order() {
        let mut stream = Vec::new();
        for i in 0..5 {
            stream.extend(encode_frame(&envelope(&i.to_string()), DEFAULT_MAX_FRAME).unwrap());
        }
        // One byte at a time, the worst split there is.
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut seen = Vec::new();
        for byte in &stream {
            decoder.push(std::slice::from_ref(byte));
            while let Some(e) = decoder.next_envelope().unwrap() {
                seen.push(e);
            }
        }
        assert_eq!(
            seen,
            (0..5).map(|i| envelope(&i.to_string())).collect::<Vec<_>>()
        );
        assert_eq!(decoder.buffered(), 0);
        decoder.finish().unwrap();

        // All at once.
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&stream);
        let mut count = 0;
        while decoder.next_envelope().unwrap().is_some() {
            count += 1;
        }
        assert_eq!(count, 5);
    }

    #[test]
    fn length_zero_is_a_protocol_error() {
        // docs/protocol.md §16 item 3, first case.
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&[0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn a_huge_length_is_refused_before_any_body_arrives() {
        // docs/protocol.md §16 item 3, second case, and the example log reason of §3.1.
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&[0xff, 0xff, 0xff, 0xff]);
        let error = decoder.next_frame().unwrap_err();
        assert_eq!(
            error.to_string(),
            "frame length 4294967295 exceeds limit 16777216"
        );
        // The decoder stays failed and holds nothing.
        decoder.push(&[b'{'; 1024]);
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.next_frame().unwrap_err(), error);
        assert_eq!(decoder.finish().unwrap_err(), error);
    }

    #[test]
    fn a_body_that_is_not_an_envelope_is_a_protocol_error() {
        // docs/protocol.md §16 item 3, third case: the 5-byte frame `{nope`.
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&frame(b"{nope"));
        assert!(matches!(
            decoder.next_envelope(),
            Err(FrameError::Envelope(EnvelopeError::Json(_)))
        ));
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&frame(br#"{"type":"x","id":"","payload":{}}"#));
        assert_eq!(
            decoder.next_envelope().unwrap_err().to_string(),
            "invalid EventEnvelope: envelope `id` is empty"
        );
    }

    #[test]
    fn the_configured_limit_is_inclusive_and_clamped_to_64_mib() {
        let body = br#"{"type":"call.completed","id":"a","payload":{}}"#;
        let mut exact = FrameDecoder::new(body.len());
        exact.push(&frame(body));
        assert!(exact.next_envelope().unwrap().is_some());
        let mut under = FrameDecoder::new(body.len() - 1);
        under.push(&frame(body));
        assert!(matches!(
            under.next_frame(),
            Err(FrameError::TooLarge { .. })
        ));

        assert_eq!(
            FrameDecoder::new(usize::MAX).max_frame(),
            ABSOLUTE_MAX_FRAME
        );
        assert_eq!(FrameDecoder::new(0).max_frame(), 1);
        let mut decoder = FrameDecoder::new(usize::MAX);
        decoder.push(&((ABSOLUTE_MAX_FRAME + 1) as u32).to_be_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                limit: ABSOLUTE_MAX_FRAME,
                ..
            })
        ));
    }

    #[test]
    fn end_of_stream_inside_a_frame_is_a_protocol_error() {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        decoder.push(&frame(b"{}")[..5]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated {
                expected: 6,
                received: 5
            })
        );
        let mut header_only = FrameDecoder::new(DEFAULT_MAX_FRAME);
        header_only.push(&[0, 0]);
        assert_eq!(
            header_only.finish(),
            Err(FrameError::Truncated {
                expected: 4,
                received: 2
            })
        );
    }

    #[test]
    fn the_encoder_refuses_frames_above_its_limit() {
        let big = EventEnvelope::responded("r", json!("x".repeat(100)));
        assert!(matches!(
            encode_frame(&big, 50),
            Err(FrameError::TooLarge { limit: 50, .. })
        ));
        let frame = encode_frame(&big, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(
            u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            frame.len() - 4
        );
        assert_eq!(frame[4], b'{');
    }

    #[test]
    fn a_partial_frame_announces_its_length_until_it_is_whole() {
        let frame = encode_frame(&envelope("a"), DEFAULT_MAX_FRAME).unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        assert_eq!(decoder.partial_frame_len(), None);
        decoder.push(&frame[..3]);
        assert_eq!(decoder.partial_frame_len(), None);
        decoder.push(&frame[3..6]);
        assert_eq!(decoder.partial_frame_len(), Some(frame.len() - 4));
        decoder.push(&frame[6..]);
        assert_eq!(decoder.partial_frame_len(), None);
        let mut over = FrameDecoder::new(10);
        over.push(&100u32.to_be_bytes());
        assert_eq!(over.partial_frame_len(), None);
    }

    #[test]
    fn a_large_frame_room_is_given_back_once_it_is_read() {
        let big = encode_frame(
            &EventEnvelope::responded("r", json!("x".repeat(1_000_000))),
            DEFAULT_MAX_FRAME,
        )
        .unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for chunk in big.chunks(64 * 1024) {
            decoder.push(chunk);
        }
        assert!(decoder.buffer.capacity() >= big.len());
        assert!(decoder.next_incoming().unwrap().is_some());
        assert!(
            decoder.buffer.capacity() <= IDLE_CAPACITY,
            "kept {} bytes of room",
            decoder.buffer.capacity()
        );
    }

    #[test]
    fn consumed_bytes_are_released_as_frames_are_read() {
        let one = encode_frame(&envelope("a"), DEFAULT_MAX_FRAME).unwrap();
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for _ in 0..10_000 {
            decoder.push(&one);
            assert!(decoder.next_envelope().unwrap().is_some());
        }
        assert!(
            decoder.buffer.capacity() < 64 * one.len(),
            "the buffer kept consumed frames"
        );
    }
}

//! Arbitrary bytes, split at arbitrary points, through the frame decoder.
//! Invariants: no panic; the decoder never buffers more than one maximum frame
//! plus one push; after an error it stays failed and holds nothing.

use alknet_call::codec::{FrameDecoder, encode_frame};

const MAX_FRAME: usize = 4096;

/// Checks the invariants above for one input; panics where one fails.
pub fn check(data: &[u8]) {
    let Some((&split_seed, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split_seed).max(1);
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let mut failed = false;
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        assert!(decoder.buffered() <= MAX_FRAME + 4 + chunk * 2);
        loop {
            match decoder.next_envelope() {
                Ok(Some(envelope)) => {
                    // What decodes re-encodes within the same limit.
                    let frame = encode_frame(&envelope, usize::MAX).expect("re-encodes");
                    let mut again = FrameDecoder::new(usize::MAX);
                    again.push(&frame);
                    assert_eq!(again.next_envelope().expect("round trip"), Some(envelope));
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            assert_eq!(decoder.buffered(), 0);
            assert!(decoder.next_frame().is_err());
        }
    }
    let _ = decoder.finish();
}

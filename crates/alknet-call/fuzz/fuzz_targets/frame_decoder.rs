//! Drives [`alknet_fuzz::frame_decoder`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::frame_decoder::check(input));

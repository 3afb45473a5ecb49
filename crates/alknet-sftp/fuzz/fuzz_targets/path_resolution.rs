//! Drives [`alknet_fuzz::path_resolution`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::path_resolution::check(input));

//! Drives [`alknet_fuzz::query_path`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::query_path::check(input));

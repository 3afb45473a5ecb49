//! Drives [`alknet_fuzz::envelope_parser`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::envelope_parser::check(input));

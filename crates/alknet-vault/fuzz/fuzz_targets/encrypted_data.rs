//! Drives [`alknet_fuzz::encrypted_data`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::encrypted_data::check(input));

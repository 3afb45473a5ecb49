//! Drives [`alknet_fuzz::sftp_session`]; its module documents the input and the
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| alknet_fuzz::sftp_session::check(input));

//! The fuzz targets' checks, one module per target, each a `check(&[u8])`
//! that panics where an invariant fails.
//!
//! Two drivers share them. cargo-fuzz projects beside each crate
//! (`crates/<crate>/fuzz`, nightly) hand them libFuzzer's inputs; their
//! seed corpora are committed there, and `docs/fuzzing.md` has the commands.
//! This crate's tests (`tests/corpus.rs`, stable, part of the workspace's
//! test run) replay every committed seed and a fixed set of mutations of
//! them, so an input that once crashed a target keeps being checked.

pub mod derivation_path;
pub mod encrypted_data;
pub mod envelope_parser;
pub mod frame_decoder;
pub mod packet_decoder;
pub mod path_resolution;
pub mod query_path;
mod scratch;
pub mod sftp_session;

//! Every fuzz target's committed seeds, then a fixed set of mutations of
//! them, through the target's check. The seeds include the inputs that once
//! found a defect, so each stays a regression test; the mutations (proptest
//! with a fixed RNG seed, so every run tries the same inputs) reach a little
//! past them. Real fuzzing, with coverage feedback, is cargo-fuzz's
//! (`docs/fuzzing.md`).

use std::panic::catch_unwind;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// Mutated inputs tried per target, after its seeds.
const MUTATIONS: u32 = 4096;

/// The seeds of `target` in `crates/<krate>/fuzz/corpus/<target>`, by file
/// name.
fn seeds(krate: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the seeds in {}: {e}", dir.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One of `seeds` with one to eight edits: a byte overwritten, inserted or
/// removed, or the input cut short.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..4), 1..8);
    (prop::sample::select(seeds), edits).prop_map(|(mut input, edits)| {
        for (at, byte, edit) in edits {
            match edit {
                0 if !input.is_empty() => {
                    let i = at.index(input.len());
                    input[i] = byte;
                }
                2 if !input.is_empty() => {
                    input.remove(at.index(input.len()));
                }
                3 => input.truncate(at.index(input.len() + 1)),
                _ => input.insert(at.index(input.len() + 1), byte),
            }
        }
        input
    })
}

/// The text of a panic's payload.
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `check` on every seed of `target`, then on [`MUTATIONS`] mutations.
fn replay(krate: &str, target: &str, check: fn(&[u8])) {
    let seeds = seeds(krate, target);
    for (name, input) in &seeds {
        if let Err(payload) = catch_unwind(|| check(input)) {
            panic!("{target}: the seed {name} fails: {}", message(&*payload));
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: MUTATIONS,
        rng_seed: RngSeed::Fixed(0x616c_6b6e_6574),
        failure_persistence: None,
        ..Config::default()
    });
    let inputs = seeds.into_iter().map(|(_, bytes)| bytes).collect();
    if let Err(failure) = runner.run(&mutated(inputs), |input| {
        check(&input);
        Ok(())
    }) {
        panic!("{target}: a mutated seed fails: {failure}");
    }
}

#[test]
fn frame_decoder() {
    replay(
        "alknet-call",
        "frame_decoder",
        alknet_fuzz::frame_decoder::check,
    );
}

#[test]
fn envelope_parser() {
    replay(
        "alknet-call",
        "envelope_parser",
        alknet_fuzz::envelope_parser::check,
    );
}

#[test]
fn query_path() {
    replay("alknet-dns", "query_path", alknet_fuzz::query_path::check);
}

#[test]
fn packet_decoder() {
    replay(
        "alknet-sftp",
        "packet_decoder",
        alknet_fuzz::packet_decoder::check,
    );
}

#[test]
fn path_resolution() {
    replay(
        "alknet-sftp",
        "path_resolution",
        alknet_fuzz::path_resolution::check,
    );
}

#[test]
fn sftp_session() {
    replay(
        "alknet-sftp",
        "sftp_session",
        alknet_fuzz::sftp_session::check,
    );
}

#[test]
fn derivation_path() {
    replay(
        "alknet-vault",
        "derivation_path",
        alknet_fuzz::derivation_path::check,
    );
}

#[test]
fn encrypted_data() {
    replay(
        "alknet-vault",
        "encrypted_data",
        alknet_fuzz::encrypted_data::check,
    );
}

//! Vault costs: deriving the node identity (cold: from the seed, through
//! SLIP-0010's five HMAC-SHA512s; warm: from the cache), sealing and opening
//! 1 KiB with AES-256-GCM (including base64 and the key lookup), and for
//! scale one Argon2id run at the parameters `alknet init` stores.
//!
//! `cargo bench -p alknet-vault --bench vault`

use std::hint::black_box;

use alknet_vault::at_rest::{Argon2Params, PassphraseSealed};
use alknet_vault::{Mnemonic, Vault, path};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ABOUT: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn derivation(c: &mut Criterion) {
    let mnemonic = Mnemonic::parse(ABOUT).unwrap();
    let seed = mnemonic.to_seed("");
    let identity = path::node_identity();
    let mut group = c.benchmark_group("derive");
    group.bench_function("identity m/74'/0'/0'/0' (cold, no cache)", |b| {
        b.iter(|| {
            black_box(
                alknet_vault::slip10::derive(black_box(seed.as_bytes()), &identity)
                    .unwrap()
                    .ed25519_public_key(),
            )
        })
    });
    let vault = Vault::from_mnemonic(&mnemonic, "");
    vault.node_identity();
    group.bench_function("identity m/74'/0'/0'/0' (cached)", |b| {
        b.iter(|| black_box(vault.derive_extended(black_box(&identity)).unwrap()))
    });
    group.bench_function("mnemonic to seed (BIP39 PBKDF2, 2048 rounds)", |b| {
        b.iter(|| black_box(mnemonic.to_seed(black_box(""))))
    });
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let vault = Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "");
    let plaintext = "s".repeat(1024);
    let sealed = vault.encrypt(&plaintext).unwrap();
    let json = sealed.to_json();
    let mut group = c.benchmark_group("aes-256-gcm 1 KiB");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("seal", |b| {
        b.iter(|| black_box(vault.encrypt(black_box(&plaintext)).unwrap()))
    });
    group.bench_function("open", |b| {
        b.iter(|| black_box(vault.decrypt(black_box(&sealed)).unwrap()))
    });
    group.bench_function("open from JSON", |b| {
        b.iter(|| black_box(vault.decrypt_json(black_box(json.as_bytes())).unwrap()))
    });
    group.finish();
}

fn argon2id(c: &mut Criterion) {
    let sealed = PassphraseSealed::seal(ABOUT, "passphrase", Argon2Params::RECOMMENDED).unwrap();
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.bench_function("open sealed mnemonic (64 MiB, t=3, p=4)", |b| {
        b.iter(|| black_box(sealed.open(black_box("passphrase")).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, derivation, sealing, argon2id);
criterion_main!(benches);

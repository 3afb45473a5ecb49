//! EncryptedData parsing and decryption.
//!
//! The input is used twice:
//! 1. as a JSON document: parsing never panics; whatever parses serialises
//!    and re-parses to itself; decryption either fails with the one opaque
//!    error or (for a genuine blob, as in the seed corpus) yields text that
//!    re-seals and re-opens to the same text;
//! 2. as an XOR mask over the IV ‖ ciphertext ‖ tag of a genuine blob (bytes
//!    past its end are appended): decryption succeeds exactly when the mask
//!    changes nothing.

use std::sync::OnceLock;

use alknet_vault::{DecryptError, EncryptedData, Mnemonic, Vault};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const PLAINTEXT: &str = "fuzzing secret";

struct Fixture {
    vault: Vault,
    genuine: EncryptedData,
    iv_and_data: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mnemonic = Mnemonic::parse(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .expect("valid mnemonic");
        let vault = Vault::from_mnemonic(&mnemonic, "");
        let genuine = vault.encrypt(PLAINTEXT).expect("encrypts");
        let mut iv_and_data = BASE64.decode(&genuine.iv).expect("own base64");
        iv_and_data.extend(BASE64.decode(&genuine.data).expect("own base64"));
        Fixture {
            vault,
            genuine,
            iv_and_data,
        }
    })
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(input: &[u8]) {
    let fx = fixture();

    // 1. The input as a document.
    if let Ok(blob) = EncryptedData::from_json(input) {
        let json = blob.to_json();
        assert_eq!(
            EncryptedData::from_json(json.as_bytes()).expect("re-parses"),
            blob
        );
        match fx.vault.decrypt(&blob) {
            Ok(secret) => {
                let resealed = fx
                    .vault
                    .encrypt_with_version(secret.expose(), blob.key_version)
                    .expect("a version that decrypted can encrypt");
                let reopened = fx.vault.decrypt(&resealed).expect("re-opens");
                assert_eq!(reopened.expose(), secret.expose());
            }
            Err(error) => {
                assert_eq!(error, DecryptError);
                assert_eq!(error.to_string(), "decryption failed");
            }
        }
    }

    // 2. The input as a tamper mask.
    let mut bytes = fx.iv_and_data.clone();
    for (i, &mask) in input.iter().enumerate() {
        match bytes.get_mut(i) {
            Some(byte) => *byte ^= mask,
            None => bytes.push(mask),
        }
    }
    let unchanged = bytes == fx.iv_and_data;
    let mut tampered = fx.genuine.clone();
    tampered.iv = BASE64.encode(&bytes[..12]);
    tampered.data = BASE64.encode(&bytes[12..]);
    match fx.vault.decrypt(&tampered) {
        Ok(secret) => {
            assert!(unchanged, "a tampered blob decrypted");
            assert_eq!(secret.expose(), PLAINTEXT);
        }
        Err(_) => assert!(!unchanged, "the genuine blob did not decrypt"),
    }
}

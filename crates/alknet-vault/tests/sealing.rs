//! AES-256-GCM sealing: round trips, tampering, key versions, IV freshness,
//! rotation, and the frozen JSON format.

use alknet_vault::{
    CURRENT_KEY_VERSION, DecryptError, EncryptedData, Mnemonic, RotateError, Vault,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const ABOUT: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn vault() -> Vault {
    Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "")
}

fn other_vault() -> Vault {
    Vault::from_mnemonic(
        &Mnemonic::parse(
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
        )
        .unwrap(),
        "",
    )
}

#[test]
fn round_trip_in_the_frozen_format() {
    let v = vault();
    for plaintext in ["", "x", "pässwörd 🔑", &"a".repeat(10_000)] {
        let sealed = v.encrypt(plaintext).unwrap();
        assert_eq!(sealed.key_version, CURRENT_KEY_VERSION);
        assert_eq!(BASE64.decode(&sealed.salt).unwrap().len(), 32);
        assert_eq!(BASE64.decode(&sealed.iv).unwrap().len(), 12);
        assert_eq!(
            BASE64.decode(&sealed.data).unwrap().len(),
            plaintext.len() + 16
        );
        let json = sealed.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["data", "iv", "key_version", "salt"]);
        assert_eq!(value["key_version"], 2);
        assert_eq!(v.decrypt_json(json.as_bytes()).unwrap().expose(), plaintext);
    }
}

/// A blob written by an independent implementation (Python's `cryptography`
/// AESGCM under the key of m/74'/2'/0'/0' of `abandon … about`; see
/// tests/python/test_vault_reference.py) opens here.
#[test]
fn blobs_sealed_elsewhere_open() {
    let v = vault();
    let v2 = r#"{"key_version": 2, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "iv": "AAECAwQFBgcICQoL", "data": "fIF6fEKIeG08rNitx50smgaaJGNp0FA1mgUDmSgxPI/DNMpaji8K2Vno9V6veDBel9RKmqTzRg=="}"#;
    assert_eq!(
        v.decrypt_json(v2.as_bytes()).unwrap().expose(),
        "sealed by an independent implementation"
    );
    let v3 = r#"{"key_version": 3, "salt": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "iv": "AAECAwQFBgcICQoL", "data": "G74DmHjTrp91xDorozD6jG9T"}"#;
    assert_eq!(v.decrypt_json(v3.as_bytes()).unwrap().expose(), "v3");
}

#[test]
fn any_flipped_bit_in_iv_or_data_is_refused() {
    let v = vault();
    let sealed = v.encrypt("the secret").unwrap();
    let iv = BASE64.decode(&sealed.iv).unwrap();
    let data = BASE64.decode(&sealed.data).unwrap();
    for bit in 0..iv.len() * 8 {
        let mut tampered = sealed.clone();
        let mut bytes = iv.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        tampered.iv = BASE64.encode(bytes);
        assert_eq!(
            v.decrypt(&tampered).unwrap_err(),
            DecryptError,
            "iv bit {bit}"
        );
    }
    // Ciphertext and the 16-byte tag at its end.
    for bit in 0..data.len() * 8 {
        let mut tampered = sealed.clone();
        let mut bytes = data.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        tampered.data = BASE64.encode(bytes);
        assert_eq!(
            v.decrypt(&tampered).unwrap_err(),
            DecryptError,
            "data bit {bit}"
        );
    }
    // Truncation and extension too.
    let mut short = sealed.clone();
    short.data = BASE64.encode(&data[..data.len() - 1]);
    let mut long = sealed.clone();
    long.data = BASE64.encode([&data[..], &[0]].concat());
    let mut tag_only = sealed.clone();
    tag_only.data = BASE64.encode(&data[data.len() - 16..]);
    for tampered in [short, long, tag_only] {
        assert_eq!(v.decrypt(&tampered).unwrap_err(), DecryptError);
    }
    assert_eq!(v.decrypt(&sealed).unwrap().expose(), "the secret");
}

#[test]
fn every_failure_is_the_same_opaque_error() {
    let v = vault();
    let sealed = v.encrypt("the secret").unwrap();
    let mut cases = Vec::new();
    // Another vault's key.
    cases.push((other_vault().encrypt("the secret").unwrap(), "wrong vault"));
    // The right vault, the wrong key version's key.
    let mut v3 = sealed.clone();
    v3.key_version = 3;
    cases.push((v3, "key version 3 on a v2 blob"));
    let mut v1 = sealed.clone();
    v1.key_version = 1;
    cases.push((v1, "legacy v1"));
    let mut v0 = sealed.clone();
    v0.key_version = 0;
    cases.push((v0, "version 0"));
    let mut huge = sealed.clone();
    huge.key_version = u32::MAX;
    cases.push((huge, "out of range version"));
    let mut bad_b64 = sealed.clone();
    bad_b64.data.insert(0, '*');
    cases.push((bad_b64, "bad base64"));
    let mut unpadded = sealed.clone();
    unpadded.iv = unpadded.iv.trim_end_matches('=').to_owned();
    unpadded.iv.push('A');
    cases.push((unpadded, "iv of 13 bytes"));
    let mut short_salt = sealed.clone();
    short_salt.salt = BASE64.encode([0u8; 16]);
    cases.push((short_salt, "salt of 16 bytes"));
    // Valid AES-GCM over bytes that are not UTF-8: built with the real key.
    {
        use aes_gcm::aead::{Aead, KeyInit};
        let key = v.aes_key(2).unwrap();
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(key.secret_bytes()).unwrap();
        let iv = [9u8; 12];
        let data = cipher
            .encrypt(aes_gcm::Nonce::from_slice(&iv), &[0xff, 0xfe, 0x80][..])
            .unwrap();
        cases.push((
            EncryptedData {
                key_version: 2,
                salt: sealed.salt.clone(),
                iv: BASE64.encode(iv),
                data: BASE64.encode(data),
            },
            "not UTF-8",
        ));
    }
    for (blob, what) in cases {
        let err = v.decrypt(&blob).unwrap_err();
        assert_eq!(err, DecryptError, "{what}");
        assert_eq!(err.to_string(), "decryption failed", "{what}");
    }
    for json in [&b""[..], b"{}", b"[]", b"null", br#"{"key_version":2}"#] {
        assert_eq!(v.decrypt_json(json).unwrap_err(), DecryptError);
    }
    // Unknown fields are refused: the format is frozen.
    let mut value: serde_json::Value = serde_json::from_str(&sealed.to_json()).unwrap();
    value["aad"] = "x".into();
    assert_eq!(
        v.decrypt_json(value.to_string().as_bytes()).unwrap_err(),
        DecryptError
    );
}

#[test]
fn ten_thousand_encryptions_never_repeat_an_iv() {
    let v = vault();
    let mut ivs = std::collections::HashSet::new();
    let mut salts = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let sealed = v.encrypt("same plaintext").unwrap();
        assert!(ivs.insert(sealed.iv.clone()), "IV repeated: {}", sealed.iv);
        salts.insert(sealed.salt);
    }
    assert_eq!(ivs.len(), 10_000);
    assert_eq!(salts.len(), 10_000);
}

#[test]
fn rotate_v2_to_v3_and_back() {
    let v = vault();
    let v2 = v.encrypt("rotating secret").unwrap();
    let v3 = v.rotate(&v2, 3).unwrap();
    assert_eq!(v3.key_version, 3);
    assert_ne!(v3.data, v2.data);
    assert_eq!(v.decrypt(&v3).unwrap().expose(), "rotating secret");
    // v3's ciphertext does not open under v2's key.
    let mut mislabelled = v3.clone();
    mislabelled.key_version = 2;
    assert_eq!(v.decrypt(&mislabelled).unwrap_err(), DecryptError);
    let back = v.rotate(&v3, 2).unwrap();
    assert_eq!(back.key_version, 2);
    assert_ne!(back.iv, v2.iv, "a rotation draws a fresh IV");
    assert_eq!(v.decrypt(&back).unwrap().expose(), "rotating secret");
    // Rotating to a version without a key, or a blob that does not open.
    assert!(matches!(
        v.rotate(&v2, 1).unwrap_err(),
        RotateError::Encrypt(_)
    ));
    assert_eq!(
        other_vault().rotate(&v2, 3).unwrap_err(),
        RotateError::Decrypt(DecryptError)
    );
}

//! Property tests: derivation-path syntax and sealing.

use std::sync::OnceLock;

use alknet_vault::{ChildIndex, DecryptError, DerivationPath, EncryptedData, Mnemonic, Vault};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;

fn vault() -> &'static Vault {
    static VAULT: OnceLock<Vault> = OnceLock::new();
    VAULT.get_or_init(|| {
        Vault::from_mnemonic(
            &Mnemonic::parse(
                "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
            )
            .unwrap(),
            "",
        )
    })
}

fn index() -> impl Strategy<Value = ChildIndex> {
    (0u32..(1 << 31), any::<bool>()).prop_map(|(i, hardened)| {
        if hardened {
            ChildIndex::hardened(i).unwrap()
        } else {
            ChildIndex::normal(i).unwrap()
        }
    })
}

proptest! {
    #[test]
    fn a_path_prints_and_parses_back_to_itself(indices in prop::collection::vec(index(), 0..24)) {
        let path = DerivationPath::from_indices(indices.clone()).unwrap();
        let text = path.to_string();
        let parsed: DerivationPath = text.parse().unwrap();
        prop_assert_eq!(&parsed, &path);
        prop_assert_eq!(parsed.indices(), &indices[..]);
        // `h` and `H` mean `'`.
        let with_h: DerivationPath = text.replace('\'', "h").parse().unwrap();
        prop_assert_eq!(&with_h, &path);
        let with_upper_h: DerivationPath = text.replace('\'', "H").parse().unwrap();
        prop_assert_eq!(&with_upper_h, &path);
        prop_assert_eq!(path.is_fully_hardened(), indices.iter().all(|i| i.is_hardened()));
    }

    #[test]
    fn any_string_parses_or_errors_without_panicking(text in ".{0,64}") {
        if let Ok(path) = text.parse::<DerivationPath>() {
            // Whatever parses has one canonical spelling that parses the same.
            let canonical = path.to_string();
            prop_assert_eq!(canonical.parse::<DerivationPath>().unwrap(), path);
        }
    }

    #[test]
    fn path_like_strings_parse_exactly_when_well_formed(
        parts in prop::collection::vec(("[0-9]{1,11}", prop::sample::select(vec!["", "'", "h", "H", "''", "x"])), 0..8)
    ) {
        let text = std::iter::once("m".to_owned())
            .chain(parts.iter().map(|(digits, mark)| format!("{digits}{mark}")))
            .collect::<Vec<_>>()
            .join("/");
        let well_formed = parts.iter().all(|(digits, mark)| {
            ["", "'", "h", "H"].contains(mark)
                && (digits.len() == 1 || !digits.starts_with('0'))
                && digits.parse::<u64>().is_ok_and(|v| v < 1 << 31)
        });
        prop_assert_eq!(text.parse::<DerivationPath>().is_ok(), well_formed, "{}", text);
    }

    #[test]
    fn hardened_paths_derive_and_unhardened_ones_are_refused(indices in prop::collection::vec(index(), 1..6)) {
        let path = DerivationPath::from_indices(indices.clone()).unwrap();
        let result = vault().derive_ed25519(&path);
        prop_assert_eq!(result.is_ok(), path.is_fully_hardened());
        if let Ok(key) = result {
            let again = alknet_vault::slip10::derive(
                Mnemonic::parse("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about").unwrap().to_seed("").as_bytes(),
                &path,
            ).unwrap();
            prop_assert_eq!(key.secret_bytes(), again.secret_bytes());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_text_round_trips_under_any_supported_version(plaintext in ".{0,300}", version in 2u32..40) {
        let sealed = vault().encrypt_with_version(&plaintext, version).unwrap();
        prop_assert_eq!(sealed.key_version, version);
        let json = sealed.to_json();
        let opened = vault().decrypt_json(json.as_bytes()).unwrap();
        prop_assert_eq!(opened.expose(), plaintext.as_str());
    }

    #[test]
    fn any_single_bit_flip_is_refused(plaintext in ".{0,64}", bit in any::<prop::sample::Index>(), in_iv in any::<bool>()) {
        let sealed = vault().encrypt(&plaintext).unwrap();
        let mut tampered = sealed.clone();
        let field = if in_iv { &mut tampered.iv } else { &mut tampered.data };
        let mut bytes = BASE64.decode(&*field).unwrap();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        *field = BASE64.encode(bytes);
        prop_assert_eq!(vault().decrypt(&tampered).unwrap_err(), DecryptError);
    }

    #[test]
    fn arbitrary_blobs_never_open_and_never_panic(
        key_version in any::<u32>(),
        salt in prop::collection::vec(any::<u8>(), 0..40),
        iv in prop::collection::vec(any::<u8>(), 0..20),
        data in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let blob = EncryptedData {
            key_version,
            salt: BASE64.encode(salt),
            iv: BASE64.encode(iv),
            data: BASE64.encode(data),
        };
        // A forgery would need to guess a 128-bit tag.
        prop_assert_eq!(vault().decrypt(&blob).unwrap_err(), DecryptError);
    }

    #[test]
    fn arbitrary_json_never_panics(json in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = vault().decrypt_json(&json);
    }
}

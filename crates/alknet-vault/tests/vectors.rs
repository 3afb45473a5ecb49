//! The official test vectors, committed under tests/data (written from the
//! specs and checked there against an independent Python implementation):
//! every BIP39 English vector (entropy → mnemonic → seed with passphrase
//! "TREZOR") and both SLIP-0010 Ed25519 chains (every path: chain code,
//! private and public key). Plus alknet's own fixed point: the identity key
//! of `abandon … about`.

use alknet_vault::path;
use alknet_vault::{DerivationPath, Mnemonic, Seed, Vault, slip10};
use serde_json::Value;

fn data(name: &str) -> Value {
    // The runner's value (cargo and nextest set it) before the compile-time
    // one: a test binary reused from a build in another checkout must read
    // this checkout's files.
    let root = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let path = format!("{root}/tests/data/{name}");
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

#[test]
fn every_bip39_english_vector() {
    let vectors = data("bip39_english.json");
    let passphrase = str_at(&vectors, "passphrase");
    assert_eq!(passphrase, "TREZOR");
    let list = vectors["english"].as_array().unwrap();
    assert_eq!(list.len(), 24, "the reference file has 24 English vectors");
    for vector in list {
        let entropy = hex::decode(vector[0].as_str().unwrap()).unwrap();
        let phrase = vector[1].as_str().unwrap();
        let seed = vector[2].as_str().unwrap();

        let from_entropy = Mnemonic::from_entropy(&entropy).unwrap();
        assert_eq!(from_entropy.phrase().as_str(), phrase);
        let parsed = Mnemonic::parse(phrase).unwrap();
        assert_eq!(parsed.entropy().as_slice(), entropy.as_slice(), "{phrase}");
        assert_eq!(parsed.word_count(), phrase.split(' ').count());
        assert_eq!(
            hex::encode(parsed.to_seed(passphrase).as_bytes()),
            seed,
            "{phrase}"
        );
    }
}

#[test]
fn every_slip10_ed25519_vector() {
    let vectors = data("slip10_ed25519.json");
    let list = vectors["vectors"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let mut chains = 0;
    for vector in list {
        let seed = hex::decode(str_at(vector, "seed")).unwrap();
        let mut padded = None;
        if seed.len() == 64 {
            padded = Some(Vault::from_seed(Seed::from_bytes(
                seed.clone().try_into().unwrap(),
            )));
        }
        for chain in vector["chains"].as_array().unwrap() {
            let path: DerivationPath = str_at(chain, "path").parse().unwrap();
            let node = slip10::derive(&seed, &path).unwrap();
            let name = format!("{} {path}", str_at(vector, "name"));
            assert_eq!(
                hex::encode(node.chain_code()),
                str_at(chain, "chain_code"),
                "{name}"
            );
            assert_eq!(
                hex::encode(node.secret_bytes()),
                str_at(chain, "private"),
                "{name}"
            );
            assert_eq!(
                format!("00{}", hex::encode(node.ed25519_public_key())),
                str_at(chain, "public"),
                "{name}"
            );
            // The vault (with its cache) agrees, for the 64-byte seed.
            if let Some(vault) = &padded {
                let cached = vault.derive_extended(&path).unwrap();
                assert_eq!(hex::encode(cached.secret_bytes()), str_at(chain, "private"));
                assert_eq!(
                    hex::encode(cached.chain_code()),
                    str_at(chain, "chain_code")
                );
            }
            chains += 1;
        }
    }
    assert_eq!(chains, 12);
}

#[cfg(feature = "secp256k1")]
#[test]
fn every_slip10_secp256k1_vector_and_the_bip39_master_keys() {
    let vectors = data("slip10_secp256k1.json");
    let mut chains = 0;
    for vector in vectors["vectors"].as_array().unwrap() {
        let seed = hex::decode(str_at(vector, "seed")).unwrap();
        for chain in vector["chains"].as_array().unwrap() {
            let path: DerivationPath = str_at(chain, "path").parse().unwrap();
            let key = alknet_vault::secp256k1::derive(&seed, &path).unwrap();
            assert_eq!(
                hex::encode(key.secret_bytes()),
                str_at(chain, "private"),
                "{path}"
            );
            assert_eq!(
                hex::encode(key.chain_code()),
                str_at(chain, "chain_code"),
                "{path}"
            );
            assert_eq!(
                hex::encode(key.public_key()),
                str_at(chain, "public"),
                "{path}"
            );
            chains += 1;
        }
    }
    assert_eq!(chains, 12);
    // The BIP39 vectors' fourth column: the BIP-32 master key of each seed,
    // as an xprv (version ‖ depth ‖ fingerprint ‖ child ‖ chain code ‖ 0x00 ‖
    // key, base58check).
    use sha2::Digest;
    for vector in data("bip39_english.json")["english"].as_array().unwrap() {
        let seed = hex::decode(vector[2].as_str().unwrap()).unwrap();
        let xprv = bs58::decode(vector[3].as_str().unwrap())
            .into_vec()
            .unwrap();
        assert_eq!(xprv.len(), 82);
        let (payload, checksum) = xprv.split_at(78);
        assert_eq!(
            &sha2::Sha256::digest(sha2::Sha256::digest(payload))[..4],
            checksum
        );
        let master = alknet_vault::secp256k1::derive(&seed, &DerivationPath::master()).unwrap();
        assert_eq!(&payload[13..45], master.chain_code());
        assert_eq!(&payload[46..78], master.secret_bytes());
    }
    // Through the vault: Ethereum's first account of `abandon … about`
    // (the private key computed independently with Python's hashlib and the
    // `cryptography` package).
    let vault = Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "");
    let key = vault
        .derive(alknet_vault::KeyType::Secp256k1, &path::ethereum())
        .unwrap();
    assert_eq!(
        hex::encode(key.secret_bytes()),
        "1ab42cc412b618bdea3a599e3c9bae199ebf030895b039e9db1e30dafb12b727"
    );
}

const ABOUT: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// `abandon … about` (12 words, no passphrase) at m/74'/0'/0'/0'. Computed
/// independently by tests/python/test_vault_reference.py (hashlib + the
/// `cryptography` package), which also checks `alknet vault derive`.
pub const ABOUT_IDENTITY_PUBLIC: &str =
    "e78c2766a792f09bfccb51493968ac322283e8d021a30063784d806929762ecc";

#[test]
fn abandon_about_has_a_fixed_node_identity() {
    let vault = Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "");
    assert_eq!(
        hex::encode(vault.node_identity().public_key()),
        ABOUT_IDENTITY_PUBLIC
    );
    assert_eq!(
        hex::encode(vault.node_identity().secret_bytes()),
        "603aa5c626317fda4afd87b902e5c9de76c33f40834005245e1c5a675e92d700"
    );
    assert_eq!(
        hex::encode(vault.ssh_host_key().public_key()),
        "6a9dd5c41915fba6cc22b8760263aba45b068cae7bead1d069c7b8eeb0118134"
    );
    assert_eq!(
        hex::encode(vault.aes_key(2).unwrap().secret_bytes()),
        "fbed5fa9110df4214baa259a4cd6bd3902373231472d317b8f3686b1d63df17a"
    );
    assert_eq!(
        hex::encode(vault.aes_key(3).unwrap().secret_bytes()),
        "3ddaf7a4485d755c959c883347420fdc9fa2a64fb1edae8a5f312e82c210f0f0"
    );
    // The same through an explicit path, and with the BIP39 passphrase the
    // identity changes completely.
    let explicit = vault
        .derive_ed25519(&"m/74h/0h/0h/0h".parse().unwrap())
        .unwrap();
    assert_eq!(hex::encode(explicit.public_key()), ABOUT_IDENTITY_PUBLIC);
    let other = Vault::from_mnemonic(&Mnemonic::parse(ABOUT).unwrap(), "TREZOR");
    assert_ne!(
        hex::encode(other.node_identity().public_key()),
        ABOUT_IDENTITY_PUBLIC
    );
    assert_eq!(path::node_identity().to_string(), "m/74'/0'/0'/0'");
}

//! Derivation-path parsing. Invariants: no panic; whatever parses prints a
//! canonical spelling that parses to the same path; a parsed path derives
//! (SLIP-0010 Ed25519) exactly when it is fully hardened.

use std::sync::OnceLock;

use alknet_vault::{DerivationPath, Seed, Vault};

fn vault() -> &'static Vault {
    static VAULT: OnceLock<Vault> = OnceLock::new();
    VAULT.get_or_init(|| Vault::from_seed(Seed::from_bytes([7; 64])))
}

/// Checks the invariants above for one input; panics where one fails.
pub fn check(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(path) = text.parse::<DerivationPath>() else {
        return;
    };
    let canonical = path.to_string();
    assert_eq!(
        canonical
            .parse::<DerivationPath>()
            .expect("canonical parses"),
        path
    );
    assert!(path.depth() <= 255);
    // Deep paths cost one HMAC a level; keep the run fast.
    if path.depth() <= 16 {
        assert_eq!(
            vault().derive_ed25519(&path).is_ok(),
            path.is_fully_hardened()
        );
    }
}

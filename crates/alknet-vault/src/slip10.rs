//! SLIP-0010 private derivation for Ed25519, on HMAC-SHA512.
//!
//! - master: `I = HMAC-SHA512(key = "ed25519 seed", data = seed)`;
//!   `I_L` is the private key, `I_R` the chain code;
//! - child `i` (hardened only, `i ≥ 2^31`):
//!   `I = HMAC-SHA512(key = c_par, data = 0x00 ‖ k_par ‖ ser32(i))`, split the
//!   same way. Every 32-byte string is a valid Ed25519 private key, so
//!   SLIP-0010's retry rules never apply to this curve.
//!
//! Unhardened Ed25519 derivation does not exist (there is no point addition
//! that keeps the key relation), so an unhardened index is an error, never
//! silently hardened.

use hmac::{Hmac, Mac};
use sha2::Sha512;
use zeroize::{Zeroize, Zeroizing};

use crate::error::DeriveError;
use crate::keys::ExtendedKey;
use crate::path::{ChildIndex, DerivationPath};

/// The HMAC key of the SLIP-0010 Ed25519 master node.
pub const ED25519_CURVE_KEY: &[u8] = b"ed25519 seed";

/// HMAC-SHA512 of `parts` under `key`, into a buffer zeroed on drop.
pub(crate) fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    let mut digest = mac.finalize().into_bytes();
    let mut out = Zeroizing::new([0u8; 64]);
    out.copy_from_slice(&digest);
    digest.as_mut_slice().zeroize();
    out
}

/// The master node of `seed`.
pub(crate) fn master(seed: &[u8]) -> ExtendedKey {
    ExtendedKey::from_hmac_output(&hmac_sha512(ED25519_CURVE_KEY, &[seed]))
}

/// The hardened child `index` of `parent`. The caller checks hardening.
pub(crate) fn child(parent: &ExtendedKey, index: ChildIndex) -> ExtendedKey {
    debug_assert!(index.is_hardened());
    let output = hmac_sha512(
        parent.chain_code(),
        &[&[0u8], parent.secret_bytes(), &index.raw().to_be_bytes()],
    );
    ExtendedKey::from_hmac_output(&output)
}

/// Refuses a path with an unhardened component, naming it.
pub(crate) fn check_hardened(path: &DerivationPath) -> Result<(), DeriveError> {
    match path
        .indices()
        .iter()
        .enumerate()
        .find(|(_, index)| !index.is_hardened())
    {
        Some((i, index)) => Err(DeriveError::Unhardened {
            path: path.to_string(),
            position: i + 1,
            index: index.index(),
        }),
        None => Ok(()),
    }
}

/// Derives `path` from `seed` without any cache.
pub fn derive(seed: &[u8], path: &DerivationPath) -> Result<ExtendedKey, DeriveError> {
    check_hardened(path)?;
    let mut node = master(seed);
    for &index in path.indices() {
        node = child(&node, index);
    }
    Ok(node)
}

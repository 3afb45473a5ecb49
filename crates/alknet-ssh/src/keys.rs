//! SSH keys as the node names them: the host key from the vault, and client
//! keys as [`Fingerprint`]s, the same names peer entries use for TLS client
//! certificates.

use alknet_core::Fingerprint;
use alknet_core::protocol_keys::{KeyDeclaration, ProtocolKey};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};

/// The SSH host key: `alknet init` prints its public half and writes it to
/// `ssh_host_ed25519_key.pub`; every transport (QUIC, TCP+TLS, plain TCP)
/// shows the same key, and `init --restore` brings it back.
pub const HOST_KEY: KeyDeclaration = KeyDeclaration::ed25519("ssh host key", "m/74'/0'/1'/0'");

/// The host key as russh signs with it.
pub fn host_private_key(key: &ProtocolKey) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&key.secret_bytes()))
}

/// The peer-entry name of an SSH public key: `ed25519:<hex>` for an Ed25519
/// key (the same as a TLS client certificate with that key), else
/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> Fingerprint {
    if let Some(ed25519) = key.key_data().ed25519() {
        return Fingerprint::Ed25519(ed25519.0);
    }
    let hash = key.fingerprint(HashAlg::Sha256);
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(hash.as_bytes());
    Fingerprint::SshKey(bytes)
}

/// Why an OpenSSH public key could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not an OpenSSH public key (expected a line like `ssh-ed25519 AAAA… comment`): {0}")]
pub struct PublicKeyParseError(String);

/// Reads one OpenSSH public key line (as in a `.pub` file or
/// `authorized_keys`, without options).
pub fn parse_public_key(line: &str) -> Result<PublicKey, PublicKeyParseError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| PublicKeyParseError(e.to_string()))
}

/// The host key's `known_hosts` / `.pub` form: `ssh-ed25519 AAAA…`.
pub fn openssh_line(key: &PublicKey) -> String {
    // Encoding a key russh holds cannot fail; an empty string would only
    // show up as a visibly wrong line.
    key.to_openssh().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_ssh_key_has_the_name_of_a_certificate_with_that_key() {
        let keypair = Ed25519Keypair::from_seed(&[7; 32]);
        let public = PublicKey::from(keypair.public);
        let line = openssh_line(&public);
        assert!(line.starts_with("ssh-ed25519 "), "{line}");
        let parsed = parse_public_key(&format!("{line} alice@laptop\n")).unwrap();
        let signing = ed25519_dalek_public(&[7; 32]);
        assert_eq!(fingerprint(&parsed), Fingerprint::Ed25519(signing));
    }

    #[test]
    fn other_keys_are_named_as_ssh_keygen_names_them() {
        // Made by `ssh-keygen -t ecdsa`; the name is what `ssh-keygen -lf` printed.
        let line = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBI6fOWN7aGzu1c0vANitI6OD7ad3CPXwrzqRSAqvEV4jzlPPdCKWbCOe0xpB+IL0qVRpRsxXv28WyK0O1Yaq038= root@vm";
        let key = parse_public_key(line).unwrap();
        assert_eq!(
            fingerprint(&key).to_string(),
            "SHA256:+tqRiwtrRbz0mLILUGInVk5zV4rpjD2p0x9b+ZiP3IM"
        );
        assert_eq!(
            "SHA256:+tqRiwtrRbz0mLILUGInVk5zV4rpjD2p0x9b+ZiP3IM"
                .parse::<Fingerprint>()
                .unwrap(),
            fingerprint(&key)
        );
    }

    #[test]
    fn garbage_is_refused_with_the_expected_shape() {
        let error = parse_public_key("ssh-ed25519 not-base64").unwrap_err();
        assert!(error.to_string().contains("ssh-ed25519 AAAA"), "{error}");
    }

    fn ed25519_dalek_public(seed: &[u8; 32]) -> [u8; 32] {
        Ed25519Keypair::from_seed(seed).public.0
    }
}

//! The vault as the source of the protocols' keys
//! (`alknet_core::protocol_keys`): `serve` derives every key the served
//! protocols declare here, then drops the seed.

use alknet_core::protocol_keys::{KeyDeclaration, KeySource, ProtocolKeyError, ProtocolKeys};
use alknet_vault::{DerivationPath, Vault, path};
use ed25519_dalek::SigningKey;

use crate::data_dir::DataDir;

/// Derives from the data directory's vault, or refuses every key when the
/// directory predates the vault (its node key is random: no mnemonic to
/// derive from).
pub fn derive(
    dir: &DataDir,
    vault: Option<&Vault>,
    declarations: &[&KeyDeclaration],
) -> Result<ProtocolKeys, ProtocolKeyError> {
    match vault {
        Some(vault) => ProtocolKeys::derive(declarations, &VaultKeys(vault)),
        None => ProtocolKeys::derive(declarations, &NoMnemonic(dir)),
    }
}

struct VaultKeys<'a>(&'a Vault);

impl KeySource for VaultKeys<'_> {
    fn derive_ed25519(&self, spelled: &str) -> Result<SigningKey, String> {
        let parsed: DerivationPath = spelled
            .parse()
            .map_err(|e| format!("not a derivation path: {e}"))?;
        // One spelling per path, so that two declarations of one key are seen
        // to be the same.
        if parsed.to_string() != spelled {
            return Err(format!("write the path as {parsed}"));
        }
        if let Some(use_) = path::reserved_use(&parsed) {
            return Err(format!("the path is reserved for {use_}"));
        }
        let key = self.0.derive_ed25519(&parsed).map_err(|e| e.to_string())?;
        Ok(SigningKey::from_bytes(key.secret_bytes()))
    }
}

struct NoMnemonic<'a>(&'a DataDir);

impl KeySource for NoMnemonic<'_> {
    fn derive_ed25519(&self, _path: &str) -> Result<SigningKey, String> {
        Err(format!(
            "{} has no mnemonic (it was initialised before the vault existed), so no key can be \
             derived; initialise a new data directory with `alknet init` to use this protocol",
            self.0.root().display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use alknet_vault::Mnemonic;

    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon \
                          abandon abandon abandon abandon abandon abandon abandon abandon \
                          abandon abandon abandon abandon abandon abandon abandon art";

    fn vault() -> Vault {
        Vault::from_mnemonic(&Mnemonic::parse(PHRASE).unwrap(), "")
    }

    fn derive_one(path: &'static str) -> Result<[u8; 32], ProtocolKeyError> {
        let declaration = KeyDeclaration::ed25519("test key", path);
        let dir = DataDir::new(std::path::Path::new("/nonexistent"));
        let mut keys = derive(&dir, Some(&vault()), &[&declaration])?;
        Ok(keys.take(&declaration)?.public_key())
    }

    #[test]
    fn a_declared_path_gets_the_vaults_key_at_that_path() {
        // The SSH host key `alknet init` publishes in ssh_host_ed25519_key.pub.
        assert_eq!(
            derive_one("m/74'/0'/1'/0'").unwrap(),
            vault().ssh_host_key().public_key()
        );
    }

    #[test]
    fn the_node_identity_and_credential_keys_are_not_handed_out() {
        for path in [
            "m/74'/0'/0'/0'",
            "m/74'/0'/0'/7'",
            "m/74'/2'/0'/0'",
            "m/74'",
        ] {
            let error = derive_one(path).unwrap_err().to_string();
            assert!(error.contains("reserved for"), "{path}: {error}");
        }
    }

    #[test]
    fn paths_must_be_canonical_and_hardened() {
        let error = derive_one("m/74h/1h/0h").unwrap_err().to_string();
        assert!(error.ends_with("write the path as m/74'/1'/0'"), "{error}");
        let error = derive_one("m/74'/1'/0").unwrap_err().to_string();
        assert!(error.contains("hardened"), "{error}");
        let error = derive_one("74'/1'").unwrap_err().to_string();
        assert!(error.contains("not a derivation path"), "{error}");
    }

    #[test]
    fn a_data_directory_without_a_mnemonic_says_why_and_what_to_do() {
        let declaration = KeyDeclaration::ed25519("ssh host key", "m/74'/0'/1'/0'");
        let dir = DataDir::new(std::path::Path::new("/srv/old-node"));
        let error = derive(&dir, None, &[&declaration]).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "cannot derive the ssh host key (m/74'/0'/1'/0'): /srv/old-node has no mnemonic"
            ),
            "{error}"
        );
        assert!(error.contains("alknet init"), "{error}");
        // Without a declared key, an old data directory serves as before.
        assert!(derive(&dir, None, &[]).unwrap().is_empty());
    }
}

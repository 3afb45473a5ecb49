//! Keys a protocol derives from the node's vault, without seeing the vault.
//!
//! A protocol crate that needs a long-lived key of its own (an SSH host key,
//! a messaging key, a pkarr key) declares it as a [`KeyDeclaration`] constant:
//! a name and a SLIP-0010 path in alknet's key tree. The binary lists the
//! declarations of the protocols it serves, derives all of them at start-up
//! through a [`KeySource`] (its vault), drops the seed, and then hands each
//! protocol its [`ProtocolKey`] with [`ProtocolKeys::take`]. The mnemonic and
//! the seed never leave the binary; a protocol holds its own key and nothing
//! it could derive other keys from.
//!
//! ```
//! use alknet_core::protocol_keys::{KeyDeclaration, KeySource, ProtocolKeys};
//!
//! // In the protocol crate:
//! pub const HOST_KEY: KeyDeclaration = KeyDeclaration::ed25519("ssh host key", "m/74'/0'/1'/0'");
//!
//! // In the binary, with the vault open (a stand-in source here):
//! struct Fixed;
//! impl KeySource for Fixed {
//!     fn derive_ed25519(&self, _path: &str) -> Result<ed25519_dalek::SigningKey, String> {
//!         Ok(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
//!     }
//! }
//! let mut keys = ProtocolKeys::derive(&[&HOST_KEY], &Fixed).unwrap();
//! // … the vault is dropped here …
//! let host_key = keys.take(&HOST_KEY).unwrap();
//! assert_eq!(host_key.public_key(), ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes());
//! ```

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::SigningKey;

/// A key a protocol crate needs: its name (for errors and logs) and where in
/// the vault's SLIP-0010 tree it lives, in canonical spelling
/// (`m/74'/0'/1'/0'`: `'` for hardened, no leading zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDeclaration {
    /// What the key is, e.g. `ssh host key`.
    pub name: &'static str,
    /// Its derivation path, e.g. `m/74'/0'/1'/0'`.
    pub path: &'static str,
}

impl KeyDeclaration {
    /// An Ed25519 key (SLIP-0010: every index hardened) at `path`.
    pub const fn ed25519(name: &'static str, path: &'static str) -> Self {
        Self { name, path }
    }
}

/// What derives keys: the binary implements it over its vault. Refusing a
/// path (not canonical, reserved for the node's own keys, not hardened) is
/// the source's decision; the reason is shown to the operator.
pub trait KeySource {
    /// The Ed25519 key at `path`.
    fn derive_ed25519(&self, path: &str) -> Result<SigningKey, String>;
}

/// One derived key, handed to the protocol that declared it. The secret is
/// zeroed when the key is dropped (`ed25519-dalek`'s `zeroize` feature).
pub struct ProtocolKey {
    declaration: KeyDeclaration,
    key: SigningKey,
}

impl ProtocolKey {
    /// The declaration this key answers.
    pub fn declaration(&self) -> KeyDeclaration {
        self.declaration
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The 32-byte secret (the Ed25519 seed), for libraries that build their
    /// own key type from it.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

impl fmt::Debug for ProtocolKey {
    // The secret stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolKey")
            .field("name", &self.declaration.name)
            .field("path", &self.declaration.path)
            .field("public_key", &hex::encode(self.public_key()))
            .finish()
    }
}

/// Why the protocols' keys could not be derived or handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolKeyError {
    /// Two declarations share a path: two protocols would share one secret.
    #[error(
        "the {first} and the {second} are both declared at {path}: each protocol needs a path of its own"
    )]
    SharedPath {
        /// The first declaration's name.
        first: &'static str,
        /// The second declaration's name.
        second: &'static str,
        /// The path both declared.
        path: &'static str,
    },
    /// The source refused or failed to derive a key.
    #[error("cannot derive the {name} ({path}): {reason}")]
    Derive {
        /// The declaration's name.
        name: &'static str,
        /// The declaration's path.
        path: &'static str,
        /// The source's reason.
        reason: String,
    },
    /// A protocol asked for a key nobody declared (or one already taken): the
    /// binary's list of declarations is missing it.
    #[error(
        "the {name} ({path}) was not derived at start-up: add its declaration to the node's list of protocol keys"
    )]
    NotDerived {
        /// The declaration's name.
        name: &'static str,
        /// The declaration's path.
        path: &'static str,
    },
}

/// The keys derived for the protocols, each handed out once.
#[derive(Debug, Default)]
pub struct ProtocolKeys {
    keys: BTreeMap<&'static str, ProtocolKey>,
}

impl ProtocolKeys {
    /// Derives every declared key. Fails on the first key the source cannot
    /// derive, and before deriving anything when two declarations share a
    /// path.
    pub fn derive(
        declarations: &[&KeyDeclaration],
        source: &dyn KeySource,
    ) -> Result<Self, ProtocolKeyError> {
        let mut by_path: BTreeMap<&'static str, &KeyDeclaration> = BTreeMap::new();
        for declaration in declarations {
            match by_path.get(declaration.path) {
                // The same declaration listed twice is one key.
                Some(first) if *first == *declaration => {}
                Some(first) => {
                    return Err(ProtocolKeyError::SharedPath {
                        first: first.name,
                        second: declaration.name,
                        path: declaration.path,
                    });
                }
                None => {
                    by_path.insert(declaration.path, declaration);
                }
            }
        }
        let mut keys = BTreeMap::new();
        for (path, declaration) in by_path {
            let key = source
                .derive_ed25519(path)
                .map_err(|reason| ProtocolKeyError::Derive {
                    name: declaration.name,
                    path,
                    reason,
                })?;
            keys.insert(
                path,
                ProtocolKey {
                    declaration: *declaration,
                    key,
                },
            );
        }
        Ok(Self { keys })
    }

    /// Hands out the key of `declaration` (once).
    pub fn take(&mut self, declaration: &KeyDeclaration) -> Result<ProtocolKey, ProtocolKeyError> {
        match self.keys.remove(declaration.path) {
            Some(key) if key.declaration == *declaration => Ok(key),
            other => {
                // A different declaration at the same path is not this one's
                // key: put it back for its owner.
                if let Some(key) = other {
                    self.keys.insert(declaration.path, key);
                }
                Err(ProtocolKeyError::NotDerived {
                    name: declaration.name,
                    path: declaration.path,
                })
            }
        }
    }

    /// The keys not handed out yet.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether every key was handed out (or none was declared).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Derives a key from the path's bytes and records what it was asked.
    #[derive(Default)]
    struct Recording {
        asked: RefCell<Vec<String>>,
        refuse: Option<&'static str>,
    }

    impl KeySource for Recording {
        fn derive_ed25519(&self, path: &str) -> Result<SigningKey, String> {
            self.asked.borrow_mut().push(path.to_owned());
            if self.refuse == Some(path) {
                return Err("reserved for the node's identity".to_owned());
            }
            let mut seed = [0u8; 32];
            for (i, b) in path.bytes().enumerate() {
                seed[i % 32] ^= b;
            }
            Ok(SigningKey::from_bytes(&seed))
        }
    }

    const SSH: KeyDeclaration = KeyDeclaration::ed25519("ssh host key", "m/74'/0'/1'/0'");
    const PKARR: KeyDeclaration = KeyDeclaration::ed25519("pkarr key", "m/74'/3'/0'/0'");

    #[test]
    fn each_declared_key_is_derived_once_and_handed_out_once() {
        let source = Recording::default();
        let mut keys = ProtocolKeys::derive(&[&SSH, &PKARR, &SSH], &source).unwrap();
        assert_eq!(source.asked.borrow().len(), 2);
        let ssh = keys.take(&SSH).unwrap();
        assert_eq!(ssh.declaration(), SSH);
        assert_eq!(
            ssh.public_key(),
            source
                .derive_ed25519(SSH.path)
                .unwrap()
                .verifying_key()
                .to_bytes()
        );
        assert_ne!(ssh.public_key(), keys.take(&PKARR).unwrap().public_key());
        assert!(keys.is_empty());
        assert_eq!(
            keys.take(&SSH).unwrap_err(),
            ProtocolKeyError::NotDerived {
                name: SSH.name,
                path: SSH.path
            }
        );
    }

    #[test]
    fn two_protocols_may_not_share_a_path() {
        let impostor = KeyDeclaration::ed25519("messaging key", SSH.path);
        let source = Recording::default();
        let error = ProtocolKeys::derive(&[&SSH, &impostor], &source).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the ssh host key and the messaging key are both declared at m/74'/0'/1'/0': \
             each protocol needs a path of its own"
        );
        assert!(source.asked.borrow().is_empty(), "nothing is derived");
    }

    #[test]
    fn a_refusal_names_the_key_and_the_reason() {
        let source = Recording {
            refuse: Some(PKARR.path),
            ..Recording::default()
        };
        let error = ProtocolKeys::derive(&[&SSH, &PKARR], &source).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot derive the pkarr key (m/74'/3'/0'/0'): reserved for the node's identity"
        );
    }

    #[test]
    fn a_key_is_not_handed_to_another_declaration_at_its_path() {
        let mut keys = ProtocolKeys::derive(&[&SSH], &Recording::default()).unwrap();
        let other = KeyDeclaration::ed25519("messaging key", SSH.path);
        assert!(keys.take(&other).is_err());
        assert!(keys.take(&SSH).is_ok(), "still there for its owner");
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let mut keys = ProtocolKeys::derive(&[&SSH], &Recording::default()).unwrap();
        let key = keys.take(&SSH).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&hex::encode(key.public_key())));
        assert!(!shown.contains(&hex::encode(key.secret_bytes())));
    }
}

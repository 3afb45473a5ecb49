//! Derivation paths (`m/74'/0'/0'/0'`) and alknet's well-known ones.
//!
//! Paths are written the BIP-32 way: `m`, then `/`-separated decimal indices
//! below 2^31, each followed by `'` (or `h`) when hardened. SLIP-0010 Ed25519
//! can derive only hardened children, so every alknet path is fully hardened;
//! unhardened indices parse (BIP-32 secp256k1 needs them) and are refused at
//! Ed25519 derivation time.
//!
//! alknet's coin type is 74'. The tree below it:
//!
//! | path | key |
//! |---|---|
//! | `m/74'/0'/0'/0'` | node identity (Ed25519): the TLS key and node id |
//! | `m/74'/0'/0'/{n}'` | device / worker identity `n` |
//! | `m/74'/0'/1'/0'` | SSH host key (Ed25519) |
//! | `m/74'/2'/0'/{v-2}'` | AES-256-GCM key of key version `v` (v ≥ 2) |
//!
//! The canonical spelling (the one [`DerivationPath`]'s `Display` writes, and
//! the one test vectors use) marks hardened indices with `'`; `h` and `H` are
//! accepted on input. Leading zeros are refused so that every path has one
//! spelling.

use std::fmt;
use std::str::FromStr;

use crate::error::{KeyVersionError, PathError};

/// The hardened flag of a raw BIP-32 index.
pub const HARDENED: u32 = 1 << 31;

/// alknet's SLIP-0044 coin type (used hardened: `74'`).
pub const COIN_TYPE: u32 = 74;

/// The largest key version: version `v` lives at index `v - 2`, which must
/// stay below 2^31.
pub const MAX_KEY_VERSION: u32 = HARDENED + 1;

/// The deepest path accepted (BIP-32 serialises the depth in one byte).
pub const MAX_DEPTH: usize = 255;

/// One level of a derivation path: a raw BIP-32 index, hardened flag included.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChildIndex(u32);

impl ChildIndex {
    /// The hardened child `index'`.
    pub fn hardened(index: u32) -> Result<Self, PathError> {
        if index >= HARDENED {
            return Err(PathError::IndexOutOfRange(index.into()));
        }
        Ok(Self(index | HARDENED))
    }

    /// The unhardened (normal) child `index`.
    pub fn normal(index: u32) -> Result<Self, PathError> {
        if index >= HARDENED {
            return Err(PathError::IndexOutOfRange(index.into()));
        }
        Ok(Self(index))
    }

    /// The index as BIP-32 serialises it (`ser32(i)`), hardened flag included.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// The index without the hardened flag.
    pub fn index(self) -> u32 {
        self.0 & !HARDENED
    }

    /// Whether the hardened flag is set.
    pub fn is_hardened(self) -> bool {
        self.0 & HARDENED != 0
    }
}

impl fmt::Display for ChildIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_hardened() {
            write!(f, "{}'", self.index())
        } else {
            write!(f, "{}", self.index())
        }
    }
}

/// A derivation path: `m` followed by zero or more [`ChildIndex`]es.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DerivationPath(Vec<ChildIndex>);

impl DerivationPath {
    /// The master node, `m`.
    pub fn master() -> Self {
        Self(Vec::new())
    }

    /// A path from its components.
    pub fn from_indices(indices: Vec<ChildIndex>) -> Result<Self, PathError> {
        if indices.len() > MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        Ok(Self(indices))
    }

    /// The components after `m`.
    pub fn indices(&self) -> &[ChildIndex] {
        &self.0
    }

    /// The number of components after `m`.
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// Whether every component is hardened (what SLIP-0010 Ed25519 needs).
    pub fn is_fully_hardened(&self) -> bool {
        self.0.iter().all(|i| i.is_hardened())
    }

    /// The path extended by one child.
    pub fn child(&self, index: ChildIndex) -> Result<Self, PathError> {
        if self.0.len() >= MAX_DEPTH {
            return Err(PathError::TooDeep);
        }
        let mut indices = self.0.clone();
        indices.push(index);
        Ok(Self(indices))
    }

    /// The first `depth` components (`m` for 0).
    pub(crate) fn prefix(&self, depth: usize) -> Self {
        Self(self.0[..depth.min(self.0.len())].to_vec())
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for index in &self.0 {
            write!(f, "/{index}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DerivationPath({self})")
    }
}

impl FromStr for DerivationPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(PathError::MissingMaster);
        }
        let mut indices = Vec::new();
        for (i, component) in parts.enumerate() {
            let position = i + 1;
            if indices.len() >= MAX_DEPTH {
                return Err(PathError::TooDeep);
            }
            if component.is_empty() {
                return Err(PathError::EmptyComponent { position });
            }
            let (digits, hardened) = match component
                .strip_suffix('\'')
                .or_else(|| component.strip_suffix('h'))
                .or_else(|| component.strip_suffix('H'))
            {
                Some(digits) => (digits, true),
                None => (component, false),
            };
            let bad = || PathError::BadComponent {
                position,
                component: component.chars().take(32).collect(),
            };
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return Err(bad());
            }
            // At most 10 digits fit a u64 without overflow checks mattering.
            if digits.len() > 10 {
                return Err(PathError::IndexOutOfRange(u64::MAX));
            }
            let value: u64 = digits.parse().map_err(|_| bad())?;
            let value = u32::try_from(value)
                .ok()
                .filter(|v| *v < HARDENED)
                .ok_or(PathError::IndexOutOfRange(value))?;
            indices.push(if hardened {
                ChildIndex::hardened(value)?
            } else {
                ChildIndex::normal(value)?
            });
        }
        Ok(Self(indices))
    }
}

fn hardened_path(indices: &[u32]) -> Result<DerivationPath, PathError> {
    indices
        .iter()
        .map(|&i| ChildIndex::hardened(i))
        .collect::<Result<Vec<_>, _>>()
        .and_then(DerivationPath::from_indices)
}

/// `m/74'/0'/0'/0'`: the node identity (Ed25519), the node's TLS key and
/// node id.
pub fn node_identity() -> DerivationPath {
    DerivationPath(vec![
        ChildIndex(COIN_TYPE | HARDENED),
        ChildIndex(HARDENED),
        ChildIndex(HARDENED),
        ChildIndex(HARDENED),
    ])
}

/// `m/74'/0'/0'/{n}'`: device or worker identity `n` (0 is the node itself).
pub fn device(n: u32) -> Result<DerivationPath, PathError> {
    hardened_path(&[COIN_TYPE, 0, 0, n])
}

/// `m/74'/0'/1'/0'`: the SSH host key (Ed25519).
pub fn ssh_host_key() -> DerivationPath {
    DerivationPath(vec![
        ChildIndex(COIN_TYPE | HARDENED),
        ChildIndex(HARDENED),
        ChildIndex(1 | HARDENED),
        ChildIndex(HARDENED),
    ])
}

/// `m/74'/2'/0'/{version-2}'`: the AES-256-GCM key of key version `version`.
/// Versions below 2 are refused (v1 is the legacy PBKDF2 format).
pub fn aes_key(version: u32) -> Result<DerivationPath, KeyVersionError> {
    if !(crate::MIN_KEY_VERSION..=MAX_KEY_VERSION).contains(&version) {
        return Err(KeyVersionError(version));
    }
    hardened_path(&[COIN_TYPE, 2, 0, version - crate::MIN_KEY_VERSION])
        .map_err(|_| KeyVersionError(version))
}

/// What `path` is reserved for, when it lies in or above a subtree the node
/// derives its own keys from: the node and device identities
/// (`m/74'/0'/0'/…`) and the credential encryption keys (`m/74'/2'/…`). A
/// protocol key there would be one of those keys, or an ancestor of them.
pub fn reserved_use(path: &DerivationPath) -> Option<&'static str> {
    const RESERVED: [(&[u32], &str); 2] = [
        (
            &[COIN_TYPE, 0, 0],
            "the node and device identities (m/74'/0'/0'/…)",
        ),
        (
            &[COIN_TYPE, 2],
            "the credential encryption keys (m/74'/2'/…)",
        ),
    ];
    let components = path.indices();
    RESERVED.into_iter().find_map(|(subtree, use_)| {
        let subtree: Vec<ChildIndex> = subtree.iter().map(|&i| ChildIndex(i | HARDENED)).collect();
        let shared = components.len().min(subtree.len());
        // In the subtree, or one of its ancestors.
        (components[..shared] == subtree[..shared]).then_some(use_)
    })
}

/// `m/44'/60'/0'/0/0`: the first Ethereum account (BIP-44, secp256k1; needs
/// the `secp256k1` feature to derive).
pub fn ethereum() -> DerivationPath {
    DerivationPath(vec![
        ChildIndex(44 | HARDENED),
        ChildIndex(60 | HARDENED),
        ChildIndex(HARDENED),
        ChildIndex(0),
        ChildIndex(0),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_node_subtrees_and_their_ancestors_are_reserved() {
        let reserved = |p: &str| super::reserved_use(&p.parse().unwrap());
        for path in [
            "m",
            "m/74'",
            "m/74'/0'",
            "m/74'/0'/0'",
            "m/74'/0'/0'/0'",
            "m/74'/0'/0'/5'/1'",
            "m/74'/2'",
            "m/74'/2'/0'/3'",
        ] {
            assert!(reserved(path).is_some(), "{path}");
        }
        for path in [
            "m/74'/0'/1'/0'",
            "m/74'/1'/0'/0'",
            "m/74'/3'",
            "m/44'/60'/0'/0/0",
            "m/75'/0'/0'/0'",
        ] {
            assert!(reserved(path).is_none(), "{path}");
        }
    }

    use super::*;

    fn parse(s: &str) -> Result<DerivationPath, PathError> {
        s.parse()
    }

    #[test]
    fn well_known_paths_are_spelled_as_the_contract_says() {
        assert_eq!(node_identity().to_string(), "m/74'/0'/0'/0'");
        assert_eq!(device(7).unwrap().to_string(), "m/74'/0'/0'/7'");
        assert_eq!(device(0).unwrap(), node_identity());
        assert_eq!(ssh_host_key().to_string(), "m/74'/0'/1'/0'");
        assert_eq!(aes_key(2).unwrap().to_string(), "m/74'/2'/0'/0'");
        assert_eq!(aes_key(3).unwrap().to_string(), "m/74'/2'/0'/1'");
        assert_eq!(
            aes_key(MAX_KEY_VERSION).unwrap().to_string(),
            "m/74'/2'/0'/2147483647'"
        );
        assert_eq!(ethereum().to_string(), "m/44'/60'/0'/0/0");
        assert_eq!(aes_key(1), Err(KeyVersionError(1)));
        assert_eq!(aes_key(0), Err(KeyVersionError(0)));
        assert_eq!(
            aes_key(MAX_KEY_VERSION + 1),
            Err(KeyVersionError(MAX_KEY_VERSION + 1))
        );
        assert!(device(HARDENED).is_err());
    }

    #[test]
    fn hardened_markers_are_interchangeable() {
        let canonical = parse("m/74'/0'/0'/0'").unwrap();
        assert_eq!(parse("m/74h/0h/0h/0h").unwrap(), canonical);
        assert_eq!(parse("m/74H/0'/0h/0'").unwrap(), canonical);
        assert_eq!(canonical, node_identity());
        assert_eq!(parse("m").unwrap(), DerivationPath::master());
        assert_eq!(parse("m/0/1").unwrap().to_string(), "m/0/1");
        assert_eq!(parse("m/2147483647'").unwrap().indices()[0].raw(), u32::MAX);
    }

    #[test]
    fn malformed_paths_are_refused_with_the_reason() {
        assert_eq!(parse(""), Err(PathError::MissingMaster));
        assert_eq!(parse("74'/0'"), Err(PathError::MissingMaster));
        assert_eq!(parse("M/0'"), Err(PathError::MissingMaster));
        assert_eq!(parse("m/"), Err(PathError::EmptyComponent { position: 1 }));
        assert_eq!(
            parse("m/0'//1'"),
            Err(PathError::EmptyComponent { position: 2 })
        );
        for bad in [
            "m/x", "m/'", "m/1''", "m/01'", "m/-1", "m/+1", "m/1 ", "m/0x1",
        ] {
            assert!(
                matches!(parse(bad), Err(PathError::BadComponent { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
        assert_eq!(
            parse("m/2147483648'"),
            Err(PathError::IndexOutOfRange(2147483648))
        );
        assert_eq!(
            parse("m/99999999999999999999"),
            Err(PathError::IndexOutOfRange(u64::MAX))
        );
        let deep = format!("m{}", "/0'".repeat(256));
        assert_eq!(parse(&deep), Err(PathError::TooDeep));
        let deepest = format!("m{}", "/0'".repeat(255));
        assert_eq!(parse(&deepest).unwrap().depth(), 255);
    }
}

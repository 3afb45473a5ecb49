//! The data directory's vault: where the mnemonic is kept, how it is
//! unlocked, and the node identity derived from it.
//!
//! ```text
//! mnemonic.txt      the mnemonic in clear, mode 0600 (no passphrase), or
//! mnemonic.sealed   the mnemonic sealed with a passphrase (Argon2id + AES-256-GCM)
//! node.key          the node key derived at m/74'/0'/0'/0' — written only
//!                   when the mnemonic is in clear; with a passphrase no
//!                   private identity key is on disk, and `serve` derives it
//!                   after unlocking
//! ```
//!
//! A data directory initialised before the vault existed has a random
//! `node.key` and neither mnemonic file; it keeps working as it did, and the
//! vault commands say that it has no mnemonic.
//!
//! A passphrase comes from, in order: `--passphrase-file`, the systemd
//! credential `vault-passphrase` (`$CREDENTIALS_DIRECTORY/vault-passphrase`),
//! or a prompt when standard input is a terminal. Never from an environment
//! variable: those leak into `/proc/<pid>/environ`, child processes and crash
//! reports.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use alknet_core::NodeKey;
use alknet_core::node_key;
use alknet_vault::at_rest::{Argon2Params, PassphraseSealed};
use alknet_vault::{Mnemonic, Vault};
use anyhow::{Context, bail};
use zeroize::Zeroizing;

use crate::data_dir::DataDir;

/// The mnemonic in clear (mode 0600).
pub const MNEMONIC_FILE: &str = "mnemonic.txt";
/// The mnemonic sealed with a passphrase.
pub const SEALED_MNEMONIC_FILE: &str = "mnemonic.sealed";
/// The SSH host key's public half, OpenSSH format.
pub const SSH_HOST_KEY_PUB: &str = "ssh_host_ed25519_key.pub";
/// The systemd credential a passphrase is read from.
pub const PASSPHRASE_CREDENTIAL: &str = "vault-passphrase";

/// How a data directory keeps its mnemonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `mnemonic.txt`, in clear.
    Clear,
    /// `mnemonic.sealed`, under a passphrase.
    Sealed,
    /// No mnemonic: a data directory from before the vault (random node.key).
    Legacy,
}

impl DataDir {
    pub fn mnemonic_file(&self) -> PathBuf {
        self.root().join(MNEMONIC_FILE)
    }

    pub fn sealed_mnemonic_file(&self) -> PathBuf {
        self.root().join(SEALED_MNEMONIC_FILE)
    }

    pub fn ssh_host_key_pub(&self) -> PathBuf {
        self.root().join(SSH_HOST_KEY_PUB)
    }

    pub fn storage(&self) -> Storage {
        if self.sealed_mnemonic_file().exists() {
            Storage::Sealed
        } else if self.mnemonic_file().exists() {
            Storage::Clear
        } else {
            Storage::Legacy
        }
    }
}

/// Where a command may take the current passphrase from (besides systemd's
/// credentials directory and a prompt).
#[derive(Debug, Clone, Default)]
pub struct PassphraseSource {
    pub file: Option<PathBuf>,
}

/// Reads a passphrase file: its content less one trailing newline. An empty
/// passphrase is refused.
pub fn read_passphrase_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
    );
    let mut text = Zeroizing::new(
        String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow::anyhow!("the passphrase file {} is not UTF-8", path.display()))?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let shared =
            std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0);
        if shared {
            eprintln!(
                "warning: the passphrase file {} is readable by other users (chmod 600 it)",
                path.display()
            );
        }
    }
    Ok(text)
}

/// The passphrase from systemd's credentials directory, if it has one.
fn credentials_dir_passphrase() -> anyhow::Result<Option<Zeroizing<String>>> {
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(PASSPHRASE_CREDENTIAL);
    if !path.exists() {
        return Ok(None);
    }
    read_passphrase_file(&path).map(Some)
}

/// Whether the operator can be asked (standard input is a terminal).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads a line from the terminal without echo.
pub fn prompt_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .context("cannot read from the terminal")
}

/// The passphrase the vault is sealed with: from the source's file, systemd's
/// credentials directory, or a prompt — or a clear error when none is there.
pub fn current_passphrase(
    dir: &DataDir,
    source: &PassphraseSource,
) -> anyhow::Result<Zeroizing<String>> {
    if let Some(file) = &source.file {
        return read_passphrase_file(file);
    }
    if let Some(passphrase) = credentials_dir_passphrase()? {
        return Ok(passphrase);
    }
    if interactive() {
        let passphrase = prompt_hidden(&format!(
            "passphrase for the vault in {}: ",
            dir.root().display()
        ))?;
        if passphrase.is_empty() {
            bail!("no passphrase given");
        }
        return Ok(passphrase);
    }
    bail!(
        "the mnemonic in {} is sealed with a passphrase and there is no way to ask for it \
         (standard input is not a terminal): pass --passphrase-file FILE, or run under systemd \
         with LoadCredential={PASSPHRASE_CREDENTIAL}:FILE",
        dir.sealed_mnemonic_file().display()
    )
}

/// A new passphrase: from `file`, else asked twice on the terminal. `Ok(None)`
/// when the operator enters an empty one and `allow_empty` is set.
pub fn new_passphrase(
    file: Option<&Path>,
    allow_empty: bool,
) -> anyhow::Result<Option<Zeroizing<String>>> {
    if let Some(file) = file {
        return read_passphrase_file(file).map(Some);
    }
    if !interactive() {
        bail!(
            "standard input is not a terminal: give the new passphrase with --new-passphrase-file"
        );
    }
    let hint = if allow_empty { " (empty for none)" } else { "" };
    let first = prompt_hidden(&format!("new passphrase{hint}: "))?;
    if first.is_empty() {
        if allow_empty {
            return Ok(None);
        }
        bail!("the passphrase is empty");
    }
    let second = prompt_hidden("repeat the passphrase: ")?;
    if first != second {
        bail!("the passphrases differ; nothing was changed");
    }
    Ok(Some(first))
}

/// Opens `mnemonic.sealed` with `passphrase`, saying on stderr that the
/// (deliberately slow) key derivation is running.
pub fn open_sealed(dir: &DataDir, passphrase: &str) -> anyhow::Result<Mnemonic> {
    let path = dir.sealed_mnemonic_file();
    let json = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let sealed =
        PassphraseSealed::from_json(&json).with_context(|| format!("{}", path.display()))?;
    eprintln!(
        "unlocking the vault: deriving the key from the passphrase ({})…",
        sealed.params().describe()
    );
    let phrase = sealed
        .open(passphrase)
        .with_context(|| format!("cannot unlock {}", path.display()))?;
    Mnemonic::parse(phrase.expose())
        .with_context(|| format!("{} does not hold a valid mnemonic", path.display()))
}

/// Reads `mnemonic.txt`, refusing it when other users can read it (as sshd
/// refuses an unprotected host key).
pub fn read_clear(dir: &DataDir) -> anyhow::Result<Mnemonic> {
    let path = dir.mnemonic_file();
    crate::data_dir::check_private(&path, "the node's mnemonic")?;
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    Mnemonic::parse(&text)
        .with_context(|| format!("{} does not hold a valid mnemonic", path.display()))
}

/// The mnemonic of a vault-backed data directory (asking for the passphrase
/// if it is sealed); a clear error for a data directory without one.
pub fn load_mnemonic(dir: &DataDir, source: &PassphraseSource) -> anyhow::Result<Mnemonic> {
    match dir.storage() {
        Storage::Sealed => {
            let passphrase = current_passphrase(dir, source)?;
            open_sealed(dir, &passphrase)
        }
        Storage::Clear => read_clear(dir),
        Storage::Legacy => bail!(no_mnemonic_message(dir)),
    }
}

/// Why a vault command cannot run on a data directory without a mnemonic.
pub fn no_mnemonic_message(dir: &DataDir) -> String {
    if dir.node_key().exists() {
        format!(
            "{} has no mnemonic: it was initialised before the vault existed, so its node key \
             (node.key) is random and no mnemonic can reproduce it. The node keeps working as it \
             is; a vault-backed identity needs a new data directory (`alknet init`), which means \
             a new node id",
            dir.root().display()
        )
    } else {
        format!(
            "{} is not an alknet data directory (no mnemonic, no node key); run `alknet init --data-dir {}` first",
            dir.root().display(),
            dir.root().display()
        )
    }
}

/// The vault of the data directory's mnemonic (BIP39 passphrase empty: the
/// mnemonic alone restores the node).
pub fn vault_of(mnemonic: &Mnemonic) -> Vault {
    Vault::from_mnemonic(mnemonic, "")
}

/// The node key a vault derives (m/74'/0'/0'/0').
pub fn node_key_of(vault: &Vault) -> NodeKey {
    NodeKey::from_seed(vault.node_identity().secret_bytes())
}

/// Writes the mnemonic in clear (mode 0600) and the node key beside it.
pub fn store_clear(dir: &DataDir, mnemonic: &Mnemonic, node_key: &NodeKey) -> anyhow::Result<()> {
    let mut text = mnemonic.phrase();
    text.push('\n');
    node_key::write_private_file(&dir.mnemonic_file(), text.as_bytes())?;
    node_key.save(&dir.node_key())?;
    Ok(())
}

/// Writes the mnemonic sealed under `passphrase` (mode 0600), saying on
/// stderr that the key derivation is running.
pub fn store_sealed(dir: &DataDir, mnemonic: &Mnemonic, passphrase: &str) -> anyhow::Result<()> {
    let params = Argon2Params::RECOMMENDED;
    eprintln!(
        "sealing the mnemonic: deriving the key from the passphrase ({})…",
        params.describe()
    );
    let sealed = PassphraseSealed::seal(&mnemonic.phrase(), passphrase, params)?;
    node_key::write_private_file(
        &dir.sealed_mnemonic_file(),
        sealed.to_json_pretty().as_bytes(),
    )?;
    Ok(())
}

/// The SSH host key's public half in OpenSSH format
/// (`ssh-ed25519 <base64 of the wire encoding> <comment>`).
pub fn ssh_public_key_line(public: &[u8; 32], comment: &str) -> String {
    use base64::Engine;
    let mut blob = Vec::with_capacity(51);
    for part in [&b"ssh-ed25519"[..], &public[..]] {
        blob.extend((part.len() as u32).to_be_bytes());
        blob.extend(part);
    }
    format!(
        "ssh-ed25519 {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// What `serve` runs as: the node key, and the vault while start-up needs it.
pub struct NodeIdentity {
    pub node_key: NodeKey,
    /// The vault (None for a data directory from before the vault).
    pub vault: Option<Vault>,
}

/// The node's identity: derived from the mnemonic when the data directory has
/// one (and checked against node.key when that is there too), else node.key.
pub fn node_identity(dir: &DataDir, source: &PassphraseSource) -> anyhow::Result<NodeIdentity> {
    let storage = dir.storage();
    if storage != Storage::Sealed && source.file.is_some() {
        eprintln!(
            "note: --passphrase-file is ignored: the mnemonic in {} is not sealed",
            dir.root().display()
        );
    }
    if storage == Storage::Legacy {
        return Ok(NodeIdentity {
            node_key: dir.load_node_key()?,
            vault: None,
        });
    }
    let mnemonic = load_mnemonic(dir, source)?;
    let vault = vault_of(&mnemonic);
    let node_key = node_key_of(&vault);
    check_node_key_file(dir, &node_key)?;
    Ok(NodeIdentity {
        node_key,
        vault: Some(vault),
    })
}

/// Refuses a node.key that is not the mnemonic's identity: one of the two
/// files was replaced, and guessing which one is meant would change the node
/// id peers pinned.
pub fn check_node_key_file(dir: &DataDir, derived: &NodeKey) -> anyhow::Result<()> {
    if !dir.node_key().exists() {
        return Ok(());
    }
    let stored = dir.load_node_key()?;
    if stored.node_id() != derived.node_id() {
        bail!(
            "{} ({}) is not the identity derived from the mnemonic ({}): one of them was replaced; \
             refusing to guess which node this is. Remove the file that does not belong",
            dir.node_key().display(),
            stored.node_id(),
            derived.node_id()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_public_key_line_is_openssh_format() {
        // Known answer: RFC 8709's wire encoding of an all-zero key.
        let line = ssh_public_key_line(&[0u8; 32], "alknet");
        assert_eq!(
            line,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA alknet"
        );
    }

    #[test]
    fn passphrase_files_lose_one_trailing_newline_and_may_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        for (content, expected) in [
            ("secret\n", "secret"),
            ("secret\r\n", "secret"),
            ("secret", "secret"),
            ("two\n\n", "two\n"),
            (" spaced ", " spaced "),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(read_passphrase_file(&path).unwrap().as_str(), expected);
        }
        std::fs::write(&path, "\n").unwrap();
        assert!(
            read_passphrase_file(&path)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}

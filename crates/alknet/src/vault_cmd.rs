//! `alknet vault …`: derive keys, seal and open credentials, and manage how
//! the mnemonic is kept (`seal`, `unseal`, `show-mnemonic`).
//!
//! Every command first checks the data directory's permissions as `serve`
//! does: each one opens the mnemonic, and one exposed to other users is
//! better refused by the first command that reads it than by the next start.

use std::io::{Read, Write};
use std::process::ExitCode;

use alknet_vault::{DerivationPath, EncryptedData, KeyType};
use anyhow::{Context, bail};
use zeroize::{Zeroize, Zeroizing};

use crate::data_dir::DataDir;
use crate::keystore::{self, PassphraseSource, Storage};

/// The largest input `encrypt`, `decrypt` and `rotate` read (1 MiB): these
/// are credentials, not files.
const MAX_INPUT: u64 = 1 << 20;

/// `vault derive PATH [--public] [--key-type T]`: the key as lowercase hex.
pub fn derive(
    dir: &DataDir,
    source: &PassphraseSource,
    path: &DerivationPath,
    key_type: KeyType,
    public: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    let vault = keystore::vault_of(&keystore::load_mnemonic(dir, source)?);
    let key = vault.derive(key_type, path)?;
    if json {
        let (field, hex) = if public {
            ("public_key", Zeroizing::new(hex::encode(key.public_key())))
        } else {
            (
                "private_key",
                Zeroizing::new(hex::encode(key.secret_bytes())),
            )
        };
        print_secret_json(serde_json::json!({
            "path": path.to_string(),
            "key_type": key_type.to_string(),
            field: hex.as_str(),
        }))?;
    } else if public {
        println!("{}", hex::encode(key.public_key()));
    } else {
        let hex = Zeroizing::new(hex::encode(key.secret_bytes()));
        println!("{}", hex.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault encrypt`: the secret on stdin → EncryptedData JSON on stdout.
pub fn encrypt(
    dir: &DataDir,
    source: &PassphraseSource,
    key_version: u32,
    raw: bool,
) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    let vault = keystore::vault_of(&keystore::load_mnemonic(dir, source)?);
    let input = read_stdin()?;
    let mut secret = Zeroizing::new(String::from_utf8(input.to_vec()).map_err(|error| {
        error.into_bytes().zeroize();
        anyhow::anyhow!("the secret on standard input is not UTF-8 text")
    })?);
    if !raw {
        strip_one_newline(&mut secret);
    }
    let sealed = vault.encrypt_with_version(&secret, key_version)?;
    println!("{}", sealed.to_json());
    Ok(ExitCode::SUCCESS)
}

/// `vault decrypt`: EncryptedData JSON on stdin → the plaintext on stdout.
/// Any failure is `decryption failed` and exit status 1.
pub fn decrypt(
    dir: &DataDir,
    source: &PassphraseSource,
    raw: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    let vault = keystore::vault_of(&keystore::load_mnemonic(dir, source)?);
    let input = read_stdin()?;
    let Ok(secret) = vault.decrypt_json(input.trim_ascii()) else {
        eprintln!("error: decryption failed");
        return Ok(ExitCode::from(1));
    };
    if json {
        print_secret_json(serde_json::json!({ "plaintext": secret.expose() }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(secret.expose().as_bytes())?;
    if !raw {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `vault rotate --to N`: EncryptedData on stdin → re-sealed under version N.
pub fn rotate(dir: &DataDir, source: &PassphraseSource, to: u32) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    let vault = keystore::vault_of(&keystore::load_mnemonic(dir, source)?);
    let input = read_stdin()?;
    let Ok(sealed) = EncryptedData::from_json(input.trim_ascii()) else {
        eprintln!("error: decryption failed");
        return Ok(ExitCode::from(1));
    };
    match vault.rotate(&sealed, to) {
        Ok(rotated) => {
            println!("{}", rotated.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Err(alknet_vault::RotateError::Decrypt(_)) => {
            eprintln!("error: decryption failed");
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}

/// `vault seal`: add a passphrase, or change it.
pub fn seal(
    dir: &DataDir,
    source: &PassphraseSource,
    new_passphrase_file: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    match dir.storage() {
        Storage::Legacy => bail!(keystore::no_mnemonic_message(dir)),
        Storage::Clear => {
            let mnemonic = keystore::read_clear(dir)?;
            // node.key is about to go; make sure it is the mnemonic's identity.
            let node_key = keystore::node_key_of(&keystore::vault_of(&mnemonic));
            keystore::check_node_key_file(dir, &node_key)?;
            let passphrase = keystore::new_passphrase(new_passphrase_file, false)?
                .context("the passphrase is empty")?;
            keystore::store_sealed(dir, &mnemonic, &passphrase)?;
            // The sealed copy is in place; now nothing private stays in clear.
            remove(&dir.mnemonic_file())?;
            remove(&dir.node_key())?;
            eprintln!(
                "sealed: the mnemonic is now in {} under your passphrase; mnemonic.txt and \
                 node.key were removed (deleting a file does not wipe it from every disk: if \
                 the data directory may have been copied, consider the mnemonic exposed)",
                dir.sealed_mnemonic_file().display()
            );
        }
        Storage::Sealed => {
            let passphrase = keystore::current_passphrase(dir, source)?;
            let mnemonic = keystore::open_sealed(dir, &passphrase)?;
            let new = keystore::new_passphrase(new_passphrase_file, false)?
                .context("the passphrase is empty")?;
            keystore::store_sealed(dir, &mnemonic, &new)?;
            eprintln!(
                "the passphrase of {} was changed",
                dir.sealed_mnemonic_file().display()
            );
        }
    }
    if json {
        print_state(dir, true)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault unseal`: remove the passphrase (the mnemonic goes back in clear,
/// mode 0600, and node.key is written beside it).
pub fn unseal(dir: &DataDir, source: &PassphraseSource, json: bool) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    match dir.storage() {
        Storage::Legacy => bail!(keystore::no_mnemonic_message(dir)),
        Storage::Clear => bail!(
            "the mnemonic in {} is not sealed",
            dir.mnemonic_file().display()
        ),
        Storage::Sealed => {
            let passphrase = keystore::current_passphrase(dir, source)?;
            let mnemonic = keystore::open_sealed(dir, &passphrase)?;
            let node_key = keystore::node_key_of(&keystore::vault_of(&mnemonic));
            keystore::store_clear(dir, &mnemonic, &node_key)?;
            remove(&dir.sealed_mnemonic_file())?;
            eprintln!(
                "warning: the passphrase was removed: the mnemonic is stored unencrypted in {} \
                 (mode 0600); anyone who can read it can become this node",
                dir.mnemonic_file().display()
            );
        }
    }
    if json {
        print_state(dir, false)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `vault show-mnemonic`.
pub fn show_mnemonic(
    dir: &DataDir,
    source: &PassphraseSource,
    json: bool,
) -> anyhow::Result<ExitCode> {
    dir.check_permissions()?;
    let mnemonic = keystore::load_mnemonic(dir, source)?;
    eprintln!(
        "warning: this is the root secret of the node: its identity and every key of its vault. \
         Anyone who sees it can impersonate the node. Write it down offline; do not paste it anywhere."
    );
    if json {
        print_secret_json(serde_json::json!({
            "mnemonic": mnemonic.phrase().as_str(),
            "words": mnemonic.word_count(),
        }))?;
    } else {
        println!("{}", mnemonic.phrase().as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints `value` as one JSON line. It may hold the very secret asked for:
/// the rendered text is zeroed after, and written as it is rather than
/// copied into a line (`serde_json::Value` itself cannot be zeroed; it lives
/// only until this returns).
fn print_secret_json(value: serde_json::Value) -> anyhow::Result<()> {
    let text = Zeroizing::new(value.to_string());
    drop(value);
    if crate::output::write(&text)? == crate::output::Reader::Reading {
        crate::output::write("\n")?;
    }
    Ok(())
}

/// What `seal` and `unseal --json` print: where the mnemonic now is and
/// whether a passphrase protects it, never the mnemonic.
fn print_state(dir: &DataDir, sealed: bool) -> anyhow::Result<()> {
    let file = if sealed {
        dir.sealed_mnemonic_file()
    } else {
        dir.mnemonic_file()
    };
    crate::output::line(
        &serde_json::json!({
            "data_dir": dir.root(),
            "sealed": sealed,
            "mnemonic_file": file,
        })
        .to_string(),
    )?;
    Ok(())
}

fn remove(path: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", path.display())),
    }
}

fn read_stdin() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut input)
        .context("cannot read standard input")?;
    if input.len() as u64 > MAX_INPUT {
        bail!("standard input is longer than {MAX_INPUT} bytes");
    }
    Ok(input)
}

fn strip_one_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}

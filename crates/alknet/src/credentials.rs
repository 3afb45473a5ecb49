//! Sealed credentials for handlers: `DATA_DIR/credentials.toml`.
//!
//! A handler that talks to another service needs that service's API key or
//! password. Keeping those in `alknet.toml` would put them in clear next to
//! everything else (and `NodeConfig` refuses unknown keys anyway), so they
//! live in their own file, sealed with the vault (`alknet vault encrypt`),
//! either inline or in a file of their own:
//!
//! ```toml
//! [credentials.github]
//! encrypted = { key_version = 2, salt = "…", iv = "…", data = "…" }
//!
//! [credentials.database]
//! file = "secrets/database.json"   # EncryptedData JSON; relative to the data directory
//! ```
//!
//! `serve` decrypts every credential at start-up, before the node listens:
//! one that does not open stops the start with an error that names it (never
//! its value). The values are handed to registrations as capabilities
//! ([`Credentials::grant`]); they never appear in logs, errors, `admin/tree`
//! or any response — [`Credentials`]' `Debug` lists names only, and the
//! values are zeroed when the node stops.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use alknet_call::OperationDef;
use alknet_vault::{EncryptedData, Secret, Vault};
use anyhow::{Context, bail};
use serde::Deserialize;

use crate::data_dir::DataDir;

/// The credentials file's name in the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    credentials: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    encrypted: Option<EncryptedData>,
    file: Option<PathBuf>,
}

/// Decrypted credentials by name. `Debug` shows the names only.
#[derive(Default)]
pub struct Credentials(BTreeMap<String, Secret>);

// `is_empty` is for tests.
#[allow(dead_code)]
impl Credentials {
    /// One credential.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.0.get(name)
    }

    /// Hands credential `name` to `def`'s handler as capability `key`; an
    /// unknown name is an error naming it.
    pub fn grant(&self, def: OperationDef, key: &str, name: &str) -> anyhow::Result<OperationDef> {
        let secret = self
            .get(name)
            .with_context(|| format!("no credential `{name}` in {CREDENTIALS_FILE}"))?;
        Ok(def.capability(key, secret.expose()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Credentials {
    /// The names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Reads and decrypts `DATA_DIR/credentials.toml` (none when it is absent).
/// Errors name the file and the credential, never a value.
pub fn load(dir: &DataDir, vault: Option<&Vault>) -> anyhow::Result<Credentials> {
    let path = dir.root().join(CREDENTIALS_FILE);
    if !path.exists() {
        return Ok(Credentials::default());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = parse(&text).with_context(|| format!("{}", path.display()))?;
    if file.credentials.is_empty() {
        return Ok(Credentials::default());
    }
    let Some(vault) = vault else {
        bail!(
            "{} holds sealed credentials but {}",
            path.display(),
            crate::keystore::no_mnemonic_message(dir)
        );
    };
    let mut credentials = BTreeMap::new();
    for (name, entry) in file.credentials {
        check_name(&name).with_context(|| format!("{}", path.display()))?;
        let secret = open(dir, vault, &name, entry)
            .with_context(|| format!("credential `{name}` in {}", path.display()))?;
        credentials.insert(name, secret);
    }
    Ok(Credentials(credentials))
}

/// The credential names in `DATA_DIR/credentials.toml`, nothing decrypted
/// (`alknet import check`).
pub fn names_in_file(dir: &DataDir) -> anyhow::Result<Vec<String>> {
    let path = dir.root().join(CREDENTIALS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = parse(&text).with_context(|| format!("{}", path.display()))?;
    Ok(file.credentials.into_keys().collect())
}

/// Parses the file. serde's messages can quote the offending value (which
/// might be a secret pasted in clear by mistake), so only the ones that name
/// keys are passed on; the rest become a position and a reminder of the
/// format.
fn parse(text: &str) -> anyhow::Result<CredentialsFile> {
    toml::from_str(text).map_err(|error| {
        let message = error.message();
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
        let safe = ["unknown field", "missing field", "duplicate key"]
            .iter()
            .any(|prefix| message.starts_with(prefix));
        if safe {
            anyhow::anyhow!("{message}{at}")
        } else {
            anyhow::anyhow!(
                "not a valid credentials file{at}: expected `[credentials.NAME]` tables, each with \
                 `encrypted = {{ key_version = …, salt = \"…\", iv = \"…\", data = \"…\" }}` or \
                 `file = \"PATH\"`"
            )
        }
    })
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
    if !valid {
        bail!(
            "credential names are 1 to 128 characters of letters, digits and _ - . : / \
             (got {} characters)",
            name.chars().count()
        );
    }
    Ok(())
}

fn open(dir: &DataDir, vault: &Vault, name: &str, entry: Entry) -> anyhow::Result<Secret> {
    let sealed = match (entry.encrypted, entry.file) {
        (Some(sealed), None) => sealed,
        (None, Some(file)) => read_sealed_file(&dir.root().join(file))?,
        _ => bail!("give exactly one of `encrypted` or `file`"),
    };
    vault.decrypt(&sealed).map_err(|_| {
        anyhow::anyhow!(
            "decryption failed: `{name}` was sealed by another vault (another mnemonic), or it \
             was altered; seal it again with `alknet vault encrypt --data-dir {}`",
            dir.root().display()
        )
    })
}

fn read_sealed_file(path: &Path) -> anyhow::Result<EncryptedData> {
    let json = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    EncryptedData::from_json(&json).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a sealed credential (EncryptedData JSON: key_version, salt, iv, data)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use alknet_vault::Mnemonic;

    const CANARY: &str = "canary-credential-value-7f3a";

    fn vault(phrase: &str) -> Vault {
        Vault::from_mnemonic(&Mnemonic::parse(phrase).unwrap(), "")
    }

    fn about() -> Vault {
        vault(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
    }

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(CREDENTIALS_FILE), text).unwrap();
    }

    fn inline(sealed: &EncryptedData) -> String {
        format!(
            "{{ key_version = {}, salt = \"{}\", iv = \"{}\", data = \"{}\" }}",
            sealed.key_version, sealed.salt, sealed.iv, sealed.data
        )
    }

    #[test]
    fn inline_and_file_credentials_decrypt_and_never_print() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let v = about();
        std::fs::create_dir(tmp.path().join("secrets")).unwrap();
        std::fs::write(
            tmp.path().join("secrets/db.json"),
            v.encrypt("db-password").unwrap().to_json(),
        )
        .unwrap();
        write(
            tmp.path(),
            &format!(
                "[credentials.github]\nencrypted = {}\n\n[credentials.db]\nfile = \"secrets/db.json\"\n",
                inline(&v.encrypt(CANARY).unwrap())
            ),
        );
        let credentials = load(&dir, Some(&v)).unwrap();
        assert_eq!(credentials.names(), ["db", "github"]);
        assert_eq!(credentials.get("github").unwrap().expose(), CANARY);
        assert_eq!(credentials.get("db").unwrap().expose(), "db-password");
        let printed = format!("{credentials:?}");
        assert_eq!(printed, r#"{"db", "github"}"#);
        let def = credentials
            .grant(OperationDef::query("x/y"), "token", "github")
            .unwrap();
        let _ = def;
        let Err(missing) = credentials.grant(OperationDef::query("x/y"), "token", "nope") else {
            panic!("an unknown credential was granted");
        };
        assert!(missing.to_string().contains("`nope`"));
    }

    #[test]
    fn a_credential_that_does_not_open_is_named_and_its_value_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let v = about();
        let other =
            vault("legal winner thank year wave sausage worth useful legal winner thank yellow");
        write(
            tmp.path(),
            &format!(
                "[credentials.good]\nencrypted = {}\n[credentials.foreign]\nencrypted = {}\n",
                inline(&v.encrypt(CANARY).unwrap()),
                inline(&other.encrypt("foreign-secret").unwrap())
            ),
        );
        let error = format!("{:#}", load(&dir, Some(&v)).unwrap_err());
        assert!(error.contains("credential `foreign`"), "{error}");
        assert!(error.contains("decryption failed"), "{error}");
        assert!(
            !error.contains(CANARY) && !error.contains("foreign-secret"),
            "{error}"
        );
    }

    #[test]
    fn malformed_files_do_not_echo_values() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let v = about();
        // A secret pasted in clear where the sealed form belongs.
        write(
            tmp.path(),
            &format!("[credentials.x]\nencrypted = \"{CANARY}\"\n"),
        );
        let error = format!("{:#}", load(&dir, Some(&v)).unwrap_err());
        assert!(!error.contains(CANARY), "{error}");
        assert!(error.contains("line 2"), "{error}");
        write(
            tmp.path(),
            &format!("[credentials.x]\npassword = \"{CANARY}\"\n"),
        );
        let error = format!("{:#}", load(&dir, Some(&v)).unwrap_err());
        assert!(!error.contains(CANARY), "{error}");
        assert!(error.contains("unknown field `password`"), "{error}");
        write(tmp.path(), "[credentials.x]\n");
        let error = format!("{:#}", load(&dir, Some(&v)).unwrap_err());
        assert!(error.contains("exactly one of"), "{error}");
        write(tmp.path(), "[credentials.\"bad name\"]\nfile = \"x\"\n");
        assert!(load(&dir, Some(&v)).is_err());
        write(tmp.path(), "[credentials.x]\nfile = \"missing.json\"\n");
        let error = format!("{:#}", load(&dir, Some(&v)).unwrap_err());
        assert!(error.contains("missing.json"), "{error}");
    }

    #[test]
    fn no_file_no_credentials_and_a_legacy_directory_cannot_have_any() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        assert!(load(&dir, None).unwrap().is_empty());
        write(tmp.path(), "# nothing yet\n");
        assert!(load(&dir, None).unwrap().is_empty());
        write(
            tmp.path(),
            &format!(
                "[credentials.x]\nencrypted = {}\n",
                inline(&about().encrypt("v").unwrap())
            ),
        );
        let error = format!("{:#}", load(&dir, None).unwrap_err());
        assert!(
            error.contains("no mnemonic") || error.contains("not an alknet data directory"),
            "{error}"
        );
    }
}

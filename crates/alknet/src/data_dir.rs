//! The data directory: everything a node keeps between runs.
//!
//! ```text
//! alknet-data/
//!   alknet.toml      configuration (every key with its default, commented)
//!   mnemonic.txt     the BIP39 mnemonic everything is derived from, mode 0600
//!                    (when initialised without a passphrase), or
//!   mnemonic.sealed  the same, sealed with a passphrase (Argon2id + AES-256-GCM)
//!   node.key         Ed25519 node key, PKCS#8 PEM, mode 0600 (derived from the
//!                    mnemonic at m/74'/0'/0'/0'; absent while the mnemonic is
//!                    sealed: `serve` derives it after unlocking)
//!   node.crt         self-signed certificate over the node key (for reference)
//!   ssh_host_ed25519_key.pub  the SSH host key's public half (m/74'/0'/1'/0')
//!   web.key          ECDSA P-256 key for browsers, mode 0600
//!   web.crt          its self-signed certificate
//!   identities.redb  API keys (hashes only) and peer certificates, mode 0600
//!   credentials.toml sealed credentials the node decrypts at start (optional)
//!   serve.lock       locked by the `serve` running on the directory; its pid
//! ```
//!
//! `serve`, and every command that opens its secrets (`token`, `peer`,
//! `vault`, `import check`), refuses a directory other users may write and a
//! private file (keys, mnemonic, identities, credentials) other users may
//! read, as sshd refuses unprotected host keys ([`check_private`]); `serve`
//! runs at most once
//! per directory ([`DataDir::lock`]). See docs/operations.md, and
//! docs/vault.md for the vault's side of this.

use std::path::{Path, PathBuf};

use alknet_core::NodeId;
use alknet_core::config::TlsSettings;
use alknet_core::node_key::{self, CertificateAndKey, NodeKey};
use alknet_core::tls;
use alknet_identity::{IDENTITIES_FILE, IdentityStore, TokenSpec};
use alknet_vault::{Mnemonic, WordCount};
use anyhow::{Context, bail};
use zeroize::Zeroizing;

use crate::keystore;

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./alknet-data";

/// Whether `path` is the default data directory, the one `serve` may create
/// without being asked: any other missing directory is more likely a typo
/// than a new node.
pub fn is_default(path: &Path) -> bool {
    path == Path::new(DEFAULT_DATA_DIR) || path == Path::new("alknet-data")
}

/// Creates `root` (and its parents) and makes it private to its owner.
fn create_private_dir(root: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", root.display()))?;
    }
    Ok(())
}

/// Makes sure `serve` has a data directory at `root`: an existing one is
/// used as it is; a missing one is created only when it is the default or
/// `create` (`serve --init`) says so.
pub fn ensure_exists(root: &Path, create: bool) -> anyhow::Result<()> {
    if root.exists() {
        return Ok(());
    }
    if !create && !is_default(root) {
        bail!(
            "the data directory {dir} does not exist; create it with `alknet init --data-dir {dir}` \
             (which shows the mnemonic and can set a passphrase), or let serve create it with \
             `alknet serve --init --data-dir {dir}`",
            dir = root.display()
        );
    }
    create_private_dir(root)
}

/// Paths inside a data directory.
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("alknet.toml")
    }

    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }

    fn node_cert(&self) -> PathBuf {
        self.root.join("node.crt")
    }

    fn web_key(&self) -> PathBuf {
        self.root.join("web.key")
    }

    fn web_cert(&self) -> PathBuf {
        self.root.join("web.crt")
    }

    pub fn identities(&self) -> PathBuf {
        self.root.join(IDENTITIES_FILE)
    }

    /// Whether the directory holds a node identity: a mnemonic (either
    /// form) or, for data directories from before the vault, a node key.
    pub fn is_initialised(&self) -> bool {
        self.node_key().exists()
            || self.mnemonic_file().exists()
            || self.sealed_mnemonic_file().exists()
    }

    /// The identity store, created if missing (a data directory initialised
    /// before the store existed gets an empty one).
    pub fn identity_store(&self) -> anyhow::Result<IdentityStore> {
        Ok(IdentityStore::open(self.identities())?)
    }

    /// The identity store of an initialised data directory, for the commands
    /// that edit it: pointing them at a wrong directory must not silently
    /// create a store no node reads. The directory's permissions are checked
    /// as `serve` checks them: `token` and `peer` open its secrets too, and an
    /// exposed store should be noticed by whichever command touches it first.
    pub fn existing_identity_store(&self) -> anyhow::Result<IdentityStore> {
        if !self.is_initialised() {
            bail!(
                "{} is not an alknet data directory (it has neither a mnemonic nor a node key); run `alknet init --data-dir {}` first",
                self.root.display(),
                self.root.display()
            );
        }
        self.check_permissions()?;
        self.identity_store()
    }

    /// The node key.
    pub fn load_node_key(&self) -> anyhow::Result<NodeKey> {
        Ok(NodeKey::load(&self.node_key())?)
    }

    /// The browser-facing self-signed certificate, created if missing. Under
    /// `stealth`, one that names the node (made before certificates stopped
    /// doing so) is replaced: a browser must not learn which node it reached.
    pub fn web_certificate(
        &self,
        node_id: NodeId,
        stealth: bool,
    ) -> anyhow::Result<CertificateAndKey> {
        if !self.web_cert().exists() || !self.web_key().exists() {
            self.write_web_certificate()?;
        }
        let web = tls::load_pem_pair(&self.web_cert(), &self.web_key())?;
        if stealth && names_node(&web, node_id) {
            tracing::info!(
                "stealth: replacing {}, which names the node, with a new certificate",
                self.web_cert().display()
            );
            self.write_web_certificate()?;
            return Ok(tls::load_pem_pair(&self.web_cert(), &self.web_key())?);
        }
        Ok(web)
    }

    /// What browsers and other non-peer clients are shown: the web
    /// certificate and, when `[tls]` names one, the operator's (its key
    /// checked as private as the node's own, since a renewal tool may write it
    /// with a looser mode); with a description for the banner and the logs.
    /// `serve` loads them at start and `SIGHUP` again.
    pub fn browser_certificates(
        &self,
        node_id: NodeId,
        tls: &TlsSettings,
        stealth: bool,
    ) -> anyhow::Result<BrowserCertificates> {
        let web = self.web_certificate(node_id, stealth)?;
        let (operator, described) = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (self.root.join(cert), self.root.join(key));
                check_private(
                    &key,
                    "the private key of the operator certificate ([tls] key)",
                )?;
                let pair = tls::load_pem_pair(&cert, &key)?;
                (
                    Some(pair),
                    format!("operator certificate {}", cert.display()),
                )
            }
            _ => (None, "self-signed certificate".to_owned()),
        };
        Ok(BrowserCertificates {
            web,
            operator,
            described,
        })
    }

    /// A fresh browser-facing certificate; its subject is `localhost`, as its
    /// names are, and never the node id.
    fn write_web_certificate(&self) -> anyhow::Result<()> {
        let (cert_pem, key_pem) = node_key::generate_web_certificate(WEB_CERTIFICATE_NAME)?;
        node_key::write_private_file(&self.web_key(), key_pem.as_bytes())?;
        std::fs::write(self.web_cert(), cert_pem)
            .with_context(|| format!("{}", self.web_cert().display()))?;
        Ok(())
    }
}

/// The lock file `serve` holds while it runs.
pub const LOCK_FILE: &str = "serve.lock";

/// Held while a node serves from a data directory; released (by the kernel,
/// even on SIGKILL) when dropped or when the process ends.
pub struct DirLock {
    #[cfg(unix)]
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl DataDir {
    /// Takes the directory's lock, or names the pid of the `serve` holding
    /// it: two nodes on one directory would run as the same node id.
    ///
    /// The file is never removed: unlinking it while another process opens
    /// it would let two processes lock two different files.
    pub fn lock(&self) -> anyhow::Result<DirLock> {
        #[cfg(unix)]
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;

            use nix::errno::Errno;
            use nix::fcntl::{Flock, FlockArg};

            let path = self.root.join(LOCK_FILE);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            let locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((_, Errno::EWOULDBLOCK)) => {
                    let pid = std::fs::read_to_string(&path).unwrap_or_default();
                    let holder = match pid.trim() {
                        "" => "a process still starting".to_owned(),
                        pid => format!("pid {pid}"),
                    };
                    bail!(
                        "{} is in use by another `alknet serve` ({holder}, per {}): two nodes on \
                         one data directory would run as the same node id; stop that one first, \
                         or serve another directory",
                        self.root.display(),
                        path.display()
                    );
                }
                Err((_, errno)) => {
                    return Err(errno).with_context(|| format!("cannot lock {}", path.display()));
                }
            };
            let record = |mut file: &std::fs::File| -> std::io::Result<()> {
                file.set_len(0)?;
                writeln!(file, "{}", std::process::id())
            };
            record(&locked).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(DirLock { _file: locked })
        }
        #[cfg(not(unix))]
        Ok(DirLock {})
    }

    /// Refuses a directory other users may write (they could replace its
    /// keys) and any private file in it other users may read. A missing
    /// directory passes: the command that needs it reports that.
    pub fn check_permissions(&self) -> anyhow::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = match std::fs::metadata(&self.root) {
                Ok(meta) => meta.permissions().mode(),
                // As with a missing file: the command that needs the
                // directory says how to create it.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot read {}", self.root.display()));
                }
            };
            if mode & 0o022 != 0 {
                bail!(
                    "{} is writable by other users (mode {:03o}): they could replace the node's \
                     keys; run `chmod go-w {}`",
                    self.root.display(),
                    mode & 0o777,
                    self.root.display()
                );
            }
        }
        for (path, holds) in [
            (self.mnemonic_file(), "the node's mnemonic"),
            (self.sealed_mnemonic_file(), "the node's sealed mnemonic"),
            (self.node_key(), "the node's private key"),
            (self.web_key(), "the browser certificate's private key"),
            (self.identities(), "the node's API keys and peers"),
            (
                self.root.join(crate::credentials::CREDENTIALS_FILE),
                "sealed credentials",
            ),
        ] {
            check_private(&path, holds)?;
        }
        Ok(())
    }
}

/// Refuses `path` when users other than its owner may read or write it, as
/// sshd refuses an unprotected host key: it `holds` a secret, and the error
/// gives the command that fixes it. A missing file passes (whoever reads it
/// reports that).
pub fn check_private(path: &Path, holds: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(meta) => meta.permissions().mode(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        if mode & 0o077 != 0 {
            bail!(
                "{} is open to other users (mode {:03o}): it holds {holds}; run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, holds);
    Ok(())
}

/// The subject of the browser-facing certificate.
const WEB_CERTIFICATE_NAME: &str = "localhost";

/// Whether the certificate's bytes carry the node id (in its subject, as
/// certificates made before stealth existed did).
fn names_node(web: &CertificateAndKey, node_id: NodeId) -> bool {
    let id = node_id.to_string();
    web.chain.iter().any(|der| {
        der.as_ref()
            .windows(id.len())
            .any(|window| window == id.as_bytes())
    })
}

/// The certificates [`DataDir::browser_certificates`] loaded.
pub struct BrowserCertificates {
    /// The self-signed web certificate.
    pub web: CertificateAndKey,
    /// The operator's certificate, when `[tls]` names one.
    pub operator: Option<CertificateAndKey>,
    /// What browsers are served, e.g. `operator certificate /etc/…/fullchain.pem`.
    pub described: String,
}

/// Where `init` takes the mnemonic from.
#[derive(Debug, Clone)]
pub enum MnemonicChoice {
    /// A fresh 24-word mnemonic from the operating system's CSPRNG.
    Generate,
    /// An existing mnemonic: from a file, else a prompt (standard input when
    /// it is not a terminal).
    Restore { file: Option<PathBuf> },
}

/// Whether and how `init` seals the mnemonic.
#[derive(Debug, Clone)]
pub enum PassphraseChoice {
    /// Ask on the terminal; with no terminal, store it in clear with a warning.
    Ask,
    /// Store it in clear (mode 0600), with a warning.
    None,
    /// Seal it with the passphrase in this file.
    File(PathBuf),
}

/// What `init` is asked to do.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub mnemonic: MnemonicChoice,
    pub passphrase: PassphraseChoice,
}

impl InitOptions {
    /// What `serve` does on a missing data directory: generate, no
    /// passphrase, never prompt.
    pub fn unattended() -> Self {
        Self {
            mnemonic: MnemonicChoice::Generate,
            passphrase: PassphraseChoice::None,
        }
    }
}

/// What `init` created.
pub struct Initialised {
    pub dir: DataDir,
    pub node_id: String,
    /// The admin token: printed once, never stored.
    pub admin_token: String,
    /// The SSH host key's public line.
    pub ssh_host_key: String,
    /// A generated mnemonic (None when restored): shown once by `init`.
    pub mnemonic: Option<Mnemonic>,
    /// Whether the mnemonic was sealed with a passphrase.
    pub sealed: bool,
}

impl Initialised {
    /// Prints what was created as one JSON object: `data_dir`, `node_id`,
    /// `config`, `ssh_host_key`, `admin_token`, `sealed`, and `mnemonic` (a
    /// generated one; `null` when restored). The notices go to standard
    /// error, as with [`Self::print`].
    pub fn print_json(&self) {
        let object = serde_json::json!({
            "data_dir": self.dir.root(),
            "node_id": self.node_id,
            "config": self.dir.config(),
            "ssh_host_key": self.ssh_host_key,
            "admin_token": self.admin_token,
            "sealed": self.sealed,
            "mnemonic": self.mnemonic.as_ref().map(|m| m.phrase().as_str().to_owned()),
        });
        println!("{object}");
        if self.mnemonic.is_some() {
            eprintln!(
                "WRITE THE MNEMONIC DOWN and keep it offline: it is shown only this once, and it \
                 alone restores this node with `alknet init --restore`"
            );
        }
        eprintln!(
            "the admin token is shown only this once and only its hash is kept: store it safely"
        );
    }

    /// What `serve` says when it initialised the directory itself: the text
    /// of [`Self::print`], or with `serve --json` only its notices (on
    /// standard error) and the admin token handed back for the JSON banner,
    /// which must stay the one line on standard output.
    pub fn announce(&self, json: bool) -> Option<String> {
        if !json {
            self.print(false);
            return None;
        }
        eprintln!(
            "initialised {} (node id {}); the admin token is in the banner's `admin_token`, \
             shown only this once: store it safely. `alknet vault show-mnemonic --data-dir {}` \
             shows the new mnemonic: write it down, it alone restores this node",
            self.dir.root().display(),
            self.node_id,
            self.dir.root().display()
        );
        Some(self.admin_token.clone())
    }

    /// Prints what was created. `show_mnemonic` prints a generated mnemonic
    /// with its notice (`alknet init`); `serve`'s unattended initialisation
    /// keeps it out of its output, which often ends up in logs.
    pub fn print(&self, show_mnemonic: bool) {
        println!("initialised {}", self.dir.root().display());
        println!("node id: {}", self.node_id);
        println!("config: {}", self.dir.config().display());
        println!("ssh host key: {}", self.ssh_host_key);
        println!("admin token: {}", self.admin_token);
        println!(
            "(the admin token is shown only this once and only its hash is kept: store it safely)"
        );
        match (&self.mnemonic, show_mnemonic) {
            (Some(mnemonic), true) => {
                println!("mnemonic: {}", mnemonic.phrase().as_str());
                println!(
                    "(WRITE THESE {} WORDS DOWN and keep them offline: they are shown only this once, \
                     and they alone restore this node's identity and every key of its vault with \
                     `alknet init --restore`)",
                    mnemonic.word_count()
                );
            }
            (Some(_), false) => eprintln!(
                "note: the new mnemonic is not shown here; `alknet vault show-mnemonic --data-dir {}` \
                 shows it: write it down, it alone restores this node",
                self.dir.root().display()
            ),
            (None, _) => {}
        }
        if self.sealed {
            eprintln!(
                "the mnemonic is sealed with your passphrase in {}; `alknet serve` asks for it \
                 (or reads --passphrase-file, or the systemd credential `{}`)",
                self.dir.sealed_mnemonic_file().display(),
                keystore::PASSPHRASE_CREDENTIAL
            );
        } else {
            eprintln!(
                "warning: no passphrase: the mnemonic is stored unencrypted in {} (mode 0600), as \
                 sshd stores its host keys; anyone who can read it can become this node. \
                 `alknet vault seal --data-dir {}` adds a passphrase",
                self.dir.mnemonic_file().display(),
                self.dir.root().display()
            );
        }
    }
}

/// Creates a data directory. Refuses to touch one that already has an
/// identity: replacing it changes the node id, which peers have pinned.
/// Everything that can fail on input (a bad restored mnemonic, an unreadable
/// passphrase file) fails before anything is written.
pub fn init(root: &Path, options: InitOptions) -> anyhow::Result<Initialised> {
    let dir = DataDir::new(root);
    if dir.is_initialised() {
        bail!(
            "{} is already initialised (it has a node identity); refusing to replace the node's identity",
            root.display()
        );
    }
    let (mnemonic, generated) = match &options.mnemonic {
        MnemonicChoice::Generate => (Mnemonic::generate(WordCount::Words24)?, true),
        MnemonicChoice::Restore { file } => (read_restored_mnemonic(file.as_deref())?, false),
    };
    let passphrase = match &options.passphrase {
        PassphraseChoice::None => None,
        PassphraseChoice::File(path) => Some(keystore::read_passphrase_file(path)?),
        PassphraseChoice::Ask if keystore::interactive() => keystore::new_passphrase(None, true)?,
        PassphraseChoice::Ask => {
            eprintln!(
                "note: standard input is not a terminal and no passphrase source was given \
                 (--passphrase-file or --no-passphrase): storing the mnemonic without a passphrase"
            );
            None
        }
    };
    let vault = keystore::vault_of(&mnemonic);
    let key = keystore::node_key_of(&vault);

    create_private_dir(root)?;
    match &passphrase {
        Some(passphrase) => keystore::store_sealed(&dir, &mnemonic, passphrase)?,
        None => keystore::store_clear(&dir, &mnemonic, &key)?,
    }
    let cert = key.self_signed_certificate()?;
    std::fs::write(
        dir.node_cert(),
        node_key::pem_encode("CERTIFICATE", &cert.chain[0]),
    )
    .with_context(|| format!("{}", dir.node_cert().display()))?;
    let node_id = key.node_id().to_string();
    let ssh_host_key = keystore::ssh_public_key_line(
        &vault.ssh_host_key().public_key(),
        &format!("alknet-host-key {}", &node_id[..20]),
    );
    std::fs::write(dir.ssh_host_key_pub(), format!("{ssh_host_key}\n"))
        .with_context(|| format!("{}", dir.ssh_host_key_pub().display()))?;
    dir.write_web_certificate()?;
    if !dir.config().exists() {
        std::fs::write(dir.config(), crate::sections::template())
            .with_context(|| format!("{}", dir.config().display()))?;
    }
    // Last, so that a failure here leaves a usable node whose operator can
    // still create the key by hand.
    let (admin_token, _) = dir
        .identity_store()
        .and_then(|store| Ok(store.create_token(admin_token_spec())?))
        .context(
            "the node identity was created but the admin token was not; \
             create one with `alknet token create --id admin --scopes admin`",
        )?;
    Ok(Initialised {
        node_id,
        dir,
        admin_token,
        ssh_host_key,
        mnemonic: generated.then_some(mnemonic),
        sealed: passphrase.is_some(),
    })
}

/// The mnemonic to restore: from `file`, else a hidden prompt on the
/// terminal, else standard input.
fn read_restored_mnemonic(file: Option<&Path>) -> anyhow::Result<Mnemonic> {
    let text = match file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the mnemonic file {}", path.display()))?,
        ),
        None if keystore::interactive() => {
            keystore::prompt_hidden("mnemonic (the words are not echoed): ")?
        }
        None => {
            let mut text = Zeroizing::new(String::new());
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the mnemonic from standard input")?;
            text
        }
    };
    Mnemonic::parse(&text).context("cannot restore: the mnemonic is not valid")
}

/// The key `init` creates: the `admin` identity with the `admin` scope, which
/// `admin/tree` and `admin/kill` require.
fn admin_token_spec() -> TokenSpec {
    TokenSpec {
        id: Some("admin".to_owned()),
        scopes: vec!["admin".to_owned()],
        expires_at: None,
        description: "created by alknet init".to_owned(),
    }
}

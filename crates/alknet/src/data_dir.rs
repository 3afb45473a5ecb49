//! The data directory: everything a node keeps between runs.
//!
//! ```text
//! alknet-data/
//!   alknet.toml   configuration (every key with its default, commented)
//!   node.key      Ed25519 node key, PKCS#8 PEM, mode 0600
//!   node.crt      self-signed certificate over the node key (for reference)
//!   web.key       ECDSA P-256 key for browsers, mode 0600
//!   web.crt       its self-signed certificate
//!   identities.redb  API keys (hashes only) and peer certificates, mode 0600
//! ```

use std::path::{Path, PathBuf};

use alknet_core::node_key::{self, CertificateAndKey, NodeKey};
use alknet_core::tls;
use alknet_identity::{IDENTITIES_FILE, IdentityStore, TokenSpec};
use anyhow::{Context, bail};

/// The default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./alknet-data";

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

    pub fn is_initialised(&self) -> bool {
        self.node_key().exists()
    }

    /// The identity store, created if missing (a data directory initialised
    /// before the store existed gets an empty one).
    pub fn identity_store(&self) -> anyhow::Result<IdentityStore> {
        Ok(IdentityStore::open(self.identities())?)
    }

    /// The identity store of an initialised data directory, for the commands
    /// that edit it: pointing them at a wrong directory must not silently
    /// create a store no node reads.
    pub fn existing_identity_store(&self) -> anyhow::Result<IdentityStore> {
        if !self.is_initialised() {
            bail!(
                "{} is not an alknet data directory (it has no node key); run `alknet init --data-dir {}` first",
                self.root.display(),
                self.root.display()
            );
        }
        self.identity_store()
    }

    /// The node key.
    pub fn load_node_key(&self) -> anyhow::Result<NodeKey> {
        Ok(NodeKey::load(&self.node_key())?)
    }

    /// The browser-facing self-signed certificate, created if missing.
    pub fn web_certificate(&self, node_key: &NodeKey) -> anyhow::Result<CertificateAndKey> {
        if !self.web_cert().exists() || !self.web_key().exists() {
            self.write_web_certificate(node_key)?;
        }
        Ok(tls::load_pem_pair(&self.web_cert(), &self.web_key())?)
    }

    fn write_web_certificate(&self, node_key: &NodeKey) -> anyhow::Result<()> {
        let (cert_pem, key_pem) =
            node_key::generate_web_certificate(&node_key.node_id().to_string())?;
        node_key::write_private_file(&self.web_key(), key_pem.as_bytes())?;
        std::fs::write(self.web_cert(), cert_pem)
            .with_context(|| format!("{}", self.web_cert().display()))?;
        Ok(())
    }
}

/// What `init` created.
pub struct Initialised {
    pub dir: DataDir,
    pub node_id: String,
    /// The admin token: printed once, never stored.
    pub admin_token: String,
}

impl Initialised {
    pub fn print(&self) {
        println!("initialised {}", self.dir.root().display());
        println!("node id: {}", self.node_id);
        println!("config: {}", self.dir.config().display());
        println!("admin token: {}", self.admin_token);
        println!(
            "(the admin token is shown only this once and only its hash is kept: store it safely)"
        );
    }
}

/// Creates a data directory. Refuses to touch one that already has a node key:
/// replacing a key changes the node's identity, which peers have pinned.
pub fn init(root: &Path) -> anyhow::Result<Initialised> {
    let dir = DataDir::new(root);
    if dir.is_initialised() {
        bail!(
            "{} is already initialised (it has a node key); refusing to replace the node's identity",
            root.display()
        );
    }
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", root.display()))?;
    }
    let key = NodeKey::generate();
    key.save(&dir.node_key())?;
    let cert = key.self_signed_certificate()?;
    std::fs::write(
        dir.node_cert(),
        node_key::pem_encode("CERTIFICATE", &cert.chain[0]),
    )
    .with_context(|| format!("{}", dir.node_cert().display()))?;
    dir.write_web_certificate(&key)?;
    if !dir.config().exists() {
        std::fs::write(dir.config(), alknet_core::config::DEFAULT_CONFIG_TOML)
            .with_context(|| format!("{}", dir.config().display()))?;
    }
    // Last, so that a failure here leaves a usable node whose operator can
    // still create the key by hand.
    let (admin_token, _) = dir
        .identity_store()
        .and_then(|store| Ok(store.create_token(admin_token_spec())?))
        .context(
            "the node key was created but the admin token was not; \
             create one with `alknet token create --id admin --scopes admin`",
        )?;
    Ok(Initialised {
        node_id: key.node_id().to_string(),
        dir,
        admin_token,
    })
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

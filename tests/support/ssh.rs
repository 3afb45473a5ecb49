//! A node serving SSH and the stock OpenSSH clients that reach it (`ssh`,
//! `sftp`, `scp`): client keys, peer entries, strict host-key checking
//! against the key the vault derives, and the three routes in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use alknet_call::CallClient;
use alknet_call::client::{ClientOptions, Transport as CallTransport};
use base64::Engine as _;
use serde_json::Value;

use crate::process::{NodeProcess, alknet_bin, run};
use crate::runtime;

/// How `ssh` reaches the node.
#[derive(Clone, Copy, Debug)]
pub enum Route {
    /// `ssh -p` to `[ssh] listen`.
    Plain,
    /// `openssl s_client -alpn alknet/ssh` as the ProxyCommand.
    Tls,
    /// `alknet proxy` (QUIC) as the ProxyCommand.
    Quic,
}

/// A node serving SSH, with a client key and a `known_hosts` that holds the
/// host key `alknet init` published.
pub struct Fixture {
    pub node: NodeProcess,
    pub plain: SocketAddr,
    pub client: tempfile::TempDir,
    /// Runs the admin session: it lives as long as the runtime it began on.
    runtime: tokio::runtime::Runtime,
}

pub const HOST_ALIAS: &str = "alknet-test";

impl Fixture {
    pub fn start(extra_config: &str) -> Self {
        let node = NodeProcess::start(&format!("[ssh]\nlisten = \"127.0.0.1:0\"\n{extra_config}"));
        let banner = node.stdout.lock().unwrap().clone();
        let plain = banner
            .iter()
            .find_map(|line| {
                let rest = line.split("plain SSH on ").nth(1)?;
                rest.split(';').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no plain SSH address in {banner:#?}"));
        let host_key =
            std::fs::read_to_string(node.data_dir.path().join("ssh_host_ed25519_key.pub"))
                .expect("init wrote the host key");
        assert!(
            banner.iter().any(|l| l.contains(host_key.trim())),
            "the banner shows the published host key: {banner:#?}"
        );
        let client = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            client.path().join("known_hosts"),
            format!("{HOST_ALIAS} {}\n", host_key.trim()),
        )
        .unwrap();
        Self {
            node,
            plain,
            client,
            runtime: runtime(),
        }
    }

    /// A new key pair; returns its private key's path.
    pub fn key(&self, name: &str) -> PathBuf {
        let path = self.client.path().join(name);
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success());
        path
    }

    /// Grants `key` the identity `id` with `scopes`.
    pub fn allow(&self, key: &Path, id: &str, scopes: &str) {
        let fingerprint = ed25519_fingerprint(key);
        let output = run(&[
            "peer",
            "add",
            &fingerprint,
            "--id",
            id,
            "--scopes",
            scopes,
            "--data-dir",
            self.node.data_dir.path().to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{output:?}");
    }

    /// `ssh` with only `key`, strict host checking against the vault key,
    /// no configuration file, reaching the node over `path`.
    pub fn ssh(&self, path: Route, key: &Path) -> Command {
        let mut ssh = self.openssh("ssh", path, key);
        ssh.arg("127.0.0.1");
        ssh
    }

    /// `program` (`ssh`, `sftp` or `scp`) set up as [`Fixture::ssh`] sets
    /// up `ssh`, without the host: `sftp` takes it last, `scp` inside its
    /// paths (`127.0.0.1:file`).
    pub fn openssh(&self, program: &str, path: Route, key: &Path) -> Command {
        let mut ssh = Command::new(program);
        ssh.args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                &format!("HostKeyAlias={HOST_ALIAS}"),
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=20",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.client.path().join("known_hosts").display()
            ));
        let node = self.node.addr;
        match path {
            Route::Plain => {
                let flag = if program == "ssh" { "-p" } else { "-P" };
                ssh.args([flag, &self.plain.port().to_string()]);
            }
            Route::Tls => {
                ssh.arg("-o").arg(format!(
                    "ProxyCommand=openssl s_client -quiet -verify_quiet -alpn alknet/ssh -connect {node}"
                ));
            }
            Route::Quic => {
                ssh.arg("-o").arg(format!(
                    "ProxyCommand={} proxy --pin {} {node}",
                    alknet_bin().display(),
                    self.node.node_id
                ));
            }
        }
        ssh
    }

    pub fn admin(&self) -> Admin<'_> {
        let options = ClientOptions {
            transport: CallTransport::Quic,
            token: Some(self.node.admin_token()),
            ..ClientOptions::default()
        };
        let client = self
            .runtime
            .block_on(CallClient::connect(self.node.addr, options))
            .expect("admin session");
        Admin {
            client,
            runtime: &self.runtime,
        }
    }
}

/// An admin call session, called from blocking test code.
pub struct Admin<'a> {
    client: CallClient,
    runtime: &'a tokio::runtime::Runtime,
}

impl Admin<'_> {
    /// The operation's output or its error.
    pub fn call_result(
        &self,
        operation: &str,
        input: Value,
    ) -> Result<Value, alknet_call::CallError> {
        self.runtime.block_on(self.client.call(operation, input))
    }

    pub fn call(&self, operation: &str, input: Value) -> Value {
        self.runtime
            .block_on(self.client.call(operation, input))
            .unwrap_or_else(|error| panic!("{operation}: {error:?}"))
    }
}

/// A new Ed25519 key (PKCS#8 PEM) for `alknet proxy --key`: a client
/// certificate's key, named `<name>.pem` in `dir`.
pub fn client_certificate(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&path)
        .status()
        .expect("openssl runs");
    assert!(made.success());
    path
}

/// `ed25519:<hex>` of a PEM key: the last 32 bytes of its public DER.
pub fn certificate_fingerprint(key: &Path) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .expect("openssl runs");
    assert!(out.status.success());
    format!(
        "ed25519:{}",
        hex::encode(&out.stdout[out.stdout.len() - 32..])
    )
}

/// The `ed25519:<hex>` a peer entry names an Ed25519 SSH key by: its raw key,
/// the last 32 bytes of the `.pub` blob.
pub fn ed25519_fingerprint(key: &Path) -> String {
    let line = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).expect("blob"))
        .expect("base64");
    format!("ed25519:{}", hex::encode(&blob[blob.len() - 32..]))
}

pub fn output(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("ssh runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

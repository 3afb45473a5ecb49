//! `alknet`: the node's command-line interface.

mod admin;
mod banner;
mod call;
mod connect;
mod credentials;
mod data_dir;
mod dns_cmd;
mod git_cmd;
mod git_command;
mod identities;
mod imports;
mod keystore;
mod metrics_endpoint;
mod output;
mod reload;
mod resolve_cmd;
mod sections;
mod serve;
mod service;
mod sftp_subsystem;
mod ssh_client;
mod upstreams;
mod vault_cmd;
mod vault_keys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use alknet_vault::{DerivationPath, KeyType};
use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::connect::ConnectArgs;
use crate::data_dir::{DataDir, InitOptions, MnemonicChoice, PassphraseChoice};
use crate::keystore::PassphraseSource;

/// jemalloc instead of glibc's malloc: glibc kept what a peak had taken (a
/// node held 370 MB after a 1.7 GB peak, issue #14); jemalloc's background
/// thread hands freed pages back to the system within seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it initialises (before `main`): a background
/// thread purges unused pages, dirty pages after 1 s instead of 10 s, without
/// the lazy `MADV_FREE` stage that leaves them counted in the RSS until the
/// kernel needs them. `crates/alknet-bench` sets the same.
// SAFETY: jemalloc declares `const char *malloc_conf` (named
// `_rjem_malloc_conf` by tikv-jemalloc-sys's prefix) as a weak symbol for the
// program to define, and reads it as a NUL-terminated string. An
// `Option<&c_char>` has the layout of a nullable C pointer, and this one points
// at a NUL-terminated literal that lives as long as the program and is never
// written; no other item of the program defines the symbol.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: Option<&'static std::ffi::c_char> = Some(
    // SAFETY: a C string literal's pointer is valid and aligned for its whole
    // `'static` life, so the reference to its first byte is too.
    unsafe { &*c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr() },
);

/// alknet: one port, many protocols, routed by ALPN.
#[derive(Debug, Parser)]
#[command(name = "alknet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: a 24-word mnemonic (shown once) and the node
    /// identity derived from it, certificates and a commented alknet.toml.
    ///
    /// The mnemonic is sealed with a passphrase (asked on the terminal, or
    /// --passphrase-file) or, with --no-passphrase, stored in clear with mode
    /// 0600. Without a terminal and without either option it is stored in
    /// clear, with a warning: init never waits for input nobody can give.
    Init {
        /// The directory to create.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Restore an existing mnemonic (same mnemonic, same node id) instead
        /// of generating one.
        #[arg(long)]
        restore: bool,
        /// With --restore: read the mnemonic from this file [default: a prompt,
        /// or standard input when it is not a terminal].
        #[arg(long, requires = "restore")]
        mnemonic_file: Option<PathBuf>,
        /// Store the mnemonic without a passphrase (mode 0600 file).
        #[arg(long, conflicts_with = "passphrase_file")]
        no_passphrase: bool,
        /// Seal the mnemonic with the passphrase in this file (one trailing
        /// newline is ignored).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print what was created as one JSON object (notices stay on
        /// standard error).
        #[arg(long)]
        json: bool,
    },
    /// Run the node. A missing ./alknet-data is initialised first (without a
    /// passphrase); any other missing data directory only with --init.
    Serve {
        /// The data directory.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Initialise the data directory (as `alknet init --no-passphrase`
        /// would) if it is missing.
        #[arg(long)]
        init: bool,
        /// Listen address for QUIC (UDP) and TLS (TCP); overrides `listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Configuration file [default: DATA_DIR/alknet.toml when present].
        #[arg(long)]
        config: Option<PathBuf>,
        /// The vault's passphrase, when the mnemonic is sealed [default: the
        /// systemd credential `vault-passphrase`, else a prompt on the terminal].
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Print the start-up banner as one JSON object line (the log stays
        /// on standard error).
        #[arg(long)]
        json: bool,
    },
    /// Call one operation on a node and print its output as JSON
    /// (a subscription prints one line per item). Exit status 1 when the
    /// call fails (its error is printed as CODE: message), 2 when the
    /// node cannot be reached.
    Call {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The operation, e.g. `services/list`.
        operation: String,
        /// The input: JSON, `-` to read it from standard input, or `@PATH` to
        /// read it from a file [default: {}].
        input: Option<String>,
    },
    /// Manage API keys (bearer tokens) in the data directory; a running node
    /// sees changes at once.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage peers: client-certificate fingerprints and SSH keys mapped to
    /// identities.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// Manage hosted git repositories, in the data directory or on a
    /// running node (--connect).
    Git {
        #[command(subcommand)]
        command: git_cmd::GitCommand,
    },
    /// Change and list the records of a running node's DNS zones
    /// (--connect; needs dns:write:<zone> to change).
    Dns {
        #[command(subcommand)]
        command: dns_cmd::DnsCommand,
    },
    /// What a running node sees for a node id, a pkarr key or a name
    /// (pkarr records, and where a node is reached).
    Resolve(resolve_cmd::ResolveArgs),
    /// Inspect a running node (needs the `admin` scope).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// HTTP APIs and MCP servers imported as operations (`[import]`).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// The vault: keys derived from the data directory's mnemonic, sealed
    /// credentials, and the passphrase that protects the mnemonic.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Pipe standard input and output to a stream with the node (for
    /// `ssh -o ProxyCommand='alknet proxy --pin … %h:%p'`), or with --socks5
    /// run a local SOCKS5 server whose connections ride one SSH session with
    /// the node. Exit status 0 when the node ends the stream, 2 when it
    /// cannot be reached.
    Proxy(ssh_client::proxy::ProxyArgs),
    /// Print an OpenSSH `Host` block (ProxyCommand through `alknet proxy`,
    /// HostKeyAlias) and the `known_hosts` line with the node's SSH host key,
    /// learnt over the pinned connection.
    SshConfig(ssh_client::ssh_config::SshConfigArgs),
    /// Print a completion script for a shell, e.g.
    /// `source <(alknet completions bash)`, or
    /// `alknet completions zsh > ~/.zfunc/_alknet`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `alknet man > alknet.1; man ./alknet.1`.
    Man,
}

/// The data directory and, when its mnemonic is sealed, the passphrase.
#[derive(Debug, Args)]
struct VaultArgs {
    /// The data directory.
    #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The passphrase the mnemonic is sealed with [default: the systemd
    /// credential `vault-passphrase`, else a prompt on the terminal].
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl VaultArgs {
    fn split(self) -> (DataDir, PassphraseSource) {
        (
            DataDir::new(&self.data_dir),
            PassphraseSource {
                file: self.passphrase_file,
            },
        )
    }
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// Print the key at a derivation path as lowercase hex (the private key,
    /// or with --public the public key), e.g. m/74'/0'/0'/0' (the node id).
    Derive {
        /// `m/…` with hardened indices marked ' or h.
        path: DerivationPath,
        /// Print the public key instead of the private key.
        #[arg(long)]
        public: bool,
        /// ed25519 (SLIP-0010, hardened only) or secp256k1 (BIP-32; builds
        /// with the `secp256k1` feature).
        #[arg(long, default_value = "ed25519")]
        key_type: KeyType,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Seal the secret on standard input (one trailing newline is dropped
    /// unless --raw) and print it as EncryptedData JSON.
    Encrypt {
        /// The key version to seal with (2 or more).
        #[arg(long, default_value_t = alknet_vault::CURRENT_KEY_VERSION)]
        key_version: u32,
        /// Keep standard input exactly as read.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Open EncryptedData JSON from standard input and print the plaintext
    /// (followed by a newline unless --raw). Any failure: exit status 1.
    Decrypt {
        /// Print the plaintext exactly, without a trailing newline.
        #[arg(long, conflicts_with = "json")]
        raw: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Re-seal EncryptedData JSON from standard input under another key version.
    Rotate {
        /// The key version to re-seal with (2 or more).
        #[arg(long)]
        to: u32,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Seal the mnemonic with a passphrase, or change the passphrase.
    Seal {
        /// The new passphrase [default: asked twice on the terminal].
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Remove the passphrase: store the mnemonic in clear (mode 0600).
    Unseal {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Print the mnemonic (needs the passphrase when it is sealed).
    ShowMnemonic {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

/// The data directory holding the identity store.
#[derive(Debug, Args)]
struct DataDirArg {
    /// The data directory.
    #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once, only its hash is kept.
    Create {
        /// Scopes granted, comma-separated (e.g. `admin` or `fs:read,fs:write`).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// The identity id the token stands for [default: token:<prefix>].
        #[arg(long)]
        id: Option<String>,
        /// Lifetime, e.g. `90s`, `12h`, `30d` [default: never expires].
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// Free text shown by `token list`.
        #[arg(long)]
        description: Option<String>,
        /// Print JSON (the token included) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List tokens: prefix, identity, scopes, dates, description (never the token).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Revoke a token by its prefix (e.g. `alk_3xYz`).
    Revoke {
        /// The token's prefix, as `token list` shows it.
        prefix: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Map a client-certificate fingerprint or an SSH public key to an
    /// identity (replacing any existing entry for it).
    Add {
        /// `ed25519:<hex public key>`, `SHA256:<hex of the certificate DER>`,
        /// or an OpenSSH public key: a line (`ssh-ed25519 AAAA… comment`), a
        /// .pub file, `-` (standard input) or `@PATH`. An Ed25519 SSH key is
        /// the same peer as a client certificate with that key
        /// (`ed25519:<hex>`); other keys are named `SHA256:<base64>`, as
        /// `ssh-keygen -l` prints them.
        #[arg(value_name = "PEER")]
        fingerprint: String,
        /// The identity id.
        #[arg(long)]
        id: String,
        /// Scopes granted, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List peers.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Remove a peer.
    Remove {
        /// The peer's fingerprint, or its OpenSSH public key (as `peer add`
        /// takes it).
        #[arg(value_name = "PEER")]
        fingerprint: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Validate the configuration's imports without starting the node:
    /// documents are read (and fetched) and turned into operations,
    /// credentials are looked up by name (nothing is decrypted), names are
    /// checked for collisions. Exit status 1 on the first problem (a missing
    /// data directory included), 0 when all are fine.
    Check {
        /// The data directory.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Configuration file [default: DATA_DIR/alknet.toml when present].
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON (what was checked) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Print the node's live actor tree (`admin/tree`).
    Tree {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Print the raw JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            data_dir,
            restore,
            mnemonic_file,
            no_passphrase,
            passphrase_file,
            json,
        } => {
            let options = InitOptions {
                mnemonic: if restore {
                    MnemonicChoice::Restore {
                        file: mnemonic_file,
                    }
                } else {
                    MnemonicChoice::Generate
                },
                passphrase: match (no_passphrase, passphrase_file) {
                    (_, Some(file)) => PassphraseChoice::File(file),
                    (true, None) => PassphraseChoice::None,
                    (false, None) => PassphraseChoice::Ask,
                },
            };
            data_dir::init(&data_dir, options).map(|created| {
                if json {
                    created.print_json();
                } else {
                    created.print(true);
                }
                ExitCode::SUCCESS
            })
        }
        Command::Serve {
            data_dir,
            init,
            listen,
            config,
            passphrase_file,
            json,
        } => serve::run(serve::ServeArgs {
            data_dir,
            init,
            listen,
            config,
            passphrase: PassphraseSource {
                file: passphrase_file,
            },
            json,
        }),
        Command::Call {
            connect,
            operation,
            input,
        } => call::run(call::CallArgs {
            connect,
            operation,
            input,
        }),
        Command::Token { command } => match command {
            TokenCommand::Create {
                scopes,
                id,
                expires,
                description,
                json,
                dir,
            } => identities::token_create(
                &dir.data_dir,
                identities::CreateArgs {
                    scopes,
                    id,
                    expires,
                    description,
                },
                json,
            ),
            TokenCommand::List { json, dir } => identities::token_list(&dir.data_dir, json),
            TokenCommand::Revoke { prefix, json, dir } => {
                identities::token_revoke(&dir.data_dir, &prefix, json)
            }
        },
        Command::Peer { command } => match command {
            PeerCommand::Add {
                fingerprint,
                id,
                scopes,
                json,
                dir,
            } => identities::PeerName::read(&fingerprint)
                .and_then(|peer| identities::peer_add(&dir.data_dir, &peer, &id, &scopes, json)),
            PeerCommand::List { json, dir } => identities::peer_list(&dir.data_dir, json),
            PeerCommand::Remove {
                fingerprint,
                json,
                dir,
            } => identities::PeerName::read(&fingerprint)
                .and_then(|peer| identities::peer_remove(&dir.data_dir, &peer, json)),
        },
        Command::Git { command } => git_cmd::run(command),
        Command::Dns { command } => dns_cmd::run(command),
        Command::Resolve(args) => resolve_cmd::run(args),
        Command::Admin { command } => match command {
            AdminCommand::Tree { connect, json } => admin::tree(admin::TreeArgs { connect, json }),
        },
        Command::Vault { command } => run_vault(command),
        Command::Import {
            command:
                ImportCommand::Check {
                    data_dir,
                    config,
                    json,
                },
        } => {
            // Its help promises status 1 for any problem it finds.
            return imports::check(&data_dir, config.as_deref(), json).unwrap_or_else(|error| {
                eprintln!("error: {}", error_text(&error));
                ExitCode::FAILURE
            });
        }
        Command::Proxy(args) => ssh_client::proxy::run(args),
        Command::SshConfig(args) => ssh_client::ssh_config::run(args),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "alknet", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man_page(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", error_text(&error));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once. A context often quotes its
/// cause already (`cannot listen on …: Address already in use`), and `{:#}`
/// would repeat the cause's text after it.
pub(crate) fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() && part.contains(&text) {
            text = part;
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn man_page() -> anyhow::Result<ExitCode> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut roff)
        .context("cannot render the manual page")?;
    output::write(&String::from_utf8_lossy(&roff))?;
    Ok(ExitCode::SUCCESS)
}

fn run_vault(command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {
        VaultCommand::Derive {
            path,
            public,
            key_type,
            json,
            vault,
        } => {
            let (dir, source) = vault.split();
            vault_cmd::derive(&dir, &source, &path, key_type, public, json)
        }
        VaultCommand::Encrypt {
            key_version,
            raw,
            vault,
        } => {
            let (dir, source) = vault.split();
            vault_cmd::encrypt(&dir, &source, key_version, raw)
        }
        VaultCommand::Decrypt { raw, json, vault } => {
            let (dir, source) = vault.split();
            vault_cmd::decrypt(&dir, &source, raw, json)
        }
        VaultCommand::Rotate { to, vault } => {
            let (dir, source) = vault.split();
            vault_cmd::rotate(&dir, &source, to)
        }
        VaultCommand::Seal {
            new_passphrase_file,
            json,
            vault,
        } => {
            let (dir, source) = vault.split();
            vault_cmd::seal(&dir, &source, new_passphrase_file.as_deref(), json)
        }
        VaultCommand::Unseal { json, vault } => {
            let (dir, source) = vault.split();
            vault_cmd::unseal(&dir, &source, json)
        }
        VaultCommand::ShowMnemonic { json, vault } => {
            let (dir, source) = vault.split();
            vault_cmd::show_mnemonic(&dir, &source, json)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_quoted_by_its_context_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let error = anyhow::Error::new(io)
            .context("cannot listen on 127.0.0.1:4433: address in use")
            .context("cannot start the node");
        assert_eq!(
            error_text(&error),
            "cannot start the node: cannot listen on 127.0.0.1:4433: address in use"
        );
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

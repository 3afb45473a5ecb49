//! `alknet`: the node's command-line interface.

mod admin;
mod call;
mod connect;
mod data_dir;
mod identities;
mod serve;
mod upstreams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use alknet_core::Fingerprint;
use clap::{Args, Parser, Subcommand};

use crate::connect::ConnectArgs;

/// alknet: one port, many protocols, routed by ALPN.
#[derive(Debug, Parser)]
#[command(name = "alknet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data directory: node key, certificates and a commented alknet.toml.
    Init {
        /// The directory to create.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Run the node (initialising the data directory first if it is missing).
    Serve {
        /// The data directory.
        #[arg(long, default_value = data_dir::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Listen address for QUIC (UDP) and TLS (TCP); overrides `listen` in the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Configuration file [default: DATA_DIR/alknet.toml when present].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Call one operation on a node and print its output as JSON
    /// (a subscription prints one line per item).
    Call {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The operation, e.g. `services/list`.
        operation: String,
        /// The input as JSON [default: {}].
        input: Option<String>,
    },
    /// Manage API keys (bearer tokens) in the data directory; a running node
    /// sees changes at once.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage peers: client-certificate fingerprints mapped to identities.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// Inspect a running node (needs the `admin` scope).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Map a client-certificate fingerprint to an identity (replacing any
    /// existing entry for it).
    Add {
        /// `ed25519:<hex public key>` or `SHA256:<hex of the certificate DER>`.
        fingerprint: Fingerprint,
        /// The identity id.
        #[arg(long)]
        id: String,
        /// Scopes granted, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
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
        /// The peer's fingerprint.
        fingerprint: Fingerprint,
        #[command(flatten)]
        dir: DataDirArg,
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
        Command::Init { data_dir } => data_dir::init(&data_dir).map(|created| {
            created.print();
            ExitCode::SUCCESS
        }),
        Command::Serve {
            data_dir,
            listen,
            config,
        } => serve::run(serve::ServeArgs {
            data_dir,
            listen,
            config,
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
                dir,
            } => identities::token_create(
                &dir.data_dir,
                identities::CreateArgs {
                    scopes,
                    id,
                    expires,
                    description,
                },
            ),
            TokenCommand::List { json, dir } => identities::token_list(&dir.data_dir, json),
            TokenCommand::Revoke { prefix, dir } => {
                identities::token_revoke(&dir.data_dir, &prefix)
            }
        },
        Command::Peer { command } => match command {
            PeerCommand::Add {
                fingerprint,
                id,
                scopes,
                dir,
            } => identities::peer_add(&dir.data_dir, &fingerprint, &id, &scopes),
            PeerCommand::List { json, dir } => identities::peer_list(&dir.data_dir, json),
            PeerCommand::Remove { fingerprint, dir } => {
                identities::peer_remove(&dir.data_dir, &fingerprint)
            }
        },
        Command::Admin { command } => match command {
            AdminCommand::Tree { connect, json } => admin::tree(admin::TreeArgs { connect, json }),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

//! `alknet git create|list|delete`: manage hosted repositories, in a data
//! directory (no node needed; a running node sees the change at its next
//! request) or on a running node with `--connect` (the `git/*` operations).

use std::path::PathBuf;
use std::process::ExitCode;

use alknet_git::{Git, GitSection, RepoName, Repositories};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::connect::{self, ConnectArgs};
use crate::data_dir::DataDir;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum GitCommand {
    /// Create an empty bare repository (`team/app`; `.git` optional).
    Create {
        /// The repository name.
        name: String,
        /// The branch HEAD names [default: main].
        #[arg(long)]
        default_branch: Option<String>,
        #[command(flatten)]
        place: Place,
    },
    /// List the repositories (with --connect: those the token may read).
    List {
        /// Print JSON instead of one name per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Delete a repository and everything in it (with --connect: needs admin).
    Delete {
        /// The repository name.
        name: String,
        #[command(flatten)]
        place: Place,
    },
}

/// Where the repositories are: a data directory, or a node to call.
#[derive(Debug, Args)]
pub struct Place {
    /// The data directory (ignored with --connect).
    #[arg(long, default_value = crate::data_dir::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn run(command: GitCommand) -> anyhow::Result<ExitCode> {
    let (operation, input, place, json_out) = match command {
        GitCommand::Create {
            name,
            default_branch,
            place,
        } => {
            let mut input = json!({ "name": name });
            if let Some(branch) = default_branch {
                input["default_branch"] = json!(branch);
            }
            ("git/create", input, place, false)
        }
        GitCommand::List { json, place } => ("git/list", json!({}), place, json),
        GitCommand::Delete { name, place } => ("git/delete", json!({ "name": name }), place, false),
    };
    let output = if place.connect.connect.is_some() {
        match connect::call_reporting(&place.connect, operation, input)? {
            Some(output) => output,
            None => return Ok(ExitCode::FAILURE),
        }
    } else {
        local(&place.data_dir, operation, &input)?
    };
    print(operation, &output, json_out)?;
    Ok(ExitCode::SUCCESS)
}

/// Does the same in the data directory, with the node's `[git]` settings.
fn local(data_dir: &std::path::Path, operation: &str, input: &Value) -> anyhow::Result<Value> {
    let dir = DataDir::new(data_dir);
    if !dir.is_initialised() {
        anyhow::bail!(
            "{} is not an alknet data directory (pass --data-dir, or --connect for a running node)",
            data_dir.display()
        );
    }
    let config_path = Some(dir.config()).filter(|p| p.exists());
    let config = crate::sections::load(config_path.as_deref())?;
    let section: &GitSection = config.section();
    let repos = Repositories::open_existing(&Git::root_of(section, dir.root()))?;
    let name = || RepoName::parse(input["name"].as_str().unwrap_or_default());
    Ok(match operation {
        "git/create" => {
            let name = name()?;
            let path = repos.create(&name, input["default_branch"].as_str())?;
            json!({ "name": name.to_string(), "path": path })
        }
        "git/delete" => {
            let name = name()?;
            repos.delete(&name)?;
            json!({ "deleted": name.to_string() })
        }
        _ => {
            let names: Vec<Value> = repos
                .list()?
                .into_iter()
                .map(|name| json!({ "name": name.to_string(), "public": section.is_public(&name) }))
                .collect();
            json!({ "repositories": names })
        }
    })
}

fn print(operation: &str, output: &Value, json_out: bool) -> anyhow::Result<()> {
    let text = |key: &str| output[key].as_str().unwrap_or("?").to_owned();
    let lines = match operation {
        "git/create" => match output["path"].as_str() {
            Some(path) => vec![format!("created {} ({path})", text("name"))],
            None => vec![format!("created {}", text("name"))],
        },
        "git/delete" => vec![format!("deleted {}", text("deleted"))],
        _ if json_out => vec![serde_json::to_string_pretty(output)?],
        _ => output["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|repo| repo["name"].as_str().unwrap_or("?").to_owned())
            .collect(),
    };
    for line in lines {
        output::line(&line)?;
    }
    Ok(())
}

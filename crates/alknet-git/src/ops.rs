//! The call operations `git/*`: manage and read repositories, and follow
//! pushes.
//!
//! Access is decided per repository, by the same scopes as the
//! transports: creating needs `git:write:<name>` (so `git:write:team/*`
//! may create under `team/`), reading refs and descriptions needs read
//! access, deleting needs `admin`. `git/list` and `git/events` show only
//! what the caller may read.

use std::sync::Arc;

use alknet_call::CallError;
use alknet_call::access::AccessControl;
use alknet_call::operation::ErrorSchema;
use alknet_call::registry::{Context, OperationDef, RegistrationError, Registry};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::Git;
use crate::access::Grant;
use crate::name::RepoName;
use crate::repos::RepoError;

/// The domain error of `git/create` for a name that is taken.
pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";

fn name_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 210}},
        "required": ["name"],
        "additionalProperties": false
    })
}

fn parse_name(input: &Value) -> Result<RepoName, CallError> {
    RepoName::parse(input["name"].as_str().unwrap_or_default())
        .map_err(|error| CallError::invalid_input(error.to_string()))
}

/// Checks that the caller holds `needed` on `name`; one answer for "no
/// such repository" and "not yours to see".
fn require(git: &Git, cx: &Context, name: &RepoName, needed: Grant) -> Result<(), CallError> {
    if git.grant(cx.identity.as_deref(), name) >= needed {
        return Ok(());
    }
    Err(match (cx.identity.as_deref(), needed) {
        (Some(_), Grant::Write) => CallError::forbidden(format!(
            "creating or changing {name} needs the scope git:write:{name}"
        )),
        (None, _) => CallError::forbidden(format!(
            "repository {name} needs a token with the scope git:read:{name}"
        )),
        (Some(_), _) => CallError::not_found(format!("repository {name} not found")),
    })
}

fn repo_error(error: RepoError) -> CallError {
    match error {
        RepoError::NotFound(name) => CallError::not_found(format!("repository {name} not found")),
        RepoError::AlreadyExists(name) => CallError::domain(
            ALREADY_EXISTS,
            format!("repository {name} already exists"),
            false,
        ),
        RepoError::InvalidName(error) => CallError::invalid_input(error.to_string()),
        RepoError::InvalidBranch(_) => CallError::invalid_input(error.to_string()),
        RepoError::Io(_) | RepoError::Read { .. } => {
            tracing::warn!("git operation failed: {error}");
            CallError::internal(error.to_string())
        }
    }
}

/// Runs blocking repository work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, CallError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| CallError::internal("repository task failed"))?
        .map_err(repo_error)
}

/// Registers `git/create`, `git/list`, `git/delete`, `git/refs`,
/// `git/describe` and the subscription `git/events`.
pub fn register(registry: &Registry, git: &Git) -> Result<(), RegistrationError> {
    let defs = vec![
        create(git.clone()),
        list(git.clone()),
        delete(git.clone()),
        refs(git.clone()),
        describe(git.clone()),
        events(git.clone()),
    ];
    registry.register_all(defs)
}

fn create(git: Git) -> OperationDef {
    OperationDef::mutation("git/create")
        .description("Create an empty bare repository (`team/app`); needs git:write:<name>")
        .input_schema(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 210},
                "default_branch": {"type": "string", "minLength": 1, "maxLength": 200}
            },
            "required": ["name"],
            "additionalProperties": false
        }))
        .error(ErrorSchema {
            code: ALREADY_EXISTS.to_owned(),
            description: "A repository of that name exists".to_owned(),
            schema: json!({}),
            http_status: Some(409),
        })
        .unary(move |cx, input| {
            let git = git.clone();
            async move {
                let name = parse_name(&input)?;
                require(&git, &cx, &name, Grant::Write)?;
                let branch = input["default_branch"].as_str().map(str::to_owned);
                let repos = git.repositories().clone();
                let created = name.clone();
                blocking(move || repos.create(&created, branch.as_deref())).await?;
                tracing::info!(repo = %name, identity = cx.identity.as_ref().map(|i| i.id.as_str()).unwrap_or("anonymous"), "git repository created");
                Ok(json!({"name": name.to_string()}))
            }
        })
}

fn list(git: Git) -> OperationDef {
    OperationDef::query("git/list")
        .description("The repositories the caller may read")
        .input_schema(json!({"type": "object", "additionalProperties": false}))
        .unary(move |cx, _| {
            let git = git.clone();
            async move {
                let repos = git.repositories().clone();
                let names = blocking(move || Ok(repos.list()?)).await?;
                let visible: Vec<Value> = names
                    .into_iter()
                    .filter_map(|name| {
                        let grant = git.grant(cx.identity.as_deref(), &name);
                        (grant >= Grant::Read).then(|| {
                            json!({
                                "name": name.to_string(),
                                "public": git.is_public(&name),
                                "writable": grant == Grant::Write,
                            })
                        })
                    })
                    .collect();
                Ok(json!({"repositories": visible}))
            }
        })
}

fn delete(git: Git) -> OperationDef {
    OperationDef::mutation("git/delete")
        .description("Delete a repository and everything in it")
        .input_schema(name_schema())
        .access(AccessControl::scopes(["admin"]))
        .unary(move |cx, input| {
            let git = git.clone();
            async move {
                let name = parse_name(&input)?;
                let repos = git.repositories().clone();
                let deleted = name.clone();
                blocking(move || repos.delete(&deleted)).await?;
                tracing::info!(repo = %name, identity = cx.identity.as_ref().map(|i| i.id.as_str()).unwrap_or("anonymous"), "git repository deleted");
                Ok(json!({"deleted": name.to_string()}))
            }
        })
}

fn refs(git: Git) -> OperationDef {
    read_query(
        "git/refs",
        "A repository's references and the objects they name, as `git ls-remote` lists them",
        git,
        |git, name| {
            let refs = git.repositories().refs(name)?;
            Ok(serde_json::to_value(refs).map_err(std::io::Error::other)?)
        },
    )
}

fn describe(git: Git) -> OperationDef {
    read_query(
        "git/describe",
        "A repository's default branch, size on disk and last push",
        git,
        |git, name| {
            let described = git.repositories().describe(name)?;
            let mut value = serde_json::to_value(described).map_err(std::io::Error::other)?;
            value["public"] = json!(git.is_public(name));
            Ok(value)
        },
    )
}

/// A query about one repository, for callers who may read it; `read` runs
/// on the blocking pool.
fn read_query(
    operation: &str,
    description: &str,
    git: Git,
    read: fn(&Git, &RepoName) -> Result<Value, RepoError>,
) -> OperationDef {
    OperationDef::query(operation)
        .description(description)
        .input_schema(name_schema())
        .unary(move |cx, input| {
            let git = git.clone();
            async move {
                let name = parse_name(&input)?;
                require(&git, &cx, &name, Grant::Read)?;
                blocking(move || read(&git, &name)).await
            }
        })
}

fn events(git: Git) -> OperationDef {
    OperationDef::subscription("git/events")
        .description(
            "One item per reference an accepted push changed (repo, ref, old, new, identity), \
             for the repositories the caller may read; `repo` narrows it to names matching a pattern",
        )
        .input_schema(json!({
            "type": "object",
            "properties": {"repo": {"type": "string", "minLength": 1, "maxLength": 210}},
            "additionalProperties": false
        }))
        .stream(move |cx, input| {
            let git = git.clone();
            let pattern = input["repo"].as_str().map(|p| {
                let p = p.trim_matches('/');
                p.strip_suffix(".git").unwrap_or(p).to_owned()
            });
            let identity: Option<Arc<alknet_core::Identity>> = cx.identity.clone();
            BroadcastStream::new(git.events().subscribe()).filter_map(move |item| {
                let visible = match item {
                    Ok(event) => {
                        let readable = RepoName::parse(&event.repo).is_ok_and(|name| {
                            git.grant(identity.as_deref(), &name) >= Grant::Read
                        });
                        let wanted = pattern
                            .as_deref()
                            .is_none_or(|p| alknet_core::pattern::matches(p, &event.repo));
                        (readable && wanted).then(|| {
                            serde_json::to_value(event).map_err(|e| CallError::internal(e.to_string()))
                        })
                    }
                    Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Ok(json!({
                        "missed": missed
                    }))),
                };
                std::future::ready(visible)
            })
        })
}

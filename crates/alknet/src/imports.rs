//! `[import]`: HTTP APIs and MCP servers as operations (docs/protocol.md §14.2),
//! and `alknet import check`.
//!
//! OpenAPI and JSON-schema imports are resolved before the node listens: a
//! document that does not import, or a name that collides, stops the start
//! with an error naming the import — the same error `alknet import check`
//! prints without starting anything. MCP imports need the remote server up,
//! and a node must not depend on another server to start, so they run in the
//! background like `[[upstreams]]`: retried with backoff while the server is
//! unreachable, logged once and left out when the configuration is wrong
//! (refused credential, colliding name).
//!
//! Credentials reach operations only as capabilities (the namespace, or `mcp`
//! for MCP imports), from `credentials.toml` through [`Credentials::grant`]
//! or from a `credential_file`; never from the environment.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alknet_adapters::forward::Auth;
use alknet_adapters::from_mcp::{self, McpImport};
use alknet_adapters::openapi::{self, HttpImport};
use alknet_adapters::outbound::{Outbound, OutboundSettings};
use alknet_call::registry::{OperationSpec, Visibility};
use alknet_call::{OperationDef, Registry};
use anyhow::{Context, bail};

use crate::credentials::Credentials;
use crate::data_dir::DataDir;
use crate::sections::imports::{AuthScheme, ImportAuth, ImportClient, Imports};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// The largest credential file read.
const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// The largest OpenSpec file read for `from_jsonschema`.
const MAX_SPEC_FILE: u64 = 1024 * 1024;

/// Where credentials come from: decrypted at `serve`, only checked for
/// presence by `import check`.
pub enum CredentialSource<'a> {
    /// The decrypted credentials.
    Decrypted(&'a Credentials),
    /// Only the names in `credentials.toml` (nothing decrypted).
    NamesOnly(Vec<String>),
}

impl CredentialSource<'_> {
    /// The credential's value (empty for `NamesOnly`), or an error naming
    /// what is missing — never a value.
    fn value(&self, dir: &DataDir, auth: &ImportAuth) -> anyhow::Result<Option<String>> {
        match (&auth.credential, &auth.credential_file) {
            (Some(name), _) => match self {
                Self::Decrypted(credentials) => credentials
                    .get(name)
                    .map(|secret| Some(secret.expose().to_owned()))
                    .with_context(|| {
                        format!(
                            "no credential `{name}` in {}",
                            crate::credentials::CREDENTIALS_FILE
                        )
                    }),
                Self::NamesOnly(names) => {
                    if names.iter().any(|n| n == name) {
                        Ok(Some(String::new()))
                    } else {
                        bail!(
                            "no credential `{name}` in {}",
                            crate::credentials::CREDENTIALS_FILE
                        )
                    }
                }
            },
            (None, Some(file)) => {
                let path = dir.root().join(file);
                let size = std::fs::metadata(&path)
                    .with_context(|| format!("cannot read credential file {}", path.display()))?
                    .len();
                if size > MAX_CREDENTIAL_FILE {
                    bail!(
                        "credential file {} is larger than {MAX_CREDENTIAL_FILE} bytes",
                        path.display()
                    );
                }
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read credential file {}", path.display()))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Ok(Some(text.to_owned()))
            }
            (None, None) => Ok(None),
        }
    }

    /// `def` with the credential as capability `key` (unchanged without one).
    fn grant(
        &self,
        dir: &DataDir,
        def: OperationDef,
        key: &str,
        auth: &ImportAuth,
    ) -> anyhow::Result<OperationDef> {
        match (&auth.credential, self) {
            (Some(name), Self::Decrypted(credentials)) => credentials.grant(def, key, name),
            _ => Ok(match self.value(dir, auth)? {
                Some(value) => def.capability(key, value),
                None => def,
            }),
        }
    }
}

fn auth_of(auth: &ImportAuth) -> Auth {
    match auth.auth {
        AuthScheme::None => Auth::None,
        AuthScheme::Bearer => Auth::Bearer,
        AuthScheme::Basic => Auth::Basic,
        AuthScheme::ApiKey => Auth::ApiKey {
            header: auth.auth_header.clone().unwrap_or_default(),
        },
    }
}

fn visibility(external: bool) -> Visibility {
    if external {
        Visibility::External
    } else {
        Visibility::Internal
    }
}

/// The outbound client's settings from `[import.client]`; paths are
/// relative to the data directory.
pub fn outbound_settings(client: &ImportClient, dir: &DataDir) -> anyhow::Result<OutboundSettings> {
    let mut settings = OutboundSettings {
        timeout: client.timeout,
        connect_timeout: client.connect_timeout,
        retries: client.retries,
        backoff: client.backoff,
        ..OutboundSettings::default()
    };
    if let Some(bundle) = &client.ca_bundle {
        settings
            .load_ca_bundle(&dir.root().join(bundle))
            .context("import.client.ca_bundle")?;
    }
    if let (Some(cert), Some(key)) = (&client.client_cert, &client.client_key) {
        settings
            .load_client_identity(&dir.root().join(cert), &dir.root().join(key))
            .context("import.client.client_cert")?;
    }
    Ok(settings)
}

/// One import resolved to operations, not yet registered.
pub struct Resolved {
    /// `import.openapi[0] (pets)`, for messages.
    pub label: String,
    /// The operations.
    pub defs: Vec<OperationDef>,
}

/// Resolves every OpenAPI and JSON-schema import.
pub async fn resolve_http(
    imports: &Imports,
    dir: &DataDir,
    credentials: &CredentialSource<'_>,
    outbound: &Arc<Outbound>,
) -> anyhow::Result<Vec<Resolved>> {
    let mut resolved = Vec::new();
    for (index, import) in imports.openapi.iter().enumerate() {
        let label = format!("import.openapi[{index}] ({})", import.namespace);
        let auth = import.auth();
        let work = async {
            let document = read_source(&import.source, dir, outbound, import.insecure).await?;
            let http = HttpImport {
                namespace: import.namespace.clone(),
                base_url: import.base_url.clone(),
                auth: auth_of(&auth),
                visibility: visibility(import.external),
                insecure: import.insecure,
            };
            let defs = openapi::from_openapi(&document, &http, outbound.clone())?;
            defs.into_iter()
                .map(|def| credentials.grant(dir, def, &import.namespace, &auth))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let defs = work.await.with_context(|| label.clone())?;
        resolved.push(Resolved { label, defs });
    }
    for (index, import) in imports.jsonschema.iter().enumerate() {
        let label = format!("import.jsonschema[{index}] ({})", import.namespace);
        let auth = import.auth();
        let work = || -> anyhow::Result<Vec<OperationDef>> {
            let path = dir.root().join(&import.spec);
            let spec = read_limited_file(&path, MAX_SPEC_FILE)?;
            let spec: OperationSpec = serde_json::from_slice(&spec)
                .with_context(|| format!("{} is not an OperationSpec", path.display()))?;
            let http = HttpImport {
                namespace: import.namespace.clone(),
                base_url: Some(import.base_url.clone()),
                auth: auth_of(&auth),
                visibility: visibility(import.external),
                insecure: import.insecure,
            };
            let def = openapi::from_jsonschema(
                spec,
                &import.method,
                &import.path,
                &http,
                outbound.clone(),
            )?;
            Ok(vec![credentials.grant(
                dir,
                def,
                &import.namespace,
                &auth,
            )?])
        };
        let defs = work().with_context(|| label.clone())?;
        resolved.push(Resolved { label, defs });
    }
    Ok(resolved)
}

fn read_limited_file(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// An OpenAPI document from a file (relative to the data directory) or an
/// `http(s)://` URL fetched with the outbound client.
async fn read_source(
    source: &str,
    dir: &DataDir,
    outbound: &Outbound,
    insecure: bool,
) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let response = outbound
            .client(insecure)
            .get(source)
            .send()
            .await
            .with_context(|| format!("cannot fetch {source}"))?;
        if !response.status().is_success() {
            bail!("fetching {source}: HTTP {}", response.status());
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading {source}"))?;
            if body.len() + chunk.len() > openapi::MAX_DOCUMENT {
                bail!(
                    "{source}: document larger than {} bytes",
                    openapi::MAX_DOCUMENT
                );
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    } else {
        read_limited_file(&dir.root().join(source), openapi::MAX_DOCUMENT as u64)
    }
}

/// Registers resolved imports, each all or none; a collision is an error
/// naming the import.
pub fn register(registry: &Registry, resolved: Vec<Resolved>) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for Resolved { label, defs } in resolved {
        let these: Vec<String> = defs.iter().map(|d| d.spec().name.clone()).collect();
        registry
            .register_all(defs)
            .with_context(|| format!("{label}: cannot register its operations"))?;
        names.extend(these);
    }
    Ok(names)
}

/// Replaces the operations of the HTTP imports, `current` (as [`register`]
/// or this returned them), with `resolved`, in one step
/// ([`Registry::replace`]); returns the new names. Refused as a whole (the
/// old set keeps serving) when a new name collides.
pub fn replace(
    registry: &Registry,
    current: &[String],
    resolved: Vec<Resolved>,
) -> anyhow::Result<Vec<String>> {
    let labels: Vec<String> = resolved.iter().map(|r| r.label.clone()).collect();
    let defs: Vec<OperationDef> = resolved.into_iter().flat_map(|r| r.defs).collect();
    let names: Vec<String> = defs.iter().map(|d| d.spec().name.clone()).collect();
    registry
        .replace(current, defs)
        .with_context(|| format!("cannot register the operations of {}", labels.join(", ")))?;
    Ok(names)
}

/// One MCP import to run in the background.
pub struct McpJob {
    import: McpImport,
    credential: Option<String>,
    credential_name: Option<String>,
    label: String,
    auth: ImportAuth,
}

/// The MCP imports, with their credentials read now (a missing credential
/// stops the start).
pub fn mcp_jobs(
    imports: &Imports,
    dir: &DataDir,
    credentials: &CredentialSource<'_>,
) -> anyhow::Result<Vec<McpJob>> {
    imports
        .mcp
        .iter()
        .enumerate()
        .map(|(index, import)| {
            let label = format!("import.mcp[{index}] ({})", import.namespace);
            let auth = import.auth();
            let credential = credentials
                .value(dir, &auth)
                .with_context(|| label.clone())?;
            Ok(McpJob {
                import: McpImport {
                    namespace: import.namespace.clone(),
                    url: import.url.clone(),
                    auth: auth_of(&auth),
                    visibility: visibility(import.external),
                    insecure: import.insecure,
                },
                credential,
                credential_name: auth.credential.clone(),
                label,
                auth,
            })
        })
        .collect()
}

/// Imports one MCP server, retrying with backoff while it is unreachable.
pub async fn import_mcp(registry: Arc<Registry>, outbound: Arc<Outbound>, job: McpJob) {
    let mut delay = FIRST_RETRY;
    loop {
        match from_mcp::from_mcp(&job.import, job.credential.as_deref(), outbound.clone()).await {
            Ok(defs) => {
                let defs: Vec<OperationDef> = defs
                    .into_iter()
                    .map(|def| match &job.credential {
                        Some(value) => def.capability(from_mcp::CAPABILITY, value.clone()),
                        None => def,
                    })
                    .collect();
                let names: Vec<String> = defs.iter().map(|d| d.spec().name.clone()).collect();
                match registry.register_all(defs) {
                    Ok(()) => {
                        tracing::info!(import = %job.label, operations = ?names, "imported MCP tools");
                    }
                    Err(error) => tracing::error!(
                        import = %job.label,
                        "{error}; this MCP server is not imported"
                    ),
                }
                return;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(import = %job.label, "{error}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LAST_RETRY);
            }
            Err(error) => {
                tracing::error!(import = %job.label, "{error}; this MCP server is not imported");
                return;
            }
        }
    }
}

impl McpJob {
    /// Where the credential comes from, for `import check`.
    fn describe_credential(&self) -> String {
        match (&self.credential_name, &self.auth.credential_file) {
            (Some(name), _) => format!("credential `{name}`"),
            (None, Some(file)) => format!("credential file {}", file.display()),
            (None, None) => "no credential".to_owned(),
        }
    }
}

/// `alknet import check`: validates the configuration's imports without
/// starting the node; prints one line per import.
pub fn check(
    data_dir: &Path,
    config: Option<&Path>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if !data_dir.is_dir() {
        // Credentials and credential files are looked up there: without it
        // the check would pass imports that cannot start.
        bail!(
            "no data directory at {} (create it with `alknet init`, or pass --data-dir)",
            data_dir.display()
        );
    }
    let dir = DataDir::new(data_dir);
    // It reads credentials.toml and may read client keys: refused where
    // `serve` would refuse, so a check never passes a node that cannot start.
    dir.check_permissions()?;
    let config_path = config
        .map(Path::to_owned)
        .or_else(|| Some(dir.config()).filter(|p| p.exists()));
    let config = crate::sections::load(config_path.as_deref())?;
    let imports: &Imports = config.section();
    let names = crate::credentials::names_in_file(&dir)?;
    let credentials = CredentialSource::NamesOnly(names);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let outbound = Arc::new(Outbound::new(outbound_settings(&imports.client, &dir)?)?);
        let resolved = resolve_http(imports, &dir, &credentials, &outbound).await?;
        // A scratch registry: schemas compile and names do not collide.
        let registry = Registry::new();
        alknet_call::builtins::register_discovery(&registry)?;
        let mut checked = Vec::new();
        for item in resolved {
            let count = item.defs.len();
            let visibility = item
                .defs
                .first()
                .map(|d| format!("{:?}", d.spec().visibility).to_lowercase())
                .unwrap_or_default();
            let label = item.label.clone();
            register(&registry, vec![item])?;
            if !json {
                println!("{label}: ok, {count} operations ({visibility})");
            }
            checked.push(serde_json::json!({
                "import": label, "operations": count, "visibility": visibility,
            }));
        }
        for job in mcp_jobs(imports, &dir, &credentials)? {
            if !json {
                println!(
                    "{}: ok, {} with {} (tools are listed when the node starts)",
                    job.label,
                    job.import.url,
                    job.describe_credential()
                );
            }
            checked.push(serde_json::json!({
                "import": job.label, "url": job.import.url.clone(),
                "credential": job.describe_credential(),
            }));
        }
        let total = imports.openapi.len() + imports.jsonschema.len() + imports.mcp.len();
        if json {
            let printed = serde_json::json!({ "imports": checked, "checked": total });
            crate::output::line(&serde_json::to_string_pretty(&printed)?)?;
        } else {
            println!("{total} imports checked");
        }
        Ok(std::process::ExitCode::SUCCESS)
    })
}

//! Hosted git repositories that stock `git` clones, fetches and pushes.
//!
//! Three transports reach the same [`Git`] service with one authorization
//! model ([`access`]):
//! - smart HTTP under `/git/<name>.git/` on the node's HTTP handler
//!   ([`http`]), protocol v0 and v2, token as Bearer or as Basic password;
//! - the SSH commands `git-upload-pack '<name>.git'` and
//!   `git-receive-pack '<name>.git'` (the node's SSH handler hands them to
//!   [`Git`] without a shell);
//! - the ALPN `alknet/git` ([`GitHandler`]): the git-daemon request line on
//!   a QUIC or TLS stream, for `git clone "ext::alknet proxy …"`.
//!
//! gix creates, lists, deletes and reads repositories ([`repos`]); it has
//! no server side, so the system `git upload-pack` / `git receive-pack`
//! negotiate packs ([`pack`]), one supervised process per request, started
//! only once the request is authorized. Accepted pushes become events
//! ([`events`]); the call operations `git/*` are in [`ops`].
#![warn(missing_docs)]

pub mod access;
mod child;
pub mod config;
mod daemon;
pub mod events;
pub mod http;
pub mod name;
pub mod ops;
pub mod pack;
pub mod repos;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;

use alknet_core::{ConnectionInfo, Identity};
use tokio::sync::Semaphore;

pub use access::{Access, Grant};
pub use config::GitSection;
pub use daemon::GitHandler;
pub use events::{PushEvent, PushEvents};
pub use name::{InvalidName, RepoName};
pub use pack::{Mode, Running, Service};
pub use repos::{RepoError, Repositories};

/// The ALPN that carries the git-daemon protocol.
pub const ALPN: &str = "alknet/git";

/// The git service: repositories, who may use them, and the packs running.
#[derive(Clone)]
pub struct Git {
    inner: Arc<Inner>,
}

struct Inner {
    repos: Repositories,
    section: GitSection,
    hooks: PathBuf,
    permits: Arc<Semaphore>,
    events: PushEvents,
}

impl std::fmt::Debug for Git {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Git")
            .field("root", &self.inner.repos.root())
            .finish_non_exhaustive()
    }
}

/// Why a request for a pack was refused, in words `git` prints.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The repository is not public and the client has no identity.
    #[error("repository {0} needs a token (or a key) with the scope git:read:{0}")]
    NeedsIdentity(String),
    /// No such repository, or the identity may not know of it.
    #[error("repository {0} not found, or no access to it")]
    NotFound(String),
    /// The identity may read but not push.
    #[error("{identity} may not push to {repo}: that needs the scope git:write:{repo}")]
    ReadOnly {
        /// Who tried.
        identity: String,
        /// Where.
        repo: String,
    },
    /// The name is not a repository name.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// `git.max_concurrent` packs run already.
    #[error("the node is serving {0} clones and pushes already (git.max_concurrent); try again")]
    Busy(usize),
    /// The process could not start.
    #[error("cannot start git: {0}")]
    Failed(io::Error),
}

/// A request that may proceed: which repository, which service, for whom.
#[derive(Clone, Debug)]
pub struct Authorized {
    /// The repository.
    pub repo: RepoName,
    /// Its directory.
    pub directory: PathBuf,
    /// The service.
    pub service: Service,
    /// Who asked (`None`: anonymous, reading a public repository).
    pub identity: Option<String>,
}

impl std::fmt::Display for Authorized {
    /// What the tree shows: `git-upload-pack team/app`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.service.name(), self.repo)
    }
}

impl Git {
    /// The service `section` describes; a relative or unset root is under
    /// `data_dir`. The root is created (mode 0700) if missing.
    pub fn new(section: &GitSection, data_dir: &Path) -> io::Result<Self> {
        let root = Self::root_of(section, data_dir);
        let repos = Repositories::open_or_create(&root)
            .map_err(|e| io::Error::new(e.kind(), format!("git.root {}: {e}", root.display())))?;
        let hooks = repos.scratch_path("hooks");
        std::fs::create_dir(&hooks)?;
        let hook = hooks.join("post-receive");
        std::fs::write(&hook, events::POST_RECEIVE_HOOK)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                repos,
                section: section.clone(),
                hooks,
                permits: Arc::new(Semaphore::new(section.max_concurrent)),
                events: PushEvents::default(),
            }),
        })
    }

    /// Where `section` puts the repositories.
    pub fn root_of(section: &GitSection, data_dir: &Path) -> PathBuf {
        match &section.root {
            Some(root) => data_dir.join(root),
            None => data_dir.join("git"),
        }
    }

    /// The repositories.
    pub fn repositories(&self) -> &Repositories {
        &self.inner.repos
    }

    /// Accepted pushes, as they happen.
    pub fn events(&self) -> &PushEvents {
        &self.inner.events
    }

    /// The largest pack a push may send (`git.max_push_size`).
    pub fn max_push_size(&self) -> u64 {
        self.inner.section.max_push_size
    }

    /// Whether the configuration makes `name` public.
    pub fn is_public(&self, name: &RepoName) -> bool {
        self.inner.section.is_public(name)
    }

    /// What `identity` may do to `repo`.
    pub fn grant(&self, identity: Option<&Identity>, repo: &RepoName) -> Grant {
        Access::of_optional(identity).grant(repo, self.is_public(repo))
    }

    /// Decides whether `identity` may run `service` on the repository the
    /// client named `repo` (`team/app.git`, `/team/app`). Nothing starts
    /// for a refused request.
    pub fn authorize(
        &self,
        identity: Option<&Identity>,
        repo: &str,
        service: Service,
    ) -> Result<Authorized, Refusal> {
        let name = RepoName::parse(repo)?;
        let grant = self.grant(identity, &name);
        let needed = match service {
            Service::UploadPack => Grant::Read,
            Service::ReceivePack => Grant::Write,
        };
        if grant < needed {
            return Err(match (identity, grant) {
                (None, _) => Refusal::NeedsIdentity(name.to_string()),
                (Some(identity), Grant::Read) => Refusal::ReadOnly {
                    identity: identity.id.clone(),
                    repo: name.to_string(),
                },
                (Some(_), _) => Refusal::NotFound(name.to_string()),
            });
        }
        let directory = self
            .inner
            .repos
            .directory(&name)
            .map_err(|_| Refusal::NotFound(name.to_string()))?;
        Ok(Authorized {
            repo: name,
            directory,
            service,
            identity: identity.map(|i| i.id.clone()),
        })
    }

    /// [`Git::authorize`] then [`Git::start`], for a transport with nothing
    /// to check in between; `info` (the tree entry carrying the request)
    /// shows what it serves.
    pub fn open(
        &self,
        info: &ConnectionInfo,
        repo: &str,
        service: Service,
        mode: Mode,
        protocol: Option<&str>,
    ) -> Result<Running, Refusal> {
        let authorized = self.authorize(info.identity().as_ref(), repo, service)?;
        info.set_detail(authorized.to_string());
        self.start(authorized, mode, protocol)
    }

    /// Starts the process for an authorized request, if fewer than
    /// `git.max_concurrent` run. `protocol` is the client's `GIT_PROTOCOL`
    /// (`version=2`), passed on when git can take it.
    pub fn start(
        &self,
        request: Authorized,
        mode: Mode,
        protocol: Option<&str>,
    ) -> Result<Running, Refusal> {
        let permit = self
            .inner
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy(self.inner.section.max_concurrent))?;
        let push_log = (request.service == Service::ReceivePack)
            .then(|| self.inner.repos.scratch_path("push"));
        let (child, stdin, stdout, stderr) = pack::spawn(pack::Launch {
            program: self.inner.section.program.clone(),
            service: request.service,
            mode,
            directory: request.directory.clone(),
            protocol: protocol.and_then(pack::protocol_value),
            max_push_size: self.inner.section.max_push_size,
            hooks: self.inner.hooks.clone(),
            push_log: push_log.clone(),
        })
        .map_err(Refusal::Failed)?;
        tracing::info!(
            repo = %request.repo,
            service = request.service.name(),
            identity = request.identity.as_deref().unwrap_or("anonymous"),
            pid = child.id(),
            "git pack started"
        );
        Ok(Running {
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            _permit: permit,
            finish: Finish {
                git: self.clone(),
                request,
                push_log,
            },
        })
    }
}

/// What happens when a pack process has exited: the log line, and for a
/// push, its events.
pub(crate) struct Finish {
    git: Git,
    request: Authorized,
    push_log: Option<PathBuf>,
}

impl Finish {
    pub(crate) async fn done(self, status: Option<ExitStatus>, stderr: &[u8]) {
        let Self {
            git,
            request,
            push_log,
        } = self;
        let identity = request.identity.as_deref().unwrap_or("anonymous");
        let succeeded = status.is_some_and(|s| s.success());
        if succeeded {
            tracing::info!(repo = %request.repo, service = request.service.name(), identity, "git pack done");
        } else {
            tracing::info!(
                repo = %request.repo,
                service = request.service.name(),
                identity,
                status = ?status,
                stderr = %String::from_utf8_lossy(stderr).trim(),
                "git pack ended without success"
            );
        }
        let Some(log) = push_log else { return };
        // The hook ran only if git updated references; a failed push may
        // still have updated some (without --atomic).
        let repos = git.inner.repos.clone();
        let repo = request.repo.clone();
        let identity_id = request.identity.clone();
        // One trip to the blocking pool: read and remove the hook's list,
        // and record the push if it changed anything.
        let events = tokio::task::spawn_blocking(move || {
            let list = std::fs::read_to_string(&log).ok()?;
            let _ = std::fs::remove_file(&log);
            let at = now();
            let events = events::parse_updates(&list, &repo, identity_id.as_deref(), &at);
            if !events.is_empty() {
                let last = repos::LastPush {
                    at,
                    identity: identity_id,
                };
                if let Err(error) = repos.record_push(&repo, &last) {
                    tracing::warn!(repo = %repo, "cannot record the push: {error}");
                }
            }
            Some(events)
        })
        .await;
        let Ok(Some(events)) = events else {
            return;
        };
        for event in events {
            tracing::info!(repo = %event.repo, reference = %event.reference, old = %event.old, new = %event.new, identity, "git push accepted");
            git.inner.events.publish(event);
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

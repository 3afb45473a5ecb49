//! What an identity may do over SSH, from its scopes.
//!
//! - `ssh:shell`: an interactive shell (with or without a PTY) and any
//!   command, both run by the configured shell.
//! - `ssh:exec:<command>`: commands whose words begin with `<command>`'s
//!   words. They run without a shell, split as a POSIX shell would split
//!   them, so that `ssh:exec:uptime` cannot become `uptime; rm -rf ~`.
//! - `ssh:forward:<host>:<port>`: `ssh -L`, `ssh -D` and `direct-tcpip`
//!   channels to that target; `*` in either part matches anything. The host
//!   is matched as the client wrote it (a name is not resolved first).
//! - `ssh:listen:<port>`: `ssh -R` on that port (`*`: any, including a port
//!   the node picks).
//! - `admin`: everything.

use alknet_core::Identity;
use alknet_core::pattern::matches;

/// How an allowed `exec` request runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecGrant {
    /// Through the shell, as `shell -c command` (with `ssh:shell`).
    Shell,
    /// As this argument vector, without a shell (an `ssh:exec:` scope).
    Direct(Vec<String>),
}

/// Why a request was refused, as the client's stderr line says it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The SSH grants of one identity.
#[derive(Clone, Debug)]
pub struct Access {
    all: bool,
    shell: bool,
    exec: Vec<Vec<String>>,
    forward: Vec<(String, String)>,
    listen: Vec<String>,
}

impl Access {
    /// The grants in `identity`'s scopes.
    pub fn of(identity: &Identity) -> Self {
        let mut access = Self {
            all: false,
            shell: false,
            exec: Vec::new(),
            forward: Vec::new(),
            listen: Vec::new(),
        };
        for scope in &identity.scopes {
            if scope == "admin" {
                access.all = true;
            } else if scope == "ssh:shell" {
                access.shell = true;
            } else if let Some(prefix) = scope.strip_prefix("ssh:exec:") {
                if let Some(words) = shlex::split(prefix).filter(|w| !w.is_empty()) {
                    access.exec.push(words);
                }
            } else if let Some(target) = scope.strip_prefix("ssh:forward:") {
                if let Some((host, port)) = split_host_port(target) {
                    access
                        .forward
                        .push((host.to_ascii_lowercase(), port.to_owned()));
                }
            } else if let Some(port) = scope.strip_prefix("ssh:listen:") {
                access.listen.push(port.to_owned());
            }
        }
        access
    }

    /// Whether an interactive shell may start.
    pub fn shell(&self) -> Result<(), Refusal> {
        if self.all || self.shell {
            return Ok(());
        }
        Err(Refusal(
            "alknet: a shell needs the scope ssh:shell".to_owned(),
        ))
    }

    /// How `command` may run, if at all.
    pub fn exec(&self, command: &str) -> Result<ExecGrant, Refusal> {
        if self.all || self.shell {
            return Ok(ExecGrant::Shell);
        }
        let refusal = || {
            Refusal(
                "alknet: no scope allows this command (ssh:shell, or ssh:exec:<command> for its first words)"
                    .to_owned(),
            )
        };
        let words = shlex::split(command).ok_or_else(refusal)?;
        let allowed = self
            .exec
            .iter()
            .any(|prefix| !words.is_empty() && words.starts_with(prefix));
        if allowed {
            Ok(ExecGrant::Direct(words))
        } else {
            Err(refusal())
        }
    }

    /// Whether a `direct-tcpip` channel to `host:port` may open.
    pub fn forward(&self, host: &str, port: u32) -> Result<(), Refusal> {
        let host = host.to_ascii_lowercase();
        let port = port.to_string();
        let allowed = self.all
            || self
                .forward
                .iter()
                .any(|(h, p)| matches(h, &host) && matches(p, &port));
        if allowed {
            return Ok(());
        }
        Err(Refusal(format!(
            "forwarding to {host}:{port} needs the scope ssh:forward:{host}:{port}"
        )))
    }

    /// Whether `ssh -R` may listen on `port` (0: a port the node picks).
    pub fn listen(&self, port: u32) -> Result<(), Refusal> {
        let wanted = port.to_string();
        let allowed = self.all
            || self
                .listen
                .iter()
                .any(|p| p == "*" || (port != 0 && *p == wanted));
        if allowed {
            return Ok(());
        }
        Err(Refusal(format!(
            "listening on port {port} needs the scope ssh:listen:{}",
            if port == 0 { "*".to_owned() } else { wanted }
        )))
    }
}

/// `host:port`, `[v6]:port` or `*:*`.
fn split_host_port(target: &str) -> Option<(&str, &str)> {
    let (host, port) = target.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !port.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(scopes: &[&str]) -> Access {
        Access::of(&Identity::new("alice", scopes.iter().copied()))
    }

    #[test]
    fn nothing_is_allowed_without_scopes() {
        let none = access(&[]);
        assert!(none.shell().is_err());
        assert!(none.exec("true").is_err());
        assert!(none.forward("127.0.0.1", 80).is_err());
        assert!(none.listen(8080).is_err());
    }

    #[test]
    fn admin_and_shell_run_commands_through_the_shell() {
        assert_eq!(access(&["admin"]).exec("ls | wc"), Ok(ExecGrant::Shell));
        assert_eq!(access(&["ssh:shell"]).exec("ls | wc"), Ok(ExecGrant::Shell));
        assert!(access(&["ssh:shell"]).forward("x", 1).is_err());
        assert!(access(&["admin"]).listen(0).is_ok());
    }

    #[test]
    fn an_exec_scope_allows_its_words_and_never_a_shell() {
        let git = access(&["ssh:exec:git-upload-pack"]);
        assert_eq!(
            git.exec("git-upload-pack 'team/app.git'"),
            Ok(ExecGrant::Direct(vec![
                "git-upload-pack".into(),
                "team/app.git".into()
            ]))
        );
        // Metacharacters are arguments, not shell syntax.
        assert_eq!(
            git.exec("git-upload-pack x; rm -rf ~"),
            Ok(ExecGrant::Direct(vec![
                "git-upload-pack".into(),
                "x;".into(),
                "rm".into(),
                "-rf".into(),
                "~".into()
            ]))
        );
        assert!(git.exec("git-upload-packer").is_err());
        assert!(git.exec("git-receive-pack x").is_err());
        assert!(git.exec("'unterminated").is_err());
        assert!(git.shell().is_err());
    }

    #[test]
    fn forward_scopes_match_host_and_port_with_wildcards() {
        let web = access(&["ssh:forward:127.0.0.1:8080", "ssh:forward:*.internal:*"]);
        assert!(web.forward("127.0.0.1", 8080).is_ok());
        assert!(web.forward("127.0.0.1", 8081).is_err());
        assert!(web.forward("db.internal", 5432).is_ok());
        assert!(web.forward("DB.Internal", 5432).is_ok());
        assert!(web.forward("internal", 5432).is_err());
        assert!(web.forward("db.internal.evil", 5432).is_err());
        let v6 = access(&["ssh:forward:[::1]:*"]);
        assert!(v6.forward("::1", 22).is_ok());
        assert!(access(&["ssh:forward:*:*"]).forward("anything", 1).is_ok());
    }

    #[test]
    fn listen_scopes_name_ports_and_only_star_allows_a_picked_one() {
        let one = access(&["ssh:listen:9000"]);
        assert!(one.listen(9000).is_ok());
        assert!(one.listen(9001).is_err());
        assert!(one.listen(0).is_err());
        assert!(access(&["ssh:listen:*"]).listen(0).is_ok());
    }
}

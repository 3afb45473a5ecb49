//! `alknet token …` and `alknet peer …`: edit the data directory's identity
//! store. A running node picks the changes up on its next lookup; no restart.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alknet_core::Fingerprint;
use alknet_identity::{PeerInfo, TOKEN_PREFIX_LEN, TokenInfo, TokenSpec};
use anyhow::Context;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::data_dir::DataDir;

/// What `alknet token create` was asked.
pub struct CreateArgs {
    pub scopes: Vec<String>,
    pub id: Option<String>,
    pub expires: Option<Duration>,
    pub description: Option<String>,
}

pub fn token_create(data_dir: &Path, args: CreateArgs, json: bool) -> anyhow::Result<ExitCode> {
    let store = DataDir::new(data_dir).existing_identity_store()?;
    let expires_at = args.expires.map(expiry_after).transpose()?;
    let (token, info) = store.create_token(TokenSpec {
        id: args.id,
        scopes: args.scopes,
        expires_at,
        description: args.description.unwrap_or_default(),
    })?;
    if json {
        let mut printed = token_json(&info);
        printed["token"] = Value::String(token.to_string());
        print_json(&printed)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("token: {token}");
    println!("prefix: {}", info.prefix);
    println!("id: {}", info.id);
    println!("scopes: {}", scopes_text(&info.scopes));
    println!("expires: {}", expiry(info.expires_at, unix_now()));
    println!(
        "(the token is shown only this once; `alknet token revoke {}` revokes it)",
        info.prefix
    );
    Ok(ExitCode::SUCCESS)
}

pub fn token_list(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let tokens = DataDir::new(data_dir)
        .existing_identity_store()?
        .list_tokens()?;
    if json {
        print_json(&Value::Array(tokens.iter().map(token_json).collect()))?;
    } else if tokens.is_empty() {
        println!("no tokens");
    } else {
        print!("{}", token_table(&tokens, unix_now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn token_revoke(data_dir: &Path, prefix: &str, json: bool) -> anyhow::Result<ExitCode> {
    if prefix.chars().count() != TOKEN_PREFIX_LEN {
        // Not echoed: it may be a whole token pasted by mistake.
        anyhow::bail!(
            "a token prefix has {TOKEN_PREFIX_LEN} characters, like `alk_3xYz` (see `alknet token list`)"
        );
    }
    let info = DataDir::new(data_dir)
        .existing_identity_store()?
        .revoke_token(prefix)?;
    if json {
        print_json(&token_json(&info))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("revoked {} ({})", info.prefix, info.id);
    Ok(ExitCode::SUCCESS)
}

/// A peer as `peer add` and `peer remove` name it: a fingerprint as
/// given, or the fingerprint of an OpenSSH public key (and the key's type).
#[derive(Debug)]
pub struct PeerName {
    pub fingerprint: Fingerprint,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, …, when named by an SSH key.
    pub key_type: Option<String>,
}

impl PeerName {
    /// Reads `arg`: `ed25519:<hex>` / `SHA256:…`, an OpenSSH public key line,
    /// a path to a `.pub` file, `-` (the key on standard input) or `@PATH`.
    pub fn read(arg: &str) -> anyhow::Result<Self> {
        let not_a_fingerprint = match arg.parse::<Fingerprint>() {
            Ok(fingerprint) => {
                return Ok(Self {
                    fingerprint,
                    key_type: None,
                });
            }
            Err(error) => error,
        };
        let (text, source) = if arg == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the public key from standard input")?;
            (text, "the public key on standard input".to_owned())
        } else if let Some(path) = arg.strip_prefix('@') {
            (read_key_file(Path::new(path))?, path.to_owned())
        } else if arg.trim_start().contains(' ') {
            (arg.to_owned(), "the public key".to_owned())
        } else if Path::new(arg).is_file() {
            (read_key_file(Path::new(arg))?, arg.to_owned())
        } else {
            // Neither a key nor a file: most likely a mistyped fingerprint.
            anyhow::bail!(
                "`{arg}`: {not_a_fingerprint}; or give an OpenSSH public key (`ssh-ed25519 \
                 AAAA… comment`, a .pub file, `-` or `@PATH`)"
            );
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .with_context(|| format!("{source} holds no public key"))?;
        let key = alknet_ssh::keys::parse_public_key(line)
            .with_context(|| format!("cannot read {source}"))?;
        Ok(Self {
            fingerprint: alknet_ssh::keys::fingerprint(&key),
            key_type: Some(key.algorithm().as_str().to_owned()),
        })
    }

    /// `ed25519:… (ssh-ed25519 key)`, or the fingerprint alone.
    fn described(&self) -> String {
        match &self.key_type {
            Some(kind) => format!("{} ({kind} key)", self.fingerprint),
            None => self.fingerprint.to_string(),
        }
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    // A private key given by mistake is refused before its text goes anywhere.
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key file {}", path.display()))?;
    if text.contains("PRIVATE KEY") {
        anyhow::bail!(
            "{} is a private key: give the public key (the .pub file beside it)",
            path.display()
        );
    }
    Ok(text)
}

pub fn peer_add(
    data_dir: &Path,
    peer: &PeerName,
    id: &str,
    scopes: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let fingerprint = &peer.fingerprint;
    let replaced =
        DataDir::new(data_dir)
            .existing_identity_store()?
            .add_peer(fingerprint, id, scopes)?;
    if json {
        print_json(&json!({
            "fingerprint": fingerprint.to_string(),
            "key_type": peer.key_type,
            "id": id,
            "scopes": scopes,
            "replaced": replaced.map(|old| json!({"id": old.id, "scopes": old.scopes})),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let described = peer.described();
    match replaced {
        Some(old) => println!(
            "replaced peer {described}: was {} [{}], now {id} [{}]",
            old.id,
            scopes_text(&old.scopes),
            scopes_text(scopes)
        ),
        None => println!("added peer {described}: {id} [{}]", scopes_text(scopes)),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn peer_list(data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let peers = DataDir::new(data_dir)
        .existing_identity_store()?
        .list_peers()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
    } else if peers.is_empty() {
        println!("no peers");
    } else {
        print!("{}", peer_table(&peers));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn peer_remove(data_dir: &Path, peer: &PeerName, json: bool) -> anyhow::Result<ExitCode> {
    let info = DataDir::new(data_dir)
        .existing_identity_store()?
        .remove_peer(&peer.fingerprint)?;
    if json {
        let mut printed = serde_json::to_value(&info)?;
        printed["key_type"] = json!(peer.key_type);
        print_json(&printed)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("removed peer {} ({})", peer.described(), info.id);
    Ok(ExitCode::SUCCESS)
}

/// A token as `--json` prints it: times in RFC 3339, as the table shows
/// them, never the token itself.
fn token_json(info: &TokenInfo) -> Value {
    json!({
        "prefix": info.prefix,
        "id": info.id,
        "scopes": info.scopes,
        "created_at": timestamp(info.created_at),
        "expires_at": info.expires_at.map(timestamp),
        "expired": info.expires_at.is_some_and(|at| unix_now() >= at),
        "description": info.description,
    })
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    crate::output::line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The expiry `after` from now, in whole seconds since the epoch, rounded up
/// so that a token lives at least as long as asked.
fn expiry_after(after: Duration) -> anyhow::Result<u64> {
    if after.is_zero() {
        anyhow::bail!("--expires must be longer than zero");
    }
    let at = SystemTime::now()
        .checked_add(after)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .context("--expires is too far in the future")?;
    Ok(at.as_secs() + u64::from(at.subsec_nanos() > 0))
}

fn timestamp(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn expiry(expires_at: Option<u64>, now: u64) -> String {
    match expires_at {
        None => "never".to_owned(),
        Some(at) if now >= at => format!("{} (expired)", timestamp(at)),
        Some(at) => timestamp(at),
    }
}

fn scopes_text(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "-".to_owned()
    } else {
        scopes.join(",")
    }
}

fn token_table(tokens: &[TokenInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.prefix.clone(),
                t.id.clone(),
                scopes_text(&t.scopes),
                timestamp(t.created_at),
                expiry(t.expires_at, now),
                if t.description.is_empty() {
                    "-".to_owned()
                } else {
                    t.description.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            "PREFIX",
            "ID",
            "SCOPES",
            "CREATED",
            "EXPIRES",
            "DESCRIPTION",
        ],
        &rows,
    )
}

fn peer_table(peers: &[PeerInfo]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.fingerprint.to_string(),
                p.id.clone(),
                scopes_text(&p.scopes),
            ]
        })
        .collect();
    table(&["FINGERPRINT", "ID", "SCOPES"], &rows)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_print_as_aligned_columns_without_secrets() {
        let tokens = [
            TokenInfo {
                prefix: "alk_3xYz".into(),
                id: "admin".into(),
                scopes: vec!["admin".into()],
                expires_at: None,
                description: "created by alknet init".into(),
                created_at: 0,
            },
            TokenInfo {
                prefix: "alk_Ab12".into(),
                id: "token:alk_Ab12".into(),
                scopes: vec![],
                expires_at: Some(60),
                description: String::new(),
                created_at: 30,
            },
        ];
        assert_eq!(
            token_table(&tokens, 100),
            "PREFIX    ID              SCOPES  CREATED               EXPIRES                         DESCRIPTION\n\
             alk_3xYz  admin           admin   1970-01-01T00:00:00Z  never                           created by alknet init\n\
             alk_Ab12  token:alk_Ab12  -       1970-01-01T00:00:30Z  1970-01-01T00:01:00Z (expired)  -\n"
        );
    }

    #[test]
    fn expiry_rounds_up_to_the_next_second() {
        let now = unix_now();
        let at = expiry_after(Duration::from_millis(1500)).unwrap();
        assert!(at >= now + 2 && at <= now + 3, "{at} vs {now}");
        assert!(expiry_after(Duration::ZERO).is_err());
    }
}

//! `serve --json`: the start-up banner as one JSON object line, for the
//! scripts and supervisors that start a node and need its address, its id
//! and (on a first start) its admin token without parsing the text.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What the banner reports.
pub struct Facts<'a> {
    pub node_id: String,
    pub data_dir: &'a Path,
    pub listen: SocketAddr,
    pub alpns: &'a [String],
    /// What browsers are shown, as the text banner describes it.
    pub certificate: &'a str,
    pub console: bool,
    pub metrics: Option<SocketAddr>,
    /// SSH, when served.
    pub ssh: Option<&'a Ssh>,
    /// SFTP's root directory, when SFTP is served.
    pub sftp_root: Option<&'a Path>,
    /// Where git repositories live, when git is served.
    pub git_root: Option<&'a Path>,
    /// DNS, when served.
    pub dns: Option<&'a Dns>,
    /// The admin token, when this start created the data directory: the
    /// one secret the text banner prints too, never stored anywhere.
    pub admin_token: Option<&'a str>,
}

/// What the banner says about SSH.
pub struct Ssh {
    /// `ssh-ed25519 AAAA…`, as `known_hosts` holds it.
    pub host_key: String,
    /// The plain listener (`[ssh] listen`), if any.
    pub plain: Option<SocketAddr>,
}

impl Ssh {
    /// The text banner's line.
    pub fn text(&self) -> String {
        let plain = match self.plain {
            Some(addr) => format!(", plain SSH on {addr}"),
            None => String::new(),
        };
        format!("ssh: alknet/ssh{plain}; host key {}", self.host_key)
    }
}

/// What the banner says about DNS.
pub struct Dns {
    /// The zones answered, fully qualified.
    pub zones: Vec<String>,
    /// Whether `/dns-query` is served.
    pub doh: bool,
    /// The plain UDP/TCP address (`[dns] listen`), if any.
    pub plain: Option<SocketAddr>,
    /// The DoT address for any TLS client (`[dns] dot_listen`), if any.
    pub dot: Option<SocketAddr>,
    /// Where zone files live.
    pub zone_dir: std::path::PathBuf,
    /// pkarr, when served.
    pub pkarr: Option<Pkarr>,
}

/// What the banner says about pkarr.
pub struct Pkarr {
    /// The node's DNS name, `<z32>.`.
    pub name: String,
    /// Whether its packet is published.
    pub publish: bool,
    /// Whether `/pkarr/<z32>` is served.
    pub relay: bool,
    /// How many relays it publishes to and resolves from.
    pub relays: usize,
    /// The DHT socket, when the node is on the Mainline DHT.
    pub dht: Option<SocketAddrV4>,
}

impl Pkarr {
    /// The text banner's line.
    pub fn text(&self) -> String {
        let mut parts = vec![format!("name {}", self.name)];
        if !self.publish {
            parts.push("not published".to_owned());
        }
        if self.relay {
            parts.push("relay /pkarr/<z32>".to_owned());
        }
        parts.push(format!("{} upstream relay(s)", self.relays));
        if let Some(dht) = self.dht {
            parts.push(format!("DHT on udp {dht}"));
        }
        format!("pkarr: {}", parts.join(", "))
    }
}

impl Dns {
    /// The text banner's line.
    pub fn text(&self) -> String {
        let mut transports = vec!["doq".to_owned(), "dot".to_owned()];
        if self.doh {
            transports.push("https /dns-query".to_owned());
        }
        if let Some(addr) = self.dot {
            transports.push(format!("DoT for any TLS client on {addr}"));
        }
        if let Some(addr) = self.plain {
            transports.push(format!("plain UDP and TCP on {addr}"));
        }
        let zones = if self.zones.is_empty() {
            "no zones yet ([[dns.zones]])".to_owned()
        } else {
            format!("zones {}", self.zones.join(" "))
        };
        format!("dns: {}; {zones}", transports.join(", "))
    }
}

/// The text banner's SFTP line.
pub fn sftp_text(root: &Path) -> String {
    format!(
        "sftp: alknet/sftp and the SSH subsystem `sftp`; root {}",
        root.display()
    )
}

/// The text banner's git line.
pub fn git_text(listen: SocketAddr, root: &Path) -> String {
    format!(
        "git: https://{listen}/git/<name>.git, SSH git-upload-pack/git-receive-pack, alknet/git; repositories in {}",
        root.display()
    )
}

/// Prints the banner as one line on standard output. Times are RFC 3339, as
/// in every other `--json` output.
pub fn print_json(facts: &Facts<'_>) -> anyhow::Result<()> {
    let started_at = OffsetDateTime::now_utc().format(&Rfc3339)?;
    let object = json!({
        "node_id": facts.node_id,
        "data_dir": facts.data_dir,
        "listen": facts.listen.to_string(),
        // One address, both transports: QUIC on its UDP port, TLS on its
        // TCP port.
        "transports": ["quic", "tls"],
        "alpns": facts.alpns,
        "certificate": facts.certificate,
        "console": facts.console.then(|| format!("https://{}/console", facts.listen)),
        "metrics": facts.metrics.map(|addr| format!("http://{addr}/metrics")),
        "ssh": facts.ssh.map(|ssh| json!({
            "host_key": ssh.host_key,
            "plain": ssh.plain.map(|addr| addr.to_string()),
        })),
        "sftp": facts.sftp_root.map(|root| json!({ "root": root })),
        "git": facts.git_root.map(|root| json!({ "root": root })),
        "dns": facts.dns.map(|dns| json!({
            "zones": dns.zones,
            "doh": dns.doh,
            "plain": dns.plain.map(|addr| addr.to_string()),
            "dot_listen": dns.dot.map(|addr| addr.to_string()),
            "zone_dir": dns.zone_dir,
            "pkarr": dns.pkarr.as_ref().map(|pkarr| json!({
                "name": pkarr.name,
                "publish": pkarr.publish,
                "relay": pkarr.relay,
                "relays": pkarr.relays,
                "dht": pkarr.dht.map(|addr| addr.to_string()),
            })),
        })),
        "admin_token": facts.admin_token,
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": started_at,
    });
    crate::output::line(&object.to_string())?;
    Ok(())
}

//! Where a node is, from its pkarr packet: the addresses at its name and
//! the port and ALPNs of its `_alknet` record — what `[[upstreams]]` named
//! by node id alone dial, and what `alknet resolve` prints.

use std::net::{IpAddr, SocketAddr};

use alknet_core::NodeId;
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use pkarr::PublicKey;

use crate::publish::ALKNET_LABEL;
use crate::resolver::{ResolveError, Resolver};

/// A node as its packet describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Located {
    /// `ed25519:<hex>`, from the key (the record's `id=` must agree).
    pub node_id: String,
    /// Its name, `<z32>.`.
    pub name: String,
    /// Where to dial it: each published address with the published port.
    pub addresses: Vec<SocketAddr>,
    /// The ALPNs it serves.
    pub alpns: Vec<String>,
}

/// Why a node could not be located.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// No packet was found for the key.
    #[error("no pkarr packet is published for {0}")]
    NotPublished(String),
    /// The packet has no usable `_alknet` record.
    #[error("the pkarr packet of {name} has no usable _alknet record: {reason}")]
    NoRecord {
        /// The node's name.
        name: String,
        /// What is missing.
        reason: &'static str,
    },
    /// The lookup failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// The pkarr key of a node id (`ed25519:<hex>`), a z-base-32 key, or a name
/// ending in one (`_alknet.<z32>.`).
pub fn key_of(text: &str) -> Option<PublicKey> {
    if let Ok(id) = text.parse::<NodeId>() {
        return PublicKey::try_from(&id.0).ok();
    }
    let last = text.trim_end_matches('.').rsplit('.').next()?;
    PublicKey::try_from(last.to_ascii_lowercase().as_str()).ok()
}

/// Locates the node of `key` through `resolver`.
pub async fn locate(resolver: &Resolver, key: &PublicKey) -> Result<Located, LocateError> {
    let z32 = key.to_z32();
    let packet = resolver
        .resolve(key)
        .await?
        .ok_or_else(|| LocateError::NotPublished(format!("{z32}.")))?;
    let no_record = |reason| LocateError::NoRecord {
        name: format!("{z32}."),
        reason,
    };
    let records = Message::from_vec(&packet.encoded_packet())
        .map_err(|_| no_record("the packet does not parse"))?;
    let apex = format!("{z32}.");
    let label = format!("{ALKNET_LABEL}.{z32}.");
    let mut fields = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for record in &records.answers {
        let owner = record.name.to_ascii().to_ascii_lowercase();
        match &record.data {
            RData::TXT(txt) if owner == label => {
                for string in txt.txt_data.iter() {
                    if let Some((key, value)) = std::str::from_utf8(string)
                        .ok()
                        .and_then(|s| s.split_once('='))
                    {
                        fields.push((key.to_owned(), value.to_owned()));
                    }
                }
            }
            RData::A(a) if owner == apex => ips.push(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) if owner == apex => ips.push(IpAddr::V6(aaaa.0)),
            _ => {}
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let port: u16 = field("port")
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| no_record("no port="))?;
    let node_id = NodeId(key.to_bytes()).to_string();
    if field("id").is_some_and(|id| id != node_id) {
        return Err(no_record("its id= is another key's"));
    }
    if ips.is_empty() {
        return Err(no_record("no address"));
    }
    Ok(Located {
        node_id,
        name: apex,
        addresses: ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        alpns: field("alpns")
            .map(|alpns| alpns.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

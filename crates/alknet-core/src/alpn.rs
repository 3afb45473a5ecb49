//! Application-layer protocol names, the key by which every connection is routed.

use std::fmt;
use std::sync::Arc;

/// An ALPN protocol id as negotiated in the TLS handshake, e.g. `alknet/call`.
///
/// Cheap to clone; compared byte-wise.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alpn(Arc<str>);

impl Alpn {
    /// The call protocol.
    pub const CALL: &'static str = "alknet/call";
    /// HTTP/2 over TLS.
    pub const H2: &'static str = "h2";
    /// HTTP/1.1 over TLS.
    pub const HTTP_1_1: &'static str = "http/1.1";
    /// The diagnostic echo protocol (off by default).
    pub const ECHO: &'static str = "alknet/echo";

    /// The ALPN table of PROTOCOL.md §2, in preference order: when a client
    /// offers several served ALPNs, the earliest wins (rule 3).
    pub const TABLE: &'static [&'static str] = &[
        Self::CALL,
        Self::H2,
        Self::HTTP_1_1,
        "alknet/ssh",
        "alknet/sftp",
        "alknet/git",
        "doq",
        "/iroh-bytes/4",
        "alknet/msg",
        Self::ECHO,
    ];

    /// Creates an ALPN from its wire name.
    ///
    /// # Panics
    /// Never on input from the network: use [`Alpn::from_wire`] there. This
    /// constructor is for names written in code and panics on an empty name or one
    /// longer than the 255 bytes TLS allows, which are programming errors.
    pub fn new(name: &str) -> Self {
        Self::from_wire(name.as_bytes()).expect("ALPN names are 1..=255 bytes of UTF-8")
    }

    /// Parses an ALPN as negotiated on the wire; `None` if it is empty, longer than
    /// 255 bytes, or not UTF-8.
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > 255 {
            return None;
        }
        std::str::from_utf8(bytes).ok().map(|s| Self(Arc::from(s)))
    }

    /// The ALPN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ALPN as the bytes sent in the TLS extension.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Rank for server-side preference: lower is preferred. ALPNs outside the
    /// protocol table rank after every listed one, in name order.
    pub fn preference(&self) -> usize {
        Self::TABLE
            .iter()
            .position(|p| *p == self.as_str())
            .unwrap_or(Self::TABLE.len())
    }

    /// Whether this ALPN belongs to alknet's own protocol family (`alknet/...`).
    pub fn is_alknet(&self) -> bool {
        self.0.starts_with("alknet/")
    }

    /// Sorts ALPNs into the order a server advertises them (most preferred first).
    pub fn sort_by_preference(alpns: &mut [Alpn]) {
        alpns.sort_by(|a, b| a.preference().cmp(&b.preference()).then_with(|| a.cmp(b)));
    }
}

impl fmt::Display for Alpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Alpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Alpn({:?})", &*self.0)
    }
}

impl From<&str> for Alpn {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_validated() {
        assert!(Alpn::from_wire(b"").is_none());
        assert!(Alpn::from_wire(&[b'a'; 256]).is_none());
        assert!(Alpn::from_wire(&[0xff, 0xfe]).is_none());
        assert_eq!(Alpn::from_wire(b"h2").unwrap().as_str(), "h2");
    }

    #[test]
    fn preference_follows_the_protocol_table() {
        let mut alpns = vec![
            Alpn::new("zzz/other"),
            Alpn::new(Alpn::ECHO),
            Alpn::new(Alpn::HTTP_1_1),
            Alpn::new(Alpn::H2),
            Alpn::new(Alpn::CALL),
        ];
        Alpn::sort_by_preference(&mut alpns);
        let names: Vec<_> = alpns.iter().map(Alpn::as_str).collect();
        assert_eq!(
            names,
            ["alknet/call", "h2", "http/1.1", "alknet/echo", "zzz/other"]
        );
    }
}

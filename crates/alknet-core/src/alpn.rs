//! Application-layer protocol names, the key by which every connection is routed.

use std::fmt;
use std::sync::Arc;

/// An ALPN protocol id as negotiated in the TLS handshake, e.g. `alknet/call`.
///
/// Cheap to clone; compared byte-wise.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Alpn(Arc<str>);

impl Alpn {
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
}

//! `alknet/ssh`: an SSH-2 server for stock OpenSSH clients behind the node's
//! one port.

#![warn(missing_docs)]

pub mod keys;

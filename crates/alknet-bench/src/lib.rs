//! What the `alknet-bench` binary and the end-to-end soak test share: TLS
//! dialing and histograms ([`support`]), the node as a child process
//! ([`node_process`]), the mixed steady load and its sampling ([`load`]),
//! connect/close cycles and the exact-tree check ([`cycles`]), and how a
//! sampled series is judged flat ([`trend`]).

pub mod cycles;
pub mod load;
pub mod node_process;
pub mod support;
pub mod trend;

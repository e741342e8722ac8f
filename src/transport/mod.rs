//! placeholder: the transport layer.

pub mod bench;

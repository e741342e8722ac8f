//! placeholder: the storage layer.

pub mod bench;

//! Records as stored, through the record layer every service crate shares
//! (`gantry_runtime::records`: JSON, LZ4-compressed beyond 256 bytes, read back with the revision
//! they were read at for compare-and-swap, written with their index rows and counters in one
//! transaction). This module only gives its reads ECS's error type: a record that cannot be read
//! is a server error naming its key. ECS's records are JSON of the generated shapes plus Gantry's
//! own bookkeeping where ECS's shape has no room for it.
//!
//! Tasks and container instances repeat their ARNs and attribute names, so compression halves
//! what the store's mirror, its SQLite file and its watch history hold, and keeps a task record
//! inside one SQLite page.

use gantry_core::{EcsError, Result};
use gantry_runtime::records::{self as layer, RecordError};
use gantry_store::{KeyValue, Store};
use serde::de::DeserializeOwned;

pub use gantry_runtime::records::{Stored, encode, pack};

fn server_error(e: RecordError) -> EcsError {
    EcsError::server(format!("The stored record {} could not be read: {}", e.key, e.message))
}

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Stored<T>> {
    layer::decode(kv).map_err(server_error)
}

/// A stored value as `T`, which may be any shape that reads part of the record (the bytes may
/// be compressed: never `serde_json` directly).
pub(crate) fn parse<T: DeserializeOwned>(stored: &[u8]) -> std::result::Result<T, String> {
    layer::parse(stored)
}

/// A stored record's JSON.
pub fn unpack(stored: &[u8]) -> Result<Vec<u8>> {
    layer::unpack(stored).map_err(|e| EcsError::server(format!("A stored record could not be read: {e}")))
}

pub(crate) fn load<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<Stored<T>>> {
    layer::load(store, key).map_err(server_error)
}

pub(crate) fn load_prefix<T: DeserializeOwned>(store: &dyn Store, prefix: &str) -> Result<Vec<Stored<T>>> {
    layer::load_prefix(store, prefix).map_err(server_error)
}

/// Records decoded once per revision (`gantry_runtime::records::DecodedCache`), with ECS's errors.
pub(crate) struct DecodedCache<T>(layer::DecodedCache<T>);

impl<T> Default for DecodedCache<T> {
    fn default() -> Self {
        DecodedCache(layer::DecodedCache::default())
    }
}

impl<T> std::fmt::Debug for DecodedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: DeserializeOwned> DecodedCache<T> {
    /// The record at `key` as the store holds it now, decoded once per revision.
    pub(crate) fn load(&self, store: &dyn Store, key: &str) -> Result<Option<std::sync::Arc<T>>> {
        self.0.load(store, key).map_err(server_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_record_is_a_server_error_naming_its_key() {
        let kv = KeyValue {
            key: "k".into(),
            value: vec![1, 200, 0, 0, 0, 1].into(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        };
        let err = decode::<serde_json::Value>(&kv).unwrap_err();
        assert!(err.message.contains("The stored record k could not be read"), "{}", err.message);
    }
}

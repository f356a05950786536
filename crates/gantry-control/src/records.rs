//! Records as stored: JSON of the generated shapes (plus Gantry's own bookkeeping where ECS's
//! shape has no room for it), with the modification revision they were read at, for
//! compare-and-swap.

use gantry_core::{EcsError, Result};
use gantry_store::{KeyValue, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A decoded record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub key: String,
    pub value: T,
    pub mod_revision: i64,
}

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Stored<T>> {
    let value = serde_json::from_slice(&kv.value)
        .map_err(|e| EcsError::server(format!("The stored record {} could not be read: {e}", kv.key)))?;
    Ok(Stored { key: kv.key.clone(), value, mod_revision: kv.mod_revision })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing the generated shapes (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn load<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<Stored<T>>> {
    store.get(key).map(|kv| decode(&kv)).transpose()
}

pub(crate) fn load_prefix<T: DeserializeOwned>(store: &dyn Store, prefix: &str) -> Result<Vec<Stored<T>>> {
    store.range(prefix, None, usize::MAX).iter().map(decode).collect()
}

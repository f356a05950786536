//! Records as stored: JSON of the generated shapes (plus Gantry's own bookkeeping where ECS's
//! shape has no room for it), with the modification revision they were read at, for
//! compare-and-swap.
//!
//! A record longer than [`COMPRESS_OVER`] bytes of JSON is stored LZ4-compressed, behind a
//! [`LZ4`] marker byte (JSON never starts with it, so plain records written before stay
//! readable). Tasks and container instances repeat their ARNs and attribute names, so this
//! halves what the store's mirror, its SQLite file and its watch history hold, and keeps a task
//! record inside one SQLite page.

use gantry_core::{EcsError, Result};
use gantry_store::{KeyValue, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// A decoded record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub key: String,
    pub value: T,
    pub mod_revision: i64,
}

/// The first byte of a compressed record.
const LZ4: u8 = 1;
/// Records up to this many bytes of JSON are stored as they are.
const COMPRESS_OVER: usize = 256;

pub(crate) fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Stored<T>> {
    let value = parse(&kv.value)
        .map_err(|e| EcsError::server(format!("The stored record {} could not be read: {e}", kv.key)))?;
    Ok(Stored { key: kv.key.clone(), value, mod_revision: kv.mod_revision })
}

/// A stored value as `T`, which may be any shape that reads part of the record. Everything that
/// reads stored records goes through here (or [`decode`]), never through `serde_json` directly:
/// the bytes may be compressed.
pub(crate) fn parse<T: DeserializeOwned>(stored: &[u8]) -> std::result::Result<T, String> {
    let json = json_of(stored).map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

fn json_of(stored: &[u8]) -> std::result::Result<Cow<'_, [u8]>, lz4_flex::block::DecompressError> {
    match stored.split_first() {
        Some((&LZ4, packed)) => lz4_flex::decompress_size_prepended(packed).map(Cow::Owned),
        _ => Ok(Cow::Borrowed(stored)),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing the generated shapes (strings, numbers, maps with string keys) cannot fail.
    pack(serde_json::to_vec(value).unwrap_or_default())
}

/// A record's JSON as it is stored.
pub fn pack(json: Vec<u8>) -> Vec<u8> {
    if json.len() <= COMPRESS_OVER {
        return json;
    }
    let mut out = vec![LZ4];
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&json));
    out
}

/// A stored record's JSON.
pub fn unpack(stored: &[u8]) -> Result<Vec<u8>> {
    json_of(stored)
        .map(Cow::into_owned)
        .map_err(|e| EcsError::server(format!("A stored record could not be read: {e}")))
}

pub(crate) fn load<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<Stored<T>>> {
    store.get(key).map(|kv| decode(&kv)).transpose()
}

pub(crate) fn load_prefix<T: DeserializeOwned>(store: &dyn Store, prefix: &str) -> Result<Vec<Stored<T>>> {
    store.range(prefix, None, usize::MAX).iter().map(decode).collect()
}

/// Records decoded lately, by key and the revision they were decoded at, for hot reads that
/// would otherwise decompress and parse the same record on every request (DescribeClusters).
/// An entry is used only when the store's current revision of its key is the one it was
/// decoded at (every write gives a key a new mod revision, a deleted and re-created key
/// included), so it never serves stale data. Bounded: full, it starts over.
pub(crate) struct DecodedCache<T> {
    entries: std::sync::Mutex<std::collections::HashMap<String, (i64, std::sync::Arc<T>)>>,
}

impl<T> Default for DecodedCache<T> {
    fn default() -> Self {
        DecodedCache { entries: std::sync::Mutex::default() }
    }
}

impl<T> std::fmt::Debug for DecodedCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedCache").finish_non_exhaustive()
    }
}

/// Entries a [`DecodedCache`] holds before it starts over.
const DECODED_CACHE_ENTRIES: usize = 1024;

impl<T: DeserializeOwned> DecodedCache<T> {
    /// The record at `key` as the store holds it now, decoded once per revision.
    pub(crate) fn load(&self, store: &dyn Store, key: &str) -> Result<Option<std::sync::Arc<T>>> {
        let Some(kv) = store.get(key) else {
            return Ok(None);
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rev, value)) = entries.get(key)
            && *rev == kv.mod_revision
        {
            return Ok(Some(value.clone()));
        }
        drop(entries);
        let value = std::sync::Arc::new(decode::<T>(&kv)?.value);
        entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= DECODED_CACHE_ENTRIES && !entries.contains_key(key) {
            entries.clear();
        }
        entries.insert(kv.key, (kv.mod_revision, value.clone()));
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: Vec<u8>) -> KeyValue {
        KeyValue { key: "k".into(), value: value.into(), create_revision: 1, mod_revision: 1, version: 1 }
    }

    #[tokio::test]
    async fn the_decoded_cache_follows_the_revision() {
        let store = gantry_store::SqliteStore::in_memory().unwrap();
        let cache = DecodedCache::<serde_json::Value>::default();
        assert!(cache.load(&store, "k").unwrap().is_none());
        let put = |v: serde_json::Value| store.txn(gantry_store::Txn::new().put("k", encode(&v)));
        put(serde_json::json!({"a": 1})).await.unwrap();
        let first = cache.load(&store, "k").unwrap().unwrap();
        assert_eq!(*first, serde_json::json!({"a": 1}));
        assert!(std::sync::Arc::ptr_eq(&first, &cache.load(&store, "k").unwrap().unwrap()));
        put(serde_json::json!({"a": 2})).await.unwrap();
        assert_eq!(*cache.load(&store, "k").unwrap().unwrap(), serde_json::json!({"a": 2}));
    }

    #[test]
    fn large_records_are_stored_compressed_and_read_back() {
        let arn = "arn:aws:ecs:us-east-1:000000000000:task/bench/01aae9a4233611202c0662dff4066305";
        let record = serde_json::json!({"taskArn": arn, "containers": [{"taskArn": arn}, {"taskArn": arn}]});
        let stored = encode(&record);
        let json = serde_json::to_vec(&record).unwrap();
        assert!(json.len() > COMPRESS_OVER);
        assert_eq!(stored[0], LZ4);
        assert!(stored.len() < json.len() / 2, "{} bytes stored for {} of JSON", stored.len(), json.len());
        let back: Stored<serde_json::Value> = decode(&kv(stored.clone())).unwrap();
        assert_eq!(back.value, record);
        assert_eq!(unpack(&stored).unwrap(), json);
    }

    #[test]
    fn small_and_older_plain_records_are_json() {
        let small = encode(&serde_json::json!({"name": "x"}));
        assert_eq!(small, br#"{"name":"x"}"#);
        // A large record written before compression existed is still read.
        let plain = serde_json::to_vec(&serde_json::json!({"pad": "y".repeat(1000)})).unwrap();
        let back: Stored<serde_json::Value> = decode(&kv(plain)).unwrap();
        assert_eq!(back.value["pad"].as_str().map(str::len), Some(1000));
        // A damaged compressed record is an error, not a panic.
        let err = decode::<serde_json::Value>(&kv(vec![LZ4, 200, 0, 0, 0, 1])).unwrap_err();
        assert!(err.message.contains("could not be read"), "{}", err.message);
    }
}

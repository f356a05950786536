//! The record layer that service crates share: how a record is stored (JSON, LZ4-compressed
//! beyond [`COMPRESS_OVER`] bytes behind a marker byte), read back with the revision it was read
//! at ([`Stored`]), and written with its secondary index rows in the same compare-and-swap
//! transaction ([`TxnExt::put_record`], [`TxnExt::delete_record`]).
//!
//! A record type declares its key and its index rows once, as functions of the record and its
//! scope ([`Record`]). A write puts the rows the new record has and the old one did not (or had
//! with another value) and deletes the rows the old one had and the new one has not; rows that
//! stay the same are not rewritten, so a write that changes nothing indexed leaves the index (and
//! its watchers) alone. Operations never write index rows by hand. (A write that cannot change an
//! indexed field, such as placement updating an instance's remaining resources, may still put the
//! record's bytes directly.)
//!
//! A record type may also declare counters it contributes 1 to ([`Record::counters`]: how many
//! tasks of a cluster are RUNNING on EC2, how many a container instance has pending). The layer
//! adds the difference between the old record's counters and the new one's with the store's
//! [`Op::Add`](gantry_store::Op::Add), in the same transaction, so counts move with the states
//! they count and no read ever counts records; and since an add carries no compare, writers of
//! different records never conflict on a shared counter.
//!
//! The old record's rows and counters are captured with [`Before::of`] when it is read, before
//! the operation changes it in place; a new record has [`Before::absent`]. A record is removed
//! with [`TxnExt::delete_record`], which takes its rows and counters with it.
//!
//! Every service crate uses this one layer (gantry-ecs through thin wrappers that give its
//! errors ECS's type); [`DecodedCache`] keeps hot records decoded once per revision.

use gantry_core::Scope;
use gantry_store::{KeyValue, Store, Txn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// The first byte of a compressed record (JSON never starts with it).
const LZ4: u8 = 1;
/// Records up to this many bytes of JSON are stored as they are.
pub const COMPRESS_OVER: usize = 256;

/// A decoded record and the revision it was read at.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub key: String,
    pub value: T,
    pub mod_revision: i64,
}

/// A stored value that could not be read: a defect (or a record of a newer release), reported
/// with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the stored record {} could not be read: {}", self.key, self.message)
    }
}

impl std::error::Error for RecordError {}

/// A record's bytes as stored.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain data (strings, numbers, maps with string keys): serializing cannot fail.
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

fn json_of(stored: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match stored.split_first() {
        Some((&LZ4, packed)) => {
            lz4_flex::decompress_size_prepended(packed).map(Cow::Owned).map_err(|e| e.to_string())
        }
        _ => Ok(Cow::Borrowed(stored)),
    }
}

/// A stored record's JSON.
pub fn unpack(stored: &[u8]) -> Result<Vec<u8>, String> {
    json_of(stored).map(Cow::into_owned)
}

/// A stored value as `T`, which may be any shape that reads part of the record. Everything that
/// reads stored records goes through here (or [`decode`]), never through `serde_json` directly:
/// the bytes may be compressed.
pub fn parse<T: DeserializeOwned>(stored: &[u8]) -> Result<T, String> {
    let json = json_of(stored)?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

/// A stored key-value as a record.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Stored<T>, RecordError> {
    let value = parse(&kv.value).map_err(|message| RecordError { key: kv.key.clone(), message })?;
    Ok(Stored { key: kv.key.clone(), value, mod_revision: kv.mod_revision })
}

/// The record at `key`, if there is one.
pub fn load<T: DeserializeOwned>(store: &dyn Store, key: &str) -> Result<Option<Stored<T>>, RecordError> {
    store.get(key).map(|kv| decode(&kv)).transpose()
}

/// Every record whose key starts with `prefix`, in key order.
pub fn load_prefix<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<Stored<T>>, RecordError> {
    store.range(prefix, None, usize::MAX).iter().map(decode).collect()
}

/// An index row: its key and value.
pub type Row = (String, Vec<u8>);

/// A stored record type. (Reading one back needs `DeserializeOwned` too; writing it only this.)
pub trait Record: Serialize {
    /// The record's key.
    fn key(&self, scope: &Scope) -> String;
    /// The index rows the record implies. The default: none.
    fn index_keys(&self, _scope: &Scope) -> Vec<Row> {
        Vec::new()
    }
    /// The counters the record adds 1 to (a key may be listed twice to add 2). The default: none.
    fn counters(&self, _scope: &Scope) -> Vec<String> {
        Vec::new()
    }
}

/// A record as it was read: its key, the revision its write is guarded by, its index rows and
/// its counters.
#[derive(Debug, Clone, Default)]
pub struct Before {
    key: String,
    mod_revision: i64,
    rows: Vec<Row>,
    counters: Vec<String>,
}

impl Before {
    /// A record that does not exist yet: its write requires the key to be absent.
    pub fn absent() -> Self {
        Before::default()
    }

    /// A record as read (call it before changing the record).
    pub fn of<R: Record>(scope: &Scope, stored: &Stored<R>) -> Self {
        Before::read(scope, &stored.key, stored.mod_revision, &stored.value)
    }

    /// A record as read, from its parts: for a record whose stored shape is not itself a
    /// [`Record`] (a wrapper implements it).
    pub fn read<R: Record>(scope: &Scope, key: &str, mod_revision: i64, value: &R) -> Self {
        Before {
            key: key.to_string(),
            mod_revision,
            rows: value.index_keys(scope),
            counters: value.counters(scope),
        }
    }

    /// The revision the record was read at (0: absent).
    pub fn mod_revision(&self) -> i64 {
        self.mod_revision
    }
}

/// The record layer's writes, on the transaction builder.
pub trait TxnExt {
    /// Writes `new` under its key, guarded by the revision `before` was read at (absent: the key
    /// must not exist), and brings its index rows from `before`'s to `new`'s.
    fn put_record<R: Record>(self, scope: &Scope, before: &Before, new: &R) -> Txn;
    /// Deletes the record `before` was read as, guarded by that revision, with its index rows,
    /// and takes it out of its counters.
    fn delete_record(self, before: &Before) -> Txn;
}

impl TxnExt for Txn {
    fn put_record<R: Record>(self, scope: &Scope, before: &Before, new: &R) -> Txn {
        let key = new.key(scope);
        let txn = self.when(&key, before.mod_revision).put(key, encode(new));
        let txn = reindex(txn, &before.rows, new.index_keys(scope));
        recount(txn, &before.counters, new.counters(scope))
    }

    fn delete_record(self, before: &Before) -> Txn {
        let txn = self.when(&before.key, before.mod_revision).delete(&before.key);
        let txn = reindex(txn, &before.rows, Vec::new());
        recount(txn, &before.counters, Vec::new())
    }
}

/// Adds the difference between the counters `new` and `old` contribute to.
fn recount(mut txn: Txn, old: &[String], new: Vec<String>) -> Txn {
    let mut delta: std::collections::BTreeMap<&str, i64> = Default::default();
    for k in old {
        *delta.entry(k).or_default() -= 1;
    }
    for k in &new {
        *delta.entry(k).or_default() += 1;
    }
    for (k, d) in delta {
        txn = txn.add(k, d);
    }
    txn
}

/// Deletes the rows of `old` that `new` lacks and puts those of `new` that are new or changed.
fn reindex(mut txn: Txn, old: &[Row], new: Vec<Row>) -> Txn {
    for (k, _) in old {
        if !new.iter().any(|(n, _)| n == k) {
            txn = txn.delete(k.clone());
        }
    }
    for (k, v) in new {
        if !old.iter().any(|(o, ov)| *o == k && *ov == v) {
            txn = txn.put(k, v);
        }
    }
    txn
}

/// Records decoded lately, by key and the revision they were decoded at, for hot reads that
/// would otherwise decompress and parse the same record on every request (DescribeClusters).
/// An entry is used only when the store's current revision of its key is the one it was
/// decoded at (every write gives a key a new mod revision, a deleted and re-created key
/// included), so it never serves stale data. Bounded: full, it starts over. Its keys are
/// hashed by foldhash (seeded per process), not SipHash: a hit is checked on every read, and
/// the keys are those of stored records, 1,024 at most.
pub struct DecodedCache<T> {
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (i64, std::sync::Arc<T>), foldhash::fast::RandomState>,
    >,
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
    pub fn load(&self, store: &dyn Store, key: &str) -> Result<Option<std::sync::Arc<T>>, RecordError> {
        // A hit is checked on the revision alone, without copying the stored record.
        let Some(revision) = store.mod_revision(key) else {
            return Ok(None);
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((rev, value)) = entries.get(key)
            && *rev == revision
        {
            return Ok(Some(value.clone()));
        }
        drop(entries);
        // A miss (or a write since): the record as it is now, decoded once.
        let Some(kv) = store.get(key) else {
            return Ok(None);
        };
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
    use gantry_store::Op;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    struct Thing {
        name: String,
        status: String,
    }

    impl Record for Thing {
        fn key(&self, s: &Scope) -> String {
            format!("/{}/{}/x/thing/{}", s.account, s.region, self.name)
        }
        fn index_keys(&self, s: &Scope) -> Vec<Row> {
            vec![(
                format!("/{}/{}/x/thing-status/{}/{}", s.account, s.region, self.status, self.name),
                vec![],
            )]
        }
        fn counters(&self, s: &Scope) -> Vec<String> {
            vec![format!("/{}/{}/x/thing-count/{}", s.account, s.region, self.status)]
        }
    }

    fn scope() -> Scope {
        Scope { account: "000000000000".into(), region: "us-east-1".into() }
    }

    fn thing(status: &str) -> Thing {
        Thing { name: "a".into(), status: status.into() }
    }

    fn ops(txn: &Txn) -> Vec<String> {
        txn.ops
            .iter()
            .map(|op| match op {
                Op::Put(k, _) => format!("put {k}"),
                Op::Delete(k) => format!("delete {k}"),
                Op::DeletePrefix(k) => format!("delete-prefix {k}"),
                Op::Add(k, d) => format!("add {d} {k}"),
            })
            .collect()
    }

    fn kv(value: Vec<u8>) -> KeyValue {
        KeyValue { key: "k".into(), value: value.into(), create_revision: 1, mod_revision: 3, version: 1 }
    }

    #[test]
    fn index_rows_and_counters_follow_the_record_in_the_same_transaction() {
        let s = scope();
        let old = Stored { key: thing("ACTIVE").key(&s), value: thing("ACTIVE"), mod_revision: 7 };
        let txn = Txn::new().put_record(&s, &Before::of(&s, &old), &thing("INACTIVE"));
        assert_eq!(txn.compare, [gantry_store::Compare::ModRevision(old.key.clone(), 7)]);
        assert_eq!(
            ops(&txn),
            [
                "put /000000000000/us-east-1/x/thing/a",
                "delete /000000000000/us-east-1/x/thing-status/ACTIVE/a",
                "put /000000000000/us-east-1/x/thing-status/INACTIVE/a",
                "add -1 /000000000000/us-east-1/x/thing-count/ACTIVE",
                "add 1 /000000000000/us-east-1/x/thing-count/INACTIVE",
            ]
        );
        // Nothing indexed or counted changes: only the record is written.
        assert_eq!(Txn::new().put_record(&s, &Before::of(&s, &old), &thing("ACTIVE")).ops.len(), 1);
        // A new record requires its key to be absent and writes its rows and counts.
        let created = Txn::new().put_record(&s, &Before::absent(), &thing("ACTIVE"));
        assert_eq!(created.compare, [gantry_store::Compare::ModRevision(old.key.clone(), 0)]);
        assert_eq!(created.ops.len(), 3);
        // A deleted record takes its rows and its counts with it, guarded by its revision.
        let deleted = Txn::new().delete_record(&Before::of(&s, &old));
        assert_eq!(deleted.compare, [gantry_store::Compare::ModRevision(old.key.clone(), 7)]);
        assert_eq!(
            ops(&deleted),
            [
                "delete /000000000000/us-east-1/x/thing/a",
                "delete /000000000000/us-east-1/x/thing-status/ACTIVE/a",
                "add -1 /000000000000/us-east-1/x/thing-count/ACTIVE",
            ]
        );
    }

    #[test]
    fn large_records_are_compressed_and_damaged_ones_are_errors() {
        let arn = "arn:aws:ecs:us-east-1:000000000000:task/bench/01aae9a4233611202c0662dff4066305";
        let record = serde_json::json!({"taskArn": arn, "containers": [{"taskArn": arn}, {"taskArn": arn}]});
        let json = serde_json::to_vec(&record).unwrap();
        assert!(json.len() > COMPRESS_OVER);
        let bytes = encode(&record);
        assert_eq!(bytes[0], LZ4);
        assert!(bytes.len() < json.len() / 2, "{} bytes stored for {} of JSON", bytes.len(), json.len());
        let back: Stored<serde_json::Value> = decode(&kv(bytes.clone())).unwrap();
        assert_eq!((back.value, back.mod_revision), (record, 3));
        assert_eq!(unpack(&bytes).unwrap(), json);
        assert_eq!(encode(&serde_json::json!({"a": 1})), br#"{"a":1}"#);
        // A large record written before compression existed is still read.
        let plain = serde_json::to_vec(&serde_json::json!({"pad": "y".repeat(1000)})).unwrap();
        let back: Stored<serde_json::Value> = decode(&kv(plain)).unwrap();
        assert_eq!(back.value["pad"].as_str().map(str::len), Some(1000));
        // A damaged compressed record is an error naming its key, not a panic.
        let e = decode::<serde_json::Value>(&kv(vec![LZ4, 200, 0, 0, 0, 1])).unwrap_err();
        assert_eq!(e.key, "k");
        assert!(e.to_string().contains("could not be read"), "{e}");
    }

    #[tokio::test]
    async fn the_decoded_cache_follows_the_revision() {
        let store = gantry_store::SqliteStore::in_memory().unwrap();
        let cache = DecodedCache::<serde_json::Value>::default();
        assert!(cache.load(&store, "k").unwrap().is_none());
        let put = |v: serde_json::Value| store.txn(Txn::new().put("k", encode(&v)));
        put(serde_json::json!({"a": 1})).await.unwrap();
        let first = cache.load(&store, "k").unwrap().unwrap();
        assert_eq!(*first, serde_json::json!({"a": 1}));
        assert!(std::sync::Arc::ptr_eq(&first, &cache.load(&store, "k").unwrap().unwrap()));
        put(serde_json::json!({"a": 2})).await.unwrap();
        assert_eq!(*cache.load(&store, "k").unwrap().unwrap(), serde_json::json!({"a": 2}));
    }
}

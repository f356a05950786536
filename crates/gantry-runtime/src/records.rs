//! The record layer that service crates share: how a record is stored (JSON, LZ4-compressed
//! beyond [`COMPRESS_OVER`] bytes behind a marker byte), read back with the revision it was read
//! at ([`Stored`]), and written with its secondary index rows in the same compare-and-swap
//! transaction ([`TxnExt::put_record`], [`TxnExt::delete_record`]).
//!
//! A record type declares its key and its index rows once, as functions of the record and its
//! scope ([`Record`]). A write puts the rows the new record has and the old one did not (or had
//! with another value) and deletes the rows the old one had and the new one has not; rows that
//! stay the same are not rewritten. The old record's rows are captured with [`Before::of`] when
//! it is read, before the operation changes it; a new record has [`Before::absent`].
//!
//! gantry-ecs keeps its own copy of this layer (`table.rs`, `records.rs`, with ECS's error
//! type); the encoding is the same, so records are readable by either.

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
    let json = serde_json::to_vec(value).unwrap_or_default();
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

/// A stored key-value as a record.
pub fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<Stored<T>, RecordError> {
    let err = |message: String| RecordError { key: kv.key.clone(), message };
    let json = json_of(&kv.value).map_err(err)?;
    let value = serde_json::from_slice(&json).map_err(|e| err(e.to_string()))?;
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

/// A stored record type.
pub trait Record: Serialize + DeserializeOwned {
    /// The record's key.
    fn key(&self, scope: &Scope) -> String;
    /// The index rows the record implies. The default: none.
    fn index_keys(&self, _scope: &Scope) -> Vec<Row> {
        Vec::new()
    }
}

/// A record as it was read: the revision its write is guarded by, and its index rows.
#[derive(Debug, Clone, Default)]
pub struct Before {
    mod_revision: i64,
    rows: Vec<Row>,
}

impl Before {
    /// A record that does not exist yet: its write requires the key to be absent.
    pub fn absent() -> Self {
        Before::default()
    }

    /// A record as read (call it before changing the record).
    pub fn of<R: Record>(scope: &Scope, stored: &Stored<R>) -> Self {
        Before { mod_revision: stored.mod_revision, rows: stored.value.index_keys(scope) }
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
    /// Deletes the record read as `old` (guarded by its revision) and its index rows.
    fn delete_record<R: Record>(self, scope: &Scope, old: &Stored<R>) -> Txn;
}

impl TxnExt for Txn {
    fn put_record<R: Record>(self, scope: &Scope, before: &Before, new: &R) -> Txn {
        let key = new.key(scope);
        let txn = self.when(&key, before.mod_revision).put(key, encode(new));
        reindex(txn, &before.rows, new.index_keys(scope))
    }

    fn delete_record<R: Record>(self, scope: &Scope, old: &Stored<R>) -> Txn {
        let mut txn = self.when(&old.key, old.mod_revision).delete(old.key.clone());
        for (k, _) in old.value.index_keys(scope) {
            txn = txn.delete(k);
        }
        txn
    }
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
            })
            .collect()
    }

    #[test]
    fn index_rows_follow_the_record_in_the_same_transaction() {
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
            ]
        );
        assert_eq!(Txn::new().put_record(&s, &Before::of(&s, &old), &thing("ACTIVE")).ops.len(), 1);
        let created = Txn::new().put_record(&s, &Before::absent(), &thing("ACTIVE"));
        assert_eq!(created.compare, [gantry_store::Compare::ModRevision(old.key.clone(), 0)]);
        assert_eq!(created.ops.len(), 2);
        let deleted = Txn::new().delete_record(&s, &old);
        assert_eq!(
            ops(&deleted),
            [
                "delete /000000000000/us-east-1/x/thing/a",
                "delete /000000000000/us-east-1/x/thing-status/ACTIVE/a"
            ]
        );
    }

    #[test]
    fn large_records_are_compressed_and_damaged_ones_are_errors() {
        let big = serde_json::json!({"pad": "y".repeat(1000)});
        let bytes = encode(&big);
        assert_eq!(bytes[0], LZ4);
        assert!(bytes.len() < 200, "{} bytes", bytes.len());
        let kv = |value: Vec<u8>| KeyValue {
            key: "k".into(),
            value: value.into(),
            create_revision: 1,
            mod_revision: 3,
            version: 1,
        };
        let back: Stored<serde_json::Value> = decode(&kv(bytes)).unwrap();
        assert_eq!((back.value, back.mod_revision), (big, 3));
        assert_eq!(encode(&serde_json::json!({"a": 1})), br#"{"a":1}"#);
        let e = decode::<serde_json::Value>(&kv(vec![LZ4, 200, 0, 0, 0, 1])).unwrap_err();
        assert_eq!(e.key, "k");
    }
}

//! The record layer: each record type declares, once, its key and the secondary index rows it
//! implies ([`Record`]), and every write that creates a record or may change what it indexes
//! goes through [`TxnExt::put_record`], which keeps the index rows in the same compare-and-swap
//! transaction as the record. Operations never write these index rows by hand. (A write that
//! cannot change an indexed field, such as placement updating an instance's remaining
//! resources, may still put the record's bytes directly.)
//!
//! An index row is a function of the record alone (and the scope): a write puts the rows the new
//! record has and the old one did not (or had with another value) and deletes the rows the old
//! record had and the new one has not. Rows that stay the same are not rewritten, so a write that
//! changes nothing indexed leaves the index (and its watchers) alone.
//!
//! A record type may also declare counters it contributes 1 to ([`Record::counters`]: how many
//! tasks of a cluster are RUNNING on EC2, how many a container instance has pending). The layer
//! adds the difference between the old record's counters and the new one's with the store's
//! [`Op::Add`](gantry_store::Op::Add), in the same transaction, so counts move with the states
//! they count and no read ever counts records; and since an add carries no compare, writers of
//! different records never conflict on a shared counter.
//!
//! The old record's rows are captured with [`Before::of`] when the record is read, before the
//! operation changes it in place; a record being created has [`Before::absent`]. A record is
//! removed with [`TxnExt::delete_record`], which takes its rows and counters with it.

use crate::records::{Stored, encode};
use gantry_core::Scope;
use gantry_store::Txn;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An index row: its key and value.
pub(crate) type Row = (String, Vec<u8>);

/// A stored record type.
pub(crate) trait Record: Serialize + DeserializeOwned {
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
pub(crate) struct Before {
    key: String,
    mod_revision: i64,
    rows: Vec<Row>,
    counters: Vec<String>,
}

impl Before {
    /// A record that does not exist yet: its write requires the key to be absent.
    pub(crate) fn absent() -> Self {
        Before::default()
    }

    /// A record as read (call it before changing the record).
    pub(crate) fn of<R: Record>(scope: &Scope, stored: &Stored<R>) -> Self {
        Before {
            key: stored.key.clone(),
            mod_revision: stored.mod_revision,
            rows: stored.value.index_keys(scope),
            counters: stored.value.counters(scope),
        }
    }
}

/// The record layer's writes, on the transaction builder.
pub(crate) trait TxnExt {
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
            format!("/{}/{}/ecs/thing/{}", s.account, s.region, self.name)
        }
        fn index_keys(&self, s: &Scope) -> Vec<Row> {
            vec![(
                format!("/{}/{}/ecs/thing-status/{}/{}", s.account, s.region, self.status, self.name),
                vec![],
            )]
        }
        fn counters(&self, s: &Scope) -> Vec<String> {
            vec![format!("/{}/{}/ecs/thing-count/{}", s.account, s.region, self.status)]
        }
    }

    fn scope() -> Scope {
        Scope { account: "000000000000".into(), region: "us-east-1".into() }
    }

    fn thing(status: &str) -> Thing {
        Thing { name: "a".into(), status: status.into() }
    }

    #[test]
    fn a_status_change_moves_the_index_row_in_the_same_transaction() {
        let s = scope();
        let old = Stored { key: thing("ACTIVE").key(&s), value: thing("ACTIVE"), mod_revision: 7 };
        let txn = Txn::new().put_record(&s, &Before::of(&s, &old), &thing("INACTIVE"));
        assert_eq!(txn.compare.len(), 1);
        let keys: Vec<String> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(k, _) => format!("put {k}"),
                Op::Delete(k) => format!("delete {k}"),
                Op::DeletePrefix(k) => format!("delete-prefix {k}"),
                Op::Add(k, d) => format!("add {d} {k}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "put /000000000000/us-east-1/ecs/thing/a",
                "delete /000000000000/us-east-1/ecs/thing-status/ACTIVE/a",
                "put /000000000000/us-east-1/ecs/thing-status/INACTIVE/a",
                "add -1 /000000000000/us-east-1/ecs/thing-count/ACTIVE",
                "add 1 /000000000000/us-east-1/ecs/thing-count/INACTIVE",
            ]
        );
        // Nothing indexed or counted changes: only the record is written.
        let txn = Txn::new().put_record(&s, &Before::of(&s, &old), &thing("ACTIVE"));
        assert_eq!(txn.ops.len(), 1);
        // A new record requires its key to be absent and writes its rows and counts.
        let txn = Txn::new().put_record(&s, &Before::absent(), &thing("ACTIVE"));
        assert_eq!(txn.compare, [gantry_store::Compare::ModRevision(thing("A").key(&s), 0)]);
        assert_eq!(txn.ops.len(), 3);
        // A deleted record takes its rows and its counts with it, guarded by its revision.
        let txn = Txn::new().delete_record(&Before::of(&s, &old));
        assert_eq!(txn.compare, [gantry_store::Compare::ModRevision(old.key.clone(), 7)]);
        assert_eq!(
            txn.ops,
            [
                Op::Delete(old.key.clone()),
                Op::Delete("/000000000000/us-east-1/ecs/thing-status/ACTIVE/a".into()),
                Op::Add("/000000000000/us-east-1/ecs/thing-count/ACTIVE".into(), -1),
            ]
        );
    }
}

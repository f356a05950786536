//! The record layer's writes (`gantry_runtime::records`): each record type declares, once, its
//! key, the secondary index rows it implies and the counters it contributes to ([`Record`]), and
//! every write that creates a record or may change what it indexes or counts goes through
//! [`TxnExt::put_record`] / [`TxnExt::delete_record`], which keep the index rows and counters in
//! the same compare-and-swap transaction as the record. Operations never write index rows or
//! counters by hand.

pub(crate) use gantry_runtime::records::{Before, Record, Row, TxnExt};

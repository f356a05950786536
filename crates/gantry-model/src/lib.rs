//! The shapes of Amazon ECS's JSON API, generated from botocore's service model by
//! `tools/gen-model.py` and never edited by hand.
//!
//! Every request, response and resource structure that the ECS API defines is here, spelled as AWS
//! spells it on the wire. This crate knows nothing of HTTP, storage or validation: required
//! members are plain fields so that deserialization rejects a request without them, enum-typed
//! members are strings that the domain validates with ECS's own messages.

#[rustfmt::skip]
mod generated;

pub use generated::*;

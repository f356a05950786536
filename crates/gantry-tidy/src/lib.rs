//! The tidy test: the invariants ARCHITECTURE.md states that the compiler does not enforce on
//! its own, checked on the workspace's sources and `Cargo.toml`s by `tests/tidy.rs` (no clock or
//! randomness outside their modules, stored records decoded only by the record layer, wire formats
//! and HTTP in their crates, service crates independent, pure crates free of tokio, generated
//! models, crate docs and lints, no sleeps or ignored tests). Run it with
//! `cargo test -p gantry-tidy`; the rules and their allowlists are tables at the top of that file.
//! The crate has no code of its own.

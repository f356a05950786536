//! The Docker Engine runtime (to be written).

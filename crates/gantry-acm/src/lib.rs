//! ACM.

//! gantry-sigv4's integration tests, in one binary: AWS's published suite and botocore's vectors.

mod aws_suite;
mod botocore;

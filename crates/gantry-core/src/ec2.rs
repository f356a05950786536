//! Common EC2 instance types and what a container instance of each declares: the table that
//! Auto Scaling groups' `gantry-sim` and `gantry-local` instances register with, and that ECS's
//! managed scaling sizes new instances by.

/// Name, vCPUs, memory (GiB; 0 for half a GiB).
pub const TYPES: &[(&str, i64, i64)] = &[
    ("t3.nano", 2, 0),
    ("t3.micro", 2, 1),
    ("t3.small", 2, 2),
    ("t3.medium", 2, 4),
    ("t3.large", 2, 8),
    ("t3.xlarge", 4, 16),
    ("t3.2xlarge", 8, 32),
    ("t3a.medium", 2, 4),
    ("t3a.large", 2, 8),
    ("t4g.medium", 2, 4),
    ("t4g.large", 2, 8),
    ("m5.large", 2, 8),
    ("m5.xlarge", 4, 16),
    ("m5.2xlarge", 8, 32),
    ("m5.4xlarge", 16, 64),
    ("m6i.large", 2, 8),
    ("m6i.xlarge", 4, 16),
    ("m6i.2xlarge", 8, 32),
    ("m6g.large", 2, 8),
    ("m6g.xlarge", 4, 16),
    ("m7g.large", 2, 8),
    ("m7g.xlarge", 4, 16),
    ("c5.large", 2, 4),
    ("c5.xlarge", 4, 8),
    ("c5.2xlarge", 8, 16),
    ("c6i.large", 2, 4),
    ("c6i.xlarge", 4, 8),
    ("c6g.large", 2, 4),
    ("r5.large", 2, 16),
    ("r5.xlarge", 4, 32),
    ("r6i.large", 2, 16),
];

/// What a container instance of the type registers: CPU units (1,024 per vCPU) and memory in
/// MiB (the machine's less 256 MiB the OS keeps, as the ECS agent reports it).
pub fn resources(instance_type: &str) -> Option<(i64, i64)> {
    let &(_, vcpu, gib) = TYPES.iter().find(|(n, _, _)| *n == instance_type)?;
    let mib = if gib == 0 { 512 } else { gib * 1024 };
    Some((vcpu * 1024, mib - 256))
}

/// The type's name as a static string, if the table has it.
pub fn known(instance_type: &str) -> Option<&'static str> {
    TYPES.iter().find(|(n, _, _)| *n == instance_type).map(|t| t.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn t3_medium_is_two_vcpus_and_four_gib() {
        assert_eq!(super::resources("t3.medium"), Some((2048, 3840)));
        assert_eq!(super::resources("t3.nano"), Some((2048, 256)));
        assert_eq!(super::resources("x9.huge"), None);
    }
}

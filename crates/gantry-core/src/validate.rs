//! ECS's validation rules for names, tags and resource sizes.

use crate::error::{EcsError, Result};
use gantry_model::Tag;

/// ECS resource names (clusters, families, containers, capacity providers): 1 to 255 letters,
/// digits, hyphens and underscores.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The most tags a resource may carry.
pub const MAX_TAGS: usize = 50;

fn tag_chars_ok(s: &str) -> bool {
    s.chars().all(|c| c.is_alphanumeric() || c == ' ' || "+-=._:/@".contains(c))
}

/// Checks tags as ECS does: key 1-128 and value 0-256 characters from letters, digits, spaces and
/// `+ - = . _ : / @`; no `aws:` prefix on keys; at most 50 per resource (counted by the caller on
/// the merged set through [`check_tag_count`]).
pub fn validate_tags(tags: &[Tag]) -> Result<()> {
    for t in tags {
        let key = t.key.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 || !tag_chars_ok(key) {
            return Err(EcsError::invalid(format!(
                "Invalid tag key '{key}': tag keys must be 1-128 characters from letters, numbers, spaces and + - = . _ : / @."
            )));
        }
        if value.chars().count() > 256 || !tag_chars_ok(value) {
            return Err(EcsError::invalid(format!(
                "Invalid tag value '{value}' for key '{key}': tag values must be 0-256 characters from letters, numbers, spaces and + - = . _ : / @."
            )));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(EcsError::invalid(format!("Tag key '{key}' uses the reserved prefix 'aws:'.")));
        }
    }
    check_tag_count(tags.len())
}

pub fn check_tag_count(n: usize) -> Result<()> {
    if n > MAX_TAGS {
        return Err(EcsError::invalid(format!(
            "A resource can have at most {MAX_TAGS} tags, but {n} were given."
        )));
    }
    Ok(())
}

/// Merges `new` into `existing` (same key replaces the value), keeping first-seen order.
pub fn merge_tags(existing: &mut Vec<Tag>, new: &[Tag]) {
    for t in new {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
}

/// Task-level CPU: an integer of CPU units ("512") or vCPUs ("1 vCPU", "0.5 vcpu", "2vCPU").
/// Returns CPU units.
pub fn parse_task_cpu(s: &str) -> Option<i64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(num) = lower.strip_suffix("vcpu") {
        let v: f64 = num.trim().parse().ok()?;
        let units = v * 1024.0;
        if v > 0.0 && units.fract() == 0.0 && units.is_finite() {
            return Some(units as i64);
        }
        return None;
    }
    let v: i64 = t.parse().ok()?;
    (v > 0).then_some(v)
}

/// Task-level memory: MiB as an integer ("1024") or GB ("1 GB", "0.5gb", "2GB"). Returns MiB.
pub fn parse_task_memory(s: &str) -> Option<i64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    if let Some(num) = lower.strip_suffix("gb") {
        let v: f64 = num.trim().parse().ok()?;
        let mib = v * 1024.0;
        if v > 0.0 && mib.fract() == 0.0 && mib.is_finite() {
            return Some(mib as i64);
        }
        return None;
    }
    if let Some(num) = lower.strip_suffix("mb").or_else(|| lower.strip_suffix("mib")) {
        let v: i64 = num.trim().parse().ok()?;
        return (v > 0).then_some(v);
    }
    let v: i64 = t.parse().ok()?;
    (v > 0).then_some(v)
}

/// The memory values (MiB) Fargate accepts for a CPU size, or `None` for an unsupported CPU size.
pub fn fargate_memory_options(cpu: i64) -> Option<Vec<i64>> {
    let range = |lo: i64, hi: i64, step: i64| (lo..=hi).step_by(step as usize).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// Checks a Fargate task size, with ECS's message when the combination does not exist.
pub fn check_fargate_size(cpu: i64, memory: i64) -> Result<()> {
    match fargate_memory_options(cpu) {
        Some(opts) if opts.contains(&memory) => Ok(()),
        _ => Err(EcsError::client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn names() {
        let long = "a".repeat(255);
        for ok in ["a", "web-api_2", long.as_str()] {
            assert!(is_valid_name(ok), "{ok}");
        }
        let too_long = "a".repeat(256);
        for bad in ["", "a b", "a/b", "a:b", "ü", too_long.as_str()] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn cpu_strings() {
        let cases = [
            ("512", Some(512)),
            ("1 vCPU", Some(1024)),
            ("1vcpu", Some(1024)),
            ("0.25 vCPU", Some(256)),
            ("2 VCPU", Some(2048)),
            ("0", None),
            ("-1", None),
            ("abc", None),
            ("0.1 vCPU", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_task_cpu(s), want, "{s}");
        }
    }

    #[test]
    fn memory_strings() {
        let cases = [
            ("1024", Some(1024)),
            ("1 GB", Some(1024)),
            ("1GB", Some(1024)),
            ("0.5 gb", Some(512)),
            ("512 MB", Some(512)),
            ("0", None),
            ("lots", None),
            ("1 TB", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_task_memory(s), want, "{s}");
        }
    }

    #[test]
    fn fargate_sizes() {
        for (cpu, mem, ok) in [
            (256, 512, true),
            (256, 4096, false),
            (512, 1024, true),
            (512, 1536, false),
            (1024, 8192, true),
            (4096, 30720, true),
            (8192, 20480, true),
            (8192, 18432, false),
            (16384, 122880, true),
            (300, 1024, false),
        ] {
            assert_eq!(check_fargate_size(cpu, mem).is_ok(), ok, "{cpu}/{mem}");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tags(&[tag("team", "web"), tag("a b:c/d@e", "")]).is_ok());
        assert!(validate_tags(&[tag("", "x")]).is_err());
        assert!(validate_tags(&[tag("aws:thing", "x")]).is_err());
        assert!(validate_tags(&[tag("AWS:thing", "x")]).is_err());
        assert!(validate_tags(&[tag("k", &"v".repeat(257))]).is_err());
        assert!(validate_tags(&[tag(&"k".repeat(129), "v")]).is_err());
        assert!(validate_tags(&[tag("k#", "v")]).is_err());
        // Multi-byte characters are letters like any other, never a slicing hazard.
        assert!(validate_tags(&[tag("ünï", "v"), tag("aw\u{fc}:x", "ü")]).is_ok());
        let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(validate_tags(&many).is_err());
        let mut existing = vec![tag("a", "1"), tag("b", "2")];
        merge_tags(&mut existing, &[tag("b", "3"), tag("c", "4")]);
        assert_eq!(existing, vec![tag("a", "1"), tag("b", "3"), tag("c", "4")]);
    }
}

//! IAM's `*` and `?` wildcards. `*` matches any run of characters (none included), `?` exactly
//! one. Actions compare case-insensitively; resources, ARNs and strings case-sensitively, an ARN
//! one colon-separated part at a time (a wildcard never spans the colons of the first five
//! parts). `\u{1}` and `\u{2}` in a pattern stand for a literal `*` and `?` (the policy
//! variables `${*}` and `${?}`).

/// Case-sensitive match of `text` against `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), false)
}

/// Case-insensitive match (ASCII), for actions.
pub fn matches_ignore_case(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), true)
}

/// An ARN pattern against an ARN: `*` alone matches anything; otherwise both split into the six
/// parts `arn:partition:service:region:account:resource` and each part matched on its own (the
/// resource part keeps its colons). A pattern of fewer parts matches no ARN; a resource that is not
/// an ARN is matched whole.
pub fn matches_arn(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match (split6(pattern), split6(arn)) {
        (Some(p), Some(a)) => p.iter().zip(a.iter()).all(|(p, a)| matches(p, a)),
        (None, Some(_)) => false,
        _ => matches(pattern, arn),
    }
}

fn split6(s: &str) -> Option<[&str; 6]> {
    let mut it = s.splitn(6, ':');
    let parts = [it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?];
    Some(parts)
}

/// Iterative glob with one backtrack point: linear in practice, never exponential.
fn glob(p: &[u8], t: &[u8], fold: bool) -> bool {
    let eq = |a: u8, b: u8| {
        let a = match a {
            1 => b'*',
            2 => b'?',
            a => a,
        };
        if fold { a.eq_ignore_ascii_case(&b) } else { a == b }
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == b'?' || eq(p[pi], t[ti])) {
            // `?` is one character: step over a whole UTF-8 sequence.
            if p[pi] == b'?' {
                ti += utf8_len(t[ti]);
            } else {
                ti += 1;
            }
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            let next = st + utf8_len(t[st]);
            star = Some((sp, next));
            ti = next;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", ""));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("a?c", "aéc"));
        assert!(!matches("abc", "ABC"));
        assert!(matches_ignore_case("ecs:describe*", "ecs:DescribeClusters"));
        assert!(matches("\u{1}", "*"));
        assert!(!matches("\u{1}", "x"));
        assert!(matches_arn("arn:aws:ecs:*:*:cluster/*", "arn:aws:ecs:us-east-1:1:cluster/a"));
        // A pattern of fewer parts matches no ARN: `*` never spans the parts.
        assert!(!matches_arn("arn:aws:ecs:*", "arn:aws:ecs:us-east-1:1:cluster/a"));
        assert!(!matches_arn("arn:aws:ecs:*:*:cluster/*", "arn:aws:ecs:us-east-1:1:service/c/a"));
        assert!(matches_arn("arn:aws:ecs:*:*:*", "arn:aws:ecs:us-east-1:1:cluster/a"));
        assert!(!matches_arn("arn:aws:ecs:us-*:*:cluster/a", "arn:aws:ecs:eu-west-1:1:cluster/a"));
        assert!(matches_arn("arn:aws:ecs:*:*:task/c/*", "arn:aws:ecs:r:1:task/c/abc"));
    }
}

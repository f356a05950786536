//! `maxResults`/`nextToken` pagination, shared by every List* call.
//!
//! A token is the hex encoding of the last key returned, so a page resumes strictly after it even
//! when items were added or removed between calls, as ECS's tokens do.

use crate::error::{EcsError, Result};

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Resume strictly after this key.
    pub after: Option<String>,
    pub limit: usize,
}

impl PageRequest {
    /// Validates `maxResults` against `1..=max` (ECS's bounds for the call) and decodes the token.
    pub fn new(
        max_results: Option<i32>,
        next_token: Option<&str>,
        default: usize,
        max: usize,
    ) -> Result<Self> {
        let limit = match max_results {
            None => default,
            Some(n) if n >= 1 && n as usize <= max => n as usize,
            Some(n) => {
                return Err(EcsError::invalid(format!(
                    "maxResults must be between 1 and {max}, but was {n}."
                )));
            }
        };
        let after = match next_token {
            None | Some("") => None,
            Some(t) => {
                Some(decode_token(t).ok_or_else(|| EcsError::invalid(format!("Invalid nextToken: {t}")))?)
            }
        };
        Ok(PageRequest { after, limit })
    }
}

/// The token that resumes after `key`.
pub fn encode_token(key: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(key.len() * 2 + 2);
    s.push_str("gt");
    for b in key.bytes() {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The key a token resumes after, if it is one of [`encode_token`]'s.
pub fn decode(t: &str) -> Option<String> {
    decode_token(t)
}

fn decode_token(t: &str) -> Option<String> {
    let hex = t.strip_prefix("gt")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Cuts `items` (already sorted by key and starting after the request's key) to one page and
/// gives the token for the next, if there is more.
pub fn paginate<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if items.len() > limit {
        items.truncate(limit);
        let token = items.last().map(|i| encode_token(&key(i)));
        (items, token)
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for k in ["", "a/b", "family:12", "ü"] {
            assert_eq!(decode_token(&encode_token(k)).as_deref(), Some(k));
        }
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("gt0"), None);
        assert_eq!(decode_token("gtzz"), None);
    }

    #[test]
    fn bounds() {
        assert_eq!(PageRequest::new(None, None, 100, 100).unwrap().limit, 100);
        assert_eq!(PageRequest::new(Some(1), None, 100, 100).unwrap().limit, 1);
        for bad in [0, -1, 101] {
            assert!(PageRequest::new(Some(bad), None, 100, 100).is_err());
        }
        assert!(PageRequest::new(None, Some("bogus"), 100, 100).is_err());
        let p = PageRequest::new(None, Some(&encode_token("k")), 10, 100).unwrap();
        assert_eq!(p.after.as_deref(), Some("k"));
    }

    #[test]
    fn pages() {
        let (page, next) = paginate(vec![1, 2, 3], 2, |i| i.to_string());
        assert_eq!(page, vec![1, 2]);
        assert_eq!(next, Some(encode_token("2")));
        let (page, next) = paginate(vec![1, 2], 2, |i| i.to_string());
        assert_eq!((page, next), (vec![1, 2], None));
    }
}

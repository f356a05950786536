//! Rule conditions, evaluated as ALB does: the conditions of a rule must all match, and a
//! condition matches when any of its values does. Pure: no I/O.

use crate::config::Condition;
use http::HeaderMap;
use std::net::IpAddr;

/// What the conditions look at in a request.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
    /// The host without its port (`Host`, or HTTP/2's `:authority`).
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub source: IpAddr,
}

/// Whether every condition matches.
pub fn matches_all(conditions: &[Condition], req: &RequestView<'_>) -> bool {
    conditions.iter().all(|c| matches(c, req))
}

fn matches(condition: &Condition, req: &RequestView<'_>) -> bool {
    match condition {
        Condition::PathPattern(patterns) => {
            patterns.iter().any(|p| glob(p.as_bytes(), req.path.as_bytes(), false))
        }
        Condition::HostHeader(patterns) => {
            let Some(host) = req.host else { return false };
            patterns.iter().any(|p| glob(p.as_bytes(), host.as_bytes(), true))
        }
        Condition::HttpHeader { name, values } => req.headers.get_all(name.as_str()).iter().any(|v| {
            let v = v.as_bytes();
            values.iter().any(|p| glob(p.as_bytes(), v, true))
        }),
        Condition::HttpRequestMethod(methods) => methods.iter().any(|m| m == req.method),
        Condition::QueryString(pairs) => {
            let Some(query) = req.query else { return false };
            let parsed = parse_query(query);
            pairs.iter().any(|(key, value)| {
                parsed.iter().any(|(k, v)| {
                    key.as_ref().is_none_or(|key| glob(key.as_bytes(), k.as_bytes(), true))
                        && glob(value.as_bytes(), v.as_bytes(), true)
                })
            })
        }
        Condition::SourceIp(cidrs) => cidrs.iter().any(|c| c.contains(req.source)),
    }
}

/// `*` matches any run of characters (none included), `?` exactly one.
pub fn glob(pattern: &[u8], text: &[u8], ignore_case: bool) -> bool {
    let eq = |a: u8, b: u8| if ignore_case { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == b'?' || eq(pattern[p], text[t])) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The query's `key=value` pairs, percent-decoded (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn check(
        condition: Condition,
        method: &str,
        uri_path: &str,
        query: Option<&str>,
        host: Option<&str>,
        want: bool,
    ) {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "Mozilla/5.0 (X11) Firefox".parse().unwrap());
        headers.append("x-tenant", "blue".parse().unwrap());
        headers.append("x-tenant", "Green".parse().unwrap());
        let req = RequestView {
            method,
            path: uri_path,
            query,
            host,
            headers: &headers,
            source: "10.1.2.3".parse().unwrap(),
        };
        assert_eq!(
            matches(&condition, &req),
            want,
            "{condition:?} on {method} {uri_path} {query:?} {host:?}"
        );
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn globs() {
        for (p, t, ci, want) in [
            ("/api/*", "/api/", false, true),
            ("/api/*", "/api/v1/x", false, true),
            ("/api/*", "/API/v1", false, false),
            ("/api/*", "/API/v1", true, true),
            ("/img/*.png", "/img/a/b.png", false, true),
            ("/img/*.png", "/img/a/b.jpg", false, false),
            ("/v?/x", "/v1/x", false, true),
            ("/v?/x", "/v10/x", false, false),
            ("*", "", false, true),
            ("a*b*c", "aXXbYYc", false, true),
            ("a*b*c", "aXXbYY", false, false),
            ("*.example.com", "www.example.com", true, true),
            ("*.example.com", "example.com", true, false),
            ("", "", false, true),
            ("", "x", false, false),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes(), ci), want, "{p} vs {t}");
        }
    }

    #[test]
    fn conditions() {
        check(Condition::PathPattern(v(&["/api/*", "/health"])), "GET", "/health", None, None, true);
        check(Condition::PathPattern(v(&["/api/*"])), "GET", "/web", None, None, false);
        check(Condition::HostHeader(v(&["*.example.com"])), "GET", "/", None, Some("API.example.com"), true);
        check(Condition::HostHeader(v(&["*.example.com"])), "GET", "/", None, None, false);
        check(
            Condition::HttpHeader { name: "User-Agent".into(), values: v(&["*firefox*"]) },
            "GET",
            "/",
            None,
            None,
            true,
        );
        check(
            Condition::HttpHeader { name: "x-tenant".into(), values: v(&["green"]) },
            "GET",
            "/",
            None,
            None,
            true,
        );
        check(
            Condition::HttpHeader { name: "x-other".into(), values: v(&["*"]) },
            "GET",
            "/",
            None,
            None,
            false,
        );
        check(Condition::HttpRequestMethod(v(&["POST", "PUT"])), "PUT", "/", None, None, true);
        check(Condition::HttpRequestMethod(v(&["POST"])), "post", "/", None, None, false);
        let q =
            |k: Option<&str>, val: &str| Condition::QueryString(vec![(k.map(String::from), val.to_string())]);
        check(q(Some("version"), "v1"), "GET", "/", Some("a=1&version=V1"), None, true);
        check(q(Some("version"), "v*"), "GET", "/", Some("version=2"), None, false);
        check(q(None, "blue"), "GET", "/", Some("color=blue"), None, true);
        check(q(Some("name"), "a b"), "GET", "/", Some("name=a%20b"), None, true);
        check(q(Some("name"), "a b"), "GET", "/", Some("name=a+b"), None, true);
        check(q(Some("x"), "1"), "GET", "/", None, None, false);
        let cidr = |s: &[&str]| Condition::SourceIp(s.iter().map(|c| Cidr::parse(c).unwrap()).collect());
        check(cidr(&["10.0.0.0/8"]), "GET", "/", None, None, true);
        check(cidr(&["192.168.0.0/16", "10.1.2.3/32"]), "GET", "/", None, None, true);
        check(cidr(&["10.1.3.0/24"]), "GET", "/", None, None, false);
        check(cidr(&["0.0.0.0/0"]), "GET", "/", None, None, true);
    }

    #[test]
    fn cidrs() {
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0").is_none());
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let v4 = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(v4.contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}

//! The task credentials endpoint: what an AWS SDK inside a task finds through
//! `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` at `http://169.254.170.2` (`GET
//! /v2/credentials/ID`), in the ECS agent's JSON: `RoleArn`, `AccessKeyId`, `SecretAccessKey`,
//! `Token` and `Expiration`.
//!
//! Each task with a role gets a credentials ID of its own (128 random bits from the OS, a
//! UUID), which only its containers' environment holds. The credentials are an STS session of
//! the role named after the task, which the agent asks the control plane for over its signed
//! channel when the task starts and again at half their life (ECS renews them well before they
//! expire); they are kept in memory only, never logged and never written to disk.
//!
//! Isolation: an ID is served only to a connection whose source address is one of its own
//! task's (a bridge-mode container's address, or an awsvpc task's namespace address); any
//! other caller gets the ECS agent's `InvalidIdInRequest` answer, as for an ID it does not know.
//! A host-network task's containers share the host's addresses, so for them the ID alone is the
//! capability (as in ECS).
//!
//! How 169.254.170.2:80 reaches the agent: [`Redirect`] (the host's netfilter, [`Iptables`])
//! redirects TCP to 169.254.170.2:80 from each of the task's interfaces to the agent's endpoint
//! port, as the ECS agent's DNAT rule does, but per task so that several agents on one host each
//! get their own tasks' requests. An interface is told by its MAC address ([`mac_address`]),
//! which the agent chooses when it creates the container, so the route exists before the
//! container's first instruction runs. This module keeps the store and renders; the agent's
//! task runner installs and removes the redirects.

use gantry_core::protocol::TaskCredentials;
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// The address the endpoint is reached at inside a task's network.
pub const ENDPOINT_IP: &str = "169.254.170.2";
/// The path prefix of the endpoint (the variable's value is this plus the ID).
pub const PATH_PREFIX: &str = "/v2/credentials/";

/// One task's credentials as the endpoint holds them.
#[derive(Debug, Clone)]
pub struct Entry {
    pub task_arn: String,
    /// Engine IDs of the containers whose addresses may ask (the awsvpc namespace holder, or
    /// each bridge-mode container), looked up when an unknown address asks.
    pub engine_ids: Vec<String>,
    /// Addresses known to be the task's.
    pub addresses: Vec<IpAddr>,
    /// Whether the task shares the host's network (no address check is possible).
    pub host_network: bool,
    /// The current credentials; none until the control plane gave some.
    pub credentials: Option<TaskCredentials>,
    /// When to ask for new ones (epoch seconds).
    pub refresh_at: i64,
}

/// When credentials expiring at `expiration` and received at `now` are renewed: at half their
/// remaining life, so a failed renewal has time to be retried long before they expire.
pub fn refresh_at(now: i64, expiration: i64) -> i64 {
    now + (expiration - now).max(0) / 2
}

/// The credentials IDs the agent serves.
#[derive(Debug, Default)]
pub struct Store {
    entries: Mutex<HashMap<String, Entry>>,
    /// Woken when an entry is added or gets new credentials (its renewal time may be sooner).
    changed: tokio::sync::Notify,
}

impl Store {
    pub fn insert(&self, id: &str, entry: Entry) {
        self.lock().insert(id.to_string(), entry);
        self.changed.notify_one();
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().get(id).cloned()
    }

    /// Changes one entry, if it is still there.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().get_mut(id) {
            f(e);
        }
    }

    /// Keeps new credentials for an entry, renewed at `refresh_at`.
    pub fn set_credentials(&self, id: &str, credentials: TaskCredentials, refresh_at: i64) {
        if let Some(e) = self.lock().get_mut(id) {
            e.credentials = Some(credentials);
            e.refresh_at = refresh_at;
        }
        self.changed.notify_one();
    }

    /// Returns once an entry was added or got new credentials since the last call returned.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The soonest renewal time among the entries that have credentials (epoch seconds).
    pub fn next_refresh(&self) -> Option<i64> {
        self.lock().values().filter(|e| e.credentials.is_some()).map(|e| e.refresh_at).min()
    }

    /// The IDs (and task ARNs) whose credentials are due for renewal at `now`.
    pub fn due(&self, now: i64) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.credentials.is_none() || e.refresh_at <= now)
            .map(|(id, e)| (id.clone(), e.task_arn.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A credentials ID: a random (version 4) UUID from 16 random bytes.
pub fn new_id(secrets: &dyn gantry_core::SecretGen) -> String {
    let mut b = [0u8; 16];
    secrets.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The ECS agent's answer for an ID it holds no credentials for (or that the caller may not
/// have): HTTP 400.
pub fn not_found() -> (u16, Vec<u8>) {
    let body = json!({"code": "InvalidIdInRequest", "message": "CredentialsV2Request: Credentials not found",
        "HTTPErrorCode": 400});
    (400, body.to_string().into_bytes())
}

/// The ECS agent's answer to `/v2/credentials/` without an ID.
pub fn no_id() -> (u16, Vec<u8>) {
    let body = json!({"code": "NoIdInRequest", "message": "CredentialsV2Request: No ID in the request",
        "HTTPErrorCode": 400});
    (400, body.to_string().into_bytes())
}

/// The credentials document, as the ECS agent serves it (`Expiration` in RFC 3339, seconds).
pub fn document(c: &TaskCredentials) -> Vec<u8> {
    let expiration = gantry_core::civil::rfc3339(c.expiration, 0, 0);
    json!({
        "RoleArn": c.role_arn,
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key.expose(),
        "Token": c.session_token.expose(),
        "Expiration": expiration,
    })
    .to_string()
    .into_bytes()
}

/// Whether `peer` may read `entry`: one of the task's addresses, or anyone for a host-network
/// task. `None` when the task's addresses must be looked up first.
pub fn allowed(entry: &Entry, peer: IpAddr) -> Option<bool> {
    if entry.host_network || entry.addresses.contains(&peer) {
        return Some(true);
    }
    None
}

/// The MAC address of a task's container (`name`; the awsvpc namespace holder's too) on its
/// bridge: locally administered and unicast (`0a:` then 40 bits of an FNV-1a hash of the task
/// ARN and the name), so that it is chosen before the container exists and differs between
/// containers.
pub fn mac_address(task_arn: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in task_arn.bytes().chain([0]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    format!("0a:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[3], b[4], b[5], b[6], b[7])
}

/// The per-interface redirect of 169.254.170.2:80 to the agent's endpoint port.
pub trait Redirect: Send + Sync + 'static {
    /// Sends TCP from the interface `mac` to 169.254.170.2:80 to this host's `port`, under `tag`.
    fn add(&self, mac: &str, port: u16, tag: &str) -> Result<(), String>;
    /// Removes every redirect made under `tag`.
    fn remove(&self, tag: &str);
    /// Every redirect on the host (any agent's), as (MAC address in lower case, its removal).
    fn all(&self) -> Vec<(String, Removal)> {
        Vec::new()
    }
    /// Removes one redirect that [`Redirect::all`] listed.
    fn remove_one(&self, _removal: &Removal) {}
}

/// How to remove one redirect (for iptables, the rule's delete arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal(pub Vec<String>);

/// The redirects of interfaces that no longer exist: a redirect whose MAC address no container
/// has. Read the redirects before the containers: a container is created before its redirect,
/// so a redirect listed first has its container in the later list unless it is gone.
pub fn stale(
    redirects: Vec<(String, Removal)>,
    live_macs: &std::collections::HashSet<String>,
) -> Vec<Removal> {
    redirects.into_iter().filter(|(mac, _)| !live_macs.contains(mac)).map(|(_, r)| r).collect()
}

/// The redirects of `listing` (`iptables -S PREROUTING`), any agent's, with their MAC addresses.
pub fn redirects(listing: &str) -> Vec<(String, Removal)> {
    listing
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING ") && l.contains("gantry-creds:"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mac = words.iter().position(|w| *w == "--mac-source").and_then(|i| words.get(i + 1))?;
            let mut args: Vec<String> = words.iter().map(|w| w.trim_matches('"').to_string()).collect();
            args[0] = "-D".into();
            Some((mac.to_ascii_lowercase(), Removal(args)))
        })
        .collect()
}

/// The host's netfilter, through `iptables` (nat table, PREROUTING: what a container sends
/// arrives on its bridge, from its MAC address; REDIRECT sends it to the bridge's own address at
/// `port`, where the agent listens on every interface). Needs root, as the ECS agent does.
#[derive(Debug, Default)]
pub struct Iptables;

fn rule(mac: &str, port: u16, tag: &str) -> Vec<String> {
    [
        "-m",
        "mac",
        "--mac-source",
        mac,
        "-d",
        &format!("{ENDPOINT_IP}/32"),
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "80",
        "-m",
        "comment",
        "--comment",
        tag,
        "-j",
        "REDIRECT",
        "--to-ports",
        &port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn iptables(args: &[String]) -> Result<String, String> {
    let out = std::process::Command::new("iptables")
        .args(["-w", "5", "-t", "nat"])
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("iptables: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The rules of `listing` (`iptables -S PREROUTING`) made under `tag`, as delete arguments.
pub fn tagged(listing: &str, tag: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .filter(|l| {
            l.starts_with("-A PREROUTING ") && l.split_whitespace().any(|w| w.trim_matches('"') == tag)
        })
        .map(|l| {
            // iptables quotes a comment with a colon; the arguments go to it unquoted.
            let mut args: Vec<String> =
                l.split_whitespace().map(|w| w.trim_matches('"').to_string()).collect();
            args[0] = "-D".into();
            args
        })
        .collect()
}

impl Redirect for Iptables {
    fn add(&self, mac: &str, port: u16, tag: &str) -> Result<(), String> {
        let mut args = vec!["-I".to_string(), "PREROUTING".to_string()];
        args.extend(rule(mac, port, tag));
        iptables(&args).map(|_| ())
    }

    fn remove(&self, tag: &str) {
        let Ok(listing) = iptables(&["-S".into(), "PREROUTING".into()]) else { return };
        for args in tagged(&listing, tag) {
            let _ = iptables(&args);
        }
    }

    fn all(&self) -> Vec<(String, Removal)> {
        iptables(&["-S".into(), "PREROUTING".into()]).map(|l| redirects(&l)).unwrap_or_default()
    }

    fn remove_one(&self, removal: &Removal) {
        let _ = iptables(&removal.0);
    }
}

/// The tag of a task's redirects.
pub fn tag(task_arn: &str) -> String {
    format!("gantry-creds:{}", task_arn.rsplit('/').next().unwrap_or_default())
}

/// RFC 3339 UTC time for epoch seconds, as the endpoint prints times.
pub fn rfc3339(epoch_s: f64) -> String {
    let secs = epoch_s.floor() as i64;
    let nanos = ((epoch_s - secs as f64) * 1e9).round().clamp(0.0, 999_999_999.0) as u32;
    gantry_core::civil::rfc3339(secs, nanos, 9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::Secret;

    fn creds() -> TaskCredentials {
        TaskCredentials {
            role_arn: "arn:aws:iam::1:role/app".into(),
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("s3cr3t"),
            session_token: Secret::new("tok"),
            expiration: 1_700_003_600,
        }
    }

    #[test]
    fn the_document_is_the_ecs_agents() {
        let d: serde_json::Value = serde_json::from_slice(&document(&creds())).unwrap();
        assert_eq!(d["RoleArn"], "arn:aws:iam::1:role/app");
        assert_eq!(d["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(d["SecretAccessKey"], "s3cr3t");
        assert_eq!(d["Token"], "tok");
        assert_eq!(d["Expiration"], "2023-11-14T23:13:20Z");
        let (status, body) = not_found();
        assert_eq!(status, 400);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"HTTPErrorCode":400,"code":"InvalidIdInRequest","message":"CredentialsV2Request: Credentials not found"}"#
        );
    }

    #[test]
    fn redirects_of_containers_that_are_gone_are_stale() {
        let listing = "-P PREROUTING ACCEPT\n\
-A PREROUTING -d 169.254.170.2/32 -p tcp -m mac --mac-source 0a:0f:8d:f8:fb:8d -m tcp --dport 80 -m comment --comment \"gantry-creds:01a2\" -j REDIRECT --to-ports 46625\n\
-A PREROUTING -d 169.254.170.2/32 -p tcp -m mac --mac-source 0A:73:F6:DA:C9:0A -m tcp --dport 80 -m comment --comment \"gantry-creds:01a3\" -j REDIRECT --to-ports 39933\n\
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n";
        let all = redirects(listing);
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[1].0, "0a:73:f6:da:c9:0a");
        // The delete arguments are the rule's own, unquoted.
        assert_eq!(all[0].1.0[0], "-D");
        assert!(all[0].1.0.contains(&"gantry-creds:01a2".to_string()));
        assert_eq!(all[0].1.0.last().map(String::as_str), Some("46625"));
        let live: std::collections::HashSet<String> = ["0a:73:f6:da:c9:0a".to_string()].into();
        let gone = stale(all, &live);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].0.contains(&"0a:0f:8d:f8:fb:8d".to_string()));
    }

    #[test]
    fn ids_are_random_uuids() {
        let a = new_id(&gantry_core::OsSecrets);
        let b = new_id(&gantry_core::OsSecrets);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn only_the_tasks_own_addresses_may_read() {
        let mut e = Entry {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            engine_ids: vec![],
            addresses: vec!["172.17.0.5".parse().unwrap()],
            host_network: false,
            credentials: Some(creds()),
            refresh_at: 0,
        };
        assert_eq!(allowed(&e, "172.17.0.5".parse().unwrap()), Some(true));
        assert_eq!(allowed(&e, "172.17.0.6".parse().unwrap()), None);
        e.host_network = true;
        assert_eq!(allowed(&e, "127.0.0.1".parse().unwrap()), Some(true));
    }

    #[test]
    fn renewal_at_half_life_and_due_entries() {
        assert_eq!(refresh_at(1000, 1000 + 3600), 1000 + 1800);
        assert_eq!(refresh_at(1000, 900), 1000);
        let s = Store::default();
        let entry = |refresh_at, credentials| Entry {
            task_arn: "arn:t".into(),
            engine_ids: vec![],
            addresses: vec![],
            host_network: false,
            credentials,
            refresh_at,
        };
        s.insert("a", entry(2000, Some(creds())));
        s.insert("b", entry(5000, Some(creds())));
        s.insert("c", entry(9000, None));
        let mut due: Vec<String> = s.due(3000).into_iter().map(|x| x.0).collect();
        due.sort();
        assert_eq!(due, ["a", "c"]);
    }

    #[test]
    fn tagged_rules_become_deletes() {
        let listing = "-P PREROUTING ACCEPT\n\
            -A PREROUTING -s 172.17.0.5/32 -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment \"gantry-creds:t1\" -j REDIRECT --to-ports 40000\n\
            -A PREROUTING -s 172.17.0.6/32 -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -m comment --comment gantry-creds:t2 -j REDIRECT --to-ports 40000\n\
            -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n";
        let d = tagged(listing, "gantry-creds:t1");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0][0], "-D");
        assert!(d[0].contains(&"172.17.0.5/32".to_string()));
        assert!(d[0].contains(&"gantry-creds:t1".to_string()), "{d:?}");
        assert_eq!(rule("0a:01:02:03:04:05", 1, "x")[3], "0a:01:02:03:04:05");
    }

    #[test]
    fn mac_addresses_are_local_unicast_and_per_container() {
        let a = mac_address("arn:aws:ecs:us-east-1:1:task/c/t1", "web");
        assert_eq!(a, mac_address("arn:aws:ecs:us-east-1:1:task/c/t1", "web"));
        assert_ne!(a, mac_address("arn:aws:ecs:us-east-1:1:task/c/t1", "db"));
        assert_ne!(a, mac_address("arn:aws:ecs:us-east-1:1:task/c/t2", "web"));
        assert!(a.starts_with("0a:") && a.len() == 17, "{a}");
    }
}

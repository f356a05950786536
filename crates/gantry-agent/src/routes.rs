//! awsvpc across hosts: routes between hosts' task subnets, the way flannel's `host-gw` backend
//! works. Each agent given `--task-subnet` puts its awsvpc tasks on that subnet and reports it
//! with its host address as two attributes of its container instance
//! ([`SUBNET_ATTRIBUTE`], [`HOST_ATTRIBUTE`]). Every few seconds ([`REFRESH`]) a [`Keeper`] reads
//! its cluster's container instances (ListContainerInstances, DescribeContainerInstances) and
//! makes this host's routing table and firewall agree:
//!
//! - a route `PEER_SUBNET via PEER_HOST` for every other instance that reported both (replaced
//!   when a peer's host address changes, removed when the peer is deregistered; kept while the
//!   control plane cannot be reached, so a partition changes no route);
//! - with a subnet of its own, a chain [`CHAIN`] jumped to from Docker's `DOCKER-USER` that
//!   accepts into this host's task subnet what comes from a peer's task subnet, a peer's host
//!   address (what Docker masquerades, e.g. the host's own connections) and the server's address (where its load balancers connect from). Docker's
//!   own FORWARD rules would otherwise drop every new connection into the task network;
//! - with a subnet of its own, a chain [`NAT_CHAIN`] jumped to first from `POSTROUTING` that
//!   exempts traffic from its tasks to a peer's task subnet from Docker's masquerade, so a task
//!   sees its peer task's own address (flannel's host-gw does the same).
//!
//! The plans are pure functions ([`peers`], [`route_changes`], [`accept_rules`],
//! [`unmasqueraded`]); [`Keeper`]
//! runs them through `ip` and `iptables` in the network namespace of the process.

use crate::client::{ClientResult, HttpClient};
use gantry_model::{
    ContainerInstance, DescribeContainerInstancesRequest, DescribeContainerInstancesResponse,
    ListContainerInstancesRequest, ListContainerInstancesResponse,
};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The container instance attribute holding the agent's awsvpc task subnet (`10.232.1.0/24`).
pub const SUBNET_ATTRIBUTE: &str = "gantry.task-subnet";
/// The container instance attribute holding the address its peers route that subnet through.
pub const HOST_ATTRIBUTE: &str = "gantry.host-address";
/// The iptables chain (filter table) of the accept rules.
pub const CHAIN: &str = "GANTRY-PEERS";
/// The iptables chain (nat table) that keeps task-to-peer-task traffic unmasqueraded.
pub const NAT_CHAIN: &str = "GANTRY-PEERS-NAT";
/// How often the routes are brought up to date with the cluster.
pub const REFRESH: Duration = Duration::from_secs(5);

/// An IPv4 network, `a.b.c.d/n`, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// A task subnet: an IPv4 network of 8 to 29 prefix bits (room for a gateway and tasks).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not an IPv4 network such as 10.232.1.0/24");
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=29).contains(&prefix) {
            return Err(format!("'{s}': the prefix must be between /8 and /29"));
        }
        let net = Subnet { addr, prefix };
        let network = Ipv4Addr::from(u32::from(addr) & net.mask());
        if network != addr {
            return Err(format!("'{s}' has host bits set (the network is {network}/{prefix})"));
        }
        Ok(net)
    }
}

/// Another host's task subnet and the address it is routed through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub subnet: Subnet,
    pub host: Ipv4Addr,
    pub instance: String,
}

/// The peers among a cluster's container instances: ACTIVE or DRAINING ones that reported a
/// valid task subnet and host address, other than this host (its own subnet or address), by
/// subnet. Of two instances claiming overlapping subnets (a misconfiguration) the one first by
/// ARN is kept, and the other logged.
pub fn peers(instances: &[ContainerInstance], own: Option<Subnet>, own_host: Option<Ipv4Addr>) -> Vec<Peer> {
    let mut found: Vec<Peer> = instances
        .iter()
        .filter(|ci| matches!(ci.status.as_deref(), Some("ACTIVE" | "DRAINING")))
        .filter_map(|ci| {
            let attr = |name: &str| {
                ci.attributes.as_ref()?.iter().find(|a| a.name == name).and_then(|a| a.value.clone())
            };
            let subnet: Subnet = attr(SUBNET_ATTRIBUTE)?.parse().ok()?;
            let host: Ipv4Addr = attr(HOST_ATTRIBUTE)?.parse().ok()?;
            Some(Peer { subnet, host, instance: ci.container_instance_arn.clone().unwrap_or_default() })
        })
        .filter(|p| own_host != Some(p.host) && own.is_none_or(|o| !o.overlaps(p.subnet)))
        .collect();
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    let mut kept: Vec<Peer> = Vec::new();
    for p in found {
        if let Some(k) = kept.iter().find(|k| k.subnet.overlaps(p.subnet)) {
            tracing::warn!(instance = %p.instance, subnet = %p.subnet, other = %k.instance, "task subnet overlaps another instance's: not routed");
            continue;
        }
        kept.push(p);
    }
    kept.sort();
    kept
}

/// The `ip` commands that turn the routes this process installed (subnet → host) into routes to
/// `wanted`.
pub fn route_changes(installed: &BTreeMap<Subnet, Ipv4Addr>, wanted: &[Peer]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for p in wanted {
        if installed.get(&p.subnet) != Some(&p.host) {
            out.push(ip_route("replace", p.subnet, p.host));
        }
    }
    for (subnet, host) in installed {
        if !wanted.iter().any(|p| p.subnet == *subnet) {
            out.push(ip_route("del", *subnet, *host));
        }
    }
    out
}

fn ip_route(verb: &str, subnet: Subnet, host: Ipv4Addr) -> Vec<String> {
    ["ip", "-4", "route", verb, &subnet.to_string(), "via", &host.to_string()].map(String::from).to_vec()
}

/// The rules of [`CHAIN`] (arguments after `iptables -A CHAIN`): accept into `own` what comes
/// from each peer's subnet and host address, and from `also` (the server's address).
pub fn accept_rules(own: Subnet, peers: &[Peer], also: &[Ipv4Addr]) -> Vec<Vec<String>> {
    let mut sources: Vec<String> = peers.iter().map(|p| p.subnet.to_string()).collect();
    sources.extend(peers.iter().map(|p| format!("{}/32", p.host)));
    sources.extend(also.iter().map(|a| format!("{a}/32")));
    let mut seen = std::collections::BTreeSet::new();
    sources
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .map(|s| ["-s", &s, "-d", &own.to_string(), "-j", "ACCEPT"].map(String::from).to_vec())
        .collect()
}

/// The rules of [`NAT_CHAIN`]: what this host's tasks send to a peer's task subnet leaves with
/// the task's own address (`ACCEPT` in the nat table: no masquerade), as in a VPC, where the
/// receiving task sees its caller's IP.
pub fn unmasqueraded(own: Subnet, peers: &[Peer]) -> Vec<Vec<String>> {
    peers
        .iter()
        .map(|p| {
            ["-s", &own.to_string(), "-d", &p.subnet.to_string(), "-j", "ACCEPT"].map(String::from).to_vec()
        })
        .collect()
}

/// Runs one command (`args[0]` is the program) and returns its stdout, or why it failed.
pub type Run = dyn Fn(&[String]) -> Result<String, String> + Send + Sync;

/// Runs a command of this host.
pub fn run_command(args: &[String]) -> Result<String, String> {
    let out = std::process::Command::new(&args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// This host's side of the routing: what it installed, and what it keeps up to date.
pub struct Keeper {
    /// This host's task subnet (none: routes only, e.g. the server's host).
    pub own: Option<Subnet>,
    /// This host's address as its peers route to it.
    pub own_host: Option<Ipv4Addr>,
    /// Other sources accepted into the task subnet (the server's address).
    pub also_accept: Vec<Ipv4Addr>,
    installed: BTreeMap<Subnet, Ipv4Addr>,
    /// The rules last written to each chain (`table/chain`).
    applied: BTreeMap<String, Vec<Vec<String>>>,
    run: Arc<Run>,
}

impl Keeper {
    pub fn new(
        own: Option<Subnet>,
        own_host: Option<Ipv4Addr>,
        also_accept: Vec<Ipv4Addr>,
        run: Arc<Run>,
    ) -> Self {
        Self { own, own_host, also_accept, installed: BTreeMap::new(), applied: BTreeMap::new(), run }
    }

    /// The routes installed, subnet → host.
    pub fn installed(&self) -> &BTreeMap<Subnet, Ipv4Addr> {
        &self.installed
    }

    /// Brings the routes and the firewall up to date with the cluster's instances; returns the
    /// errors (each is retried on the next call).
    pub fn apply(&mut self, instances: &[ContainerInstance]) -> Vec<String> {
        let wanted = peers(instances, self.own, self.own_host);
        let mut errors = Vec::new();
        for cmd in route_changes(&self.installed, &wanted) {
            let subnet: Subnet = cmd[4].parse().expect("a subnet this module wrote");
            let host: Ipv4Addr = cmd[6].parse().expect("an address this module wrote");
            match (self.run)(&cmd) {
                Ok(_) if cmd[3] == "del" => {
                    self.installed.remove(&subnet);
                }
                Ok(_) => {
                    self.installed.insert(subnet, host);
                }
                // Already gone (its link went away with it): forget it.
                Err(e) if cmd[3] == "del" && e.contains("No such process") => {
                    self.installed.remove(&subnet);
                }
                Err(e) => errors.push(e),
            }
        }
        if let Some(own) = self.own {
            let rules = accept_rules(own, &wanted, &self.also_accept);
            let nat = unmasqueraded(own, &wanted);
            if let Err(e) = self.firewall(&rules, &nat) {
                errors.push(e);
            }
        }
        errors
    }

    /// Makes [`CHAIN`] hold `rules` with `DOCKER-USER` jumping to it, and [`NAT_CHAIN`] hold
    /// `nat` with `POSTROUTING` jumping to it first (checked each pass: Docker inserts its
    /// masquerade rule at the top of `POSTROUTING` when it creates a network, and an
    /// administrator may flush a chain).
    fn firewall(&mut self, rules: &[Vec<String>], nat: &[Vec<String>]) -> Result<(), String> {
        if (self.run)(&ipt("filter", &["-S", "DOCKER-USER"])).is_err() {
            return Err(
                "no DOCKER-USER chain: is the Docker engine of this host running with iptables?".into()
            );
        }
        self.chain("filter", "DOCKER-USER", CHAIN, false, rules)?;
        self.chain("nat", "POSTROUTING", NAT_CHAIN, true, nat)
    }

    fn chain(
        &mut self,
        table: &str,
        parent: &str,
        chain: &str,
        first: bool,
        rules: &[Vec<String>],
    ) -> Result<(), String> {
        let run = self.run.clone();
        let key = format!("{table}/{chain}");
        if run(&ipt(table, &["-S", chain])).is_err() {
            run(&ipt(table, &["-N", chain]))?;
            self.applied.remove(&key);
        }
        let jump = format!("-A {parent} -j {chain}");
        let in_place = if first {
            let listing = run(&ipt(table, &["-S", parent]))?;
            listing.lines().find(|l| l.starts_with("-A ")) == Some(jump.as_str())
        } else {
            run(&ipt(table, &["-C", parent, "-j", chain])).is_ok()
        };
        if !in_place {
            // At most a few stale jumps (one per earlier pass that found it out of place).
            for _ in 0..8 {
                if run(&ipt(table, &["-D", parent, "-j", chain])).is_err() {
                    break;
                }
            }
            run(&ipt(table, &["-I", parent, "1", "-j", chain]))?;
        }
        if self.applied.get(&key).map(Vec::as_slice) != Some(rules) {
            self.applied.remove(&key);
            run(&ipt(table, &["-F", chain]))?;
            for r in rules {
                let mut cmd = ipt(table, &["-A", chain]);
                cmd.extend(r.iter().cloned());
                run(&cmd)?;
            }
            self.applied.insert(key, rules.to_vec());
        }
        Ok(())
    }
}

/// An `iptables` command on `table`.
fn ipt(table: &str, args: &[&str]) -> Vec<String> {
    ["iptables", "-t", table].into_iter().chain(args.iter().copied()).map(String::from).collect()
}

/// Every container instance of `cluster`.
pub async fn cluster_instances(client: &HttpClient, cluster: &str) -> ClientResult<Vec<ContainerInstance>> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let req = ListContainerInstancesRequest {
            cluster: Some(cluster.to_string()),
            next_token: next_token.take(),
            max_results: Some(100),
            ..Default::default()
        };
        let page: ListContainerInstancesResponse = client.ecs("ListContainerInstances", &req).await?;
        arns.extend(page.container_instance_arns.unwrap_or_default());
        match page.next_token {
            Some(t) if !t.is_empty() => next_token = Some(t),
            _ => break,
        }
    }
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let req = DescribeContainerInstancesRequest {
            cluster: Some(cluster.to_string()),
            container_instances: chunk.to_vec(),
            ..Default::default()
        };
        let found: DescribeContainerInstancesResponse =
            client.ecs("DescribeContainerInstances", &req).await?;
        out.extend(found.container_instances.unwrap_or_default());
    }
    Ok(out)
}

/// Keeps this host's routes to `cluster`'s task subnets up to date, forever. While the control
/// plane cannot be reached, the routes stay as they are.
pub async fn run(client: Arc<HttpClient>, cluster: String, keeper: Keeper) {
    let mut keeper = Some(keeper);
    loop {
        match cluster_instances(&client, &cluster).await {
            Ok(instances) => {
                let mut k = keeper.take().expect("the keeper is put back");
                let (k, errors) = tokio::task::spawn_blocking(move || {
                    let errors = k.apply(&instances);
                    (k, errors)
                })
                .await
                .expect("the routes are applied");
                for e in errors {
                    tracing::warn!(error = %e, "task subnet routes");
                }
                keeper = Some(k);
            }
            Err(e) => tracing::debug!(error = %e, "cannot list the cluster's instances: routes unchanged"),
        }
        tokio::time::sleep(REFRESH).await;
    }
}

/// The IPv4 addresses of the servers in an agent's `--server` list (`http://10.0.0.1:7360,...`):
/// where load balancers' traffic and health checks come from. Names are left out.
pub fn server_addresses(servers: &str) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = servers
        .split(',')
        .filter_map(|url| {
            let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
            let authority = rest.split('/').next()?;
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            host.parse().ok()
        })
        .collect();
    out.dedup();
    out
}

/// The local address this host reaches `server` from: its address as its peers see it.
pub fn local_address_towards(server: Ipv4Addr) -> Option<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((server, 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_model::Attribute;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

    fn instance(arn: &str, status: &str, subnet: Option<&str>, host: Option<&str>) -> ContainerInstance {
        let mut attributes =
            vec![Attribute { name: "ecs.os-type".into(), value: Some("linux".into()), ..Default::default() }];
        for (n, v) in [(SUBNET_ATTRIBUTE, subnet), (HOST_ATTRIBUTE, host)] {
            if let Some(v) = v {
                attributes.push(Attribute { name: n.into(), value: Some(v.into()), ..Default::default() });
            }
        }
        ContainerInstance {
            container_instance_arn: Some(arn.into()),
            status: Some(status.into()),
            attributes: Some(attributes),
            ..Default::default()
        }
    }

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_parse_and_refuse_what_is_not_a_network() {
        assert_eq!(net("10.232.1.0/24").to_string(), "10.232.1.0/24");
        assert!("10.232.1.5/24".parse::<Subnet>().unwrap_err().contains("10.232.1.0/24"));
        assert!("10.232.1.0".parse::<Subnet>().unwrap_err().contains("'10.232.1.0'"));
        assert!("10.232.1.0/31".parse::<Subnet>().is_err());
        assert!("10.232.1.0/x".parse::<Subnet>().is_err());
        assert!("fd00::/64".parse::<Subnet>().is_err());
        assert!(net("10.232.0.0/16").overlaps(net("10.232.7.0/27")));
        assert!(!net("10.232.7.0/27").overlaps(net("10.232.7.32/27")));
        assert!(net("10.232.7.32/27").contains("10.232.7.33".parse().unwrap()));
        assert!(!net("10.232.7.32/27").contains("10.232.7.64".parse().unwrap()));
    }

    #[test]
    fn peers_are_the_other_active_instances_that_reported_both_attributes() {
        let instances = vec![
            instance("arn:c", "ACTIVE", Some("10.232.1.64/27"), Some("10.231.0.13")),
            instance("arn:me", "ACTIVE", Some("10.232.1.0/27"), Some("10.231.0.11")),
            instance("arn:b", "DRAINING", Some("10.232.1.32/27"), Some("10.231.0.12")),
            instance("arn:gone", "INACTIVE", Some("10.232.1.96/27"), Some("10.231.0.14")),
            instance("arn:nosubnet", "ACTIVE", None, Some("10.231.0.15")),
            instance("arn:nohost", "ACTIVE", Some("10.232.1.128/27"), None),
            instance("arn:bad", "ACTIVE", Some("10.232.1.161/27"), Some("10.231.0.16")),
            // Overlaps c's subnet: c (first by ARN) keeps it.
            instance("arn:d", "ACTIVE", Some("10.232.1.64/26"), Some("10.231.0.17")),
        ];
        let got = peers(&instances, Some(net("10.232.1.0/27")), Some("10.231.0.11".parse().unwrap()));
        let got: Vec<(String, String, &str)> =
            got.iter().map(|p| (p.subnet.to_string(), p.host.to_string(), p.instance.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("10.232.1.32/27".into(), "10.231.0.12".into(), "arn:b"),
                ("10.232.1.64/27".into(), "10.231.0.13".into(), "arn:c"),
            ]
        );
        // A host without a subnet of its own (the server's) routes to every one.
        assert_eq!(peers(&instances, None, None).len(), 3);
    }

    #[test]
    fn server_addresses_are_the_ip_literals_of_the_server_list() {
        let got = server_addresses(
            "http://10.0.0.1:7360, http://gantry.internal:7360,http://10.0.0.3:7360/,http://[fd00::1]:7360,10.0.0.4:7360",
        );
        let want: Vec<Ipv4Addr> =
            ["10.0.0.1", "10.0.0.3", "10.0.0.4"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(got, want);
        assert!(server_addresses("http://localhost:7360").is_empty());
    }

    #[test]
    fn route_changes_add_move_and_remove() {
        let p = |s: &str, h: &str| Peer { subnet: net(s), host: h.parse().unwrap(), instance: String::new() };
        let installed = BTreeMap::from([
            (net("10.232.1.32/27"), "10.231.0.12".parse().unwrap()),
            (net("10.232.1.64/27"), "10.231.0.13".parse().unwrap()),
            (net("10.232.1.96/27"), "10.231.0.14".parse().unwrap()),
        ]);
        let wanted = vec![
            p("10.232.1.32/27", "10.231.0.12"),
            p("10.232.1.64/27", "10.231.0.20"),
            p("10.232.1.128/27", "10.231.0.15"),
        ];
        let got: Vec<String> = route_changes(&installed, &wanted).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            got,
            vec![
                "ip -4 route replace 10.232.1.64/27 via 10.231.0.20",
                "ip -4 route replace 10.232.1.128/27 via 10.231.0.15",
                "ip -4 route del 10.232.1.96/27 via 10.231.0.14",
            ]
        );
        assert!(route_changes(&BTreeMap::new(), &[]).is_empty());
    }

    /// Enough of iptables for the keeper: chains per table holding rule lines, as `-S` shows
    /// them. `DOCKER-USER` and nat's `POSTROUTING` (with Docker's masquerade) exist.
    #[derive(Default)]
    struct Tables {
        chains: BTreeMap<String, Vec<String>>,
        log: Vec<String>,
    }

    impl Tables {
        fn docker() -> Self {
            let mut t = Tables::default();
            t.chains.insert("filter/DOCKER-USER".into(), vec!["-j RETURN".into()]);
            t.chains
                .insert("nat/POSTROUTING".into(), vec!["-s 10.232.1.0/27 ! -o br-1 -j MASQUERADE".into()]);
            t
        }

        fn run(&mut self, args: &[String]) -> Result<String, String> {
            self.log.push(args.join(" "));
            if args[0] == "ip" {
                return Ok(String::new());
            }
            assert_eq!((args[0].as_str(), args[1].as_str()), ("iptables", "-t"));
            let (table, op, chain) = (&args[2], args[3].as_str(), &args[4]);
            let key = format!("{table}/{chain}");
            let missing = || Err("iptables: No chain/target/match by that name.".to_string());
            let rest = args[5..].join(" ");
            match op {
                "-N" => {
                    self.chains.insert(key, vec![]);
                    return Ok(String::new());
                }
                _ if !self.chains.contains_key(&key) => return missing(),
                _ => {}
            }
            let rules = self.chains.get_mut(&key).unwrap();
            match op {
                "-S" => Ok(rules.iter().map(|r| format!("-A {chain} {r}\n")).collect()),
                "-C" if rules.contains(&rest) => Ok(String::new()),
                "-C" => missing(),
                "-D" => match rules.iter().position(|r| *r == rest) {
                    Some(i) => {
                        rules.remove(i);
                        Ok(String::new())
                    }
                    None => missing(),
                },
                "-I" => {
                    let rule = rest.strip_prefix("1 ").unwrap_or(&rest).to_string();
                    rules.insert(0, rule);
                    Ok(String::new())
                }
                "-A" => {
                    rules.push(rest);
                    Ok(String::new())
                }
                "-F" => {
                    rules.clear();
                    Ok(String::new())
                }
                _ => panic!("unexpected {args:?}"),
            }
        }
    }

    #[test]
    fn the_keeper_runs_the_plan_once_and_keeps_the_firewall_in_step() {
        let tables = Arc::new(Mutex::new(Tables::docker()));
        let t = tables.clone();
        let run: Arc<Run> = Arc::new(move |args: &[String]| t.lock().unwrap().run(args));
        let mut k = Keeper::new(
            Some(net("10.232.1.0/27")),
            Some("10.231.0.11".parse().unwrap()),
            vec!["10.231.0.1".parse().unwrap()],
            run,
        );
        let instances = vec![
            instance("arn:me", "ACTIVE", Some("10.232.1.0/27"), Some("10.231.0.11")),
            instance("arn:b", "ACTIVE", Some("10.232.1.32/27"), Some("10.231.0.12")),
        ];
        let chain = |t: &Tables, key: &str| t.chains.get(key).cloned().unwrap_or_default();
        assert!(k.apply(&instances).is_empty());
        {
            let mut t = tables.lock().unwrap();
            assert!(t.log.contains(&"ip -4 route replace 10.232.1.32/27 via 10.231.0.12".to_string()));
            assert_eq!(chain(&t, "filter/DOCKER-USER"), vec![format!("-j {CHAIN}"), "-j RETURN".into()]);
            assert_eq!(
                chain(&t, &format!("filter/{CHAIN}")),
                vec![
                    "-s 10.232.1.32/27 -d 10.232.1.0/27 -j ACCEPT",
                    "-s 10.231.0.12/32 -d 10.232.1.0/27 -j ACCEPT",
                    "-s 10.231.0.1/32 -d 10.232.1.0/27 -j ACCEPT",
                ]
            );
            assert_eq!(chain(&t, "nat/POSTROUTING")[0], format!("-j {NAT_CHAIN}"));
            assert_eq!(
                chain(&t, &format!("nat/{NAT_CHAIN}")),
                vec!["-s 10.232.1.0/27 -d 10.232.1.32/27 -j ACCEPT"]
            );
            t.log.clear();
        }
        assert_eq!(k.installed().len(), 1);
        // Nothing changed: no route command, no chain rewritten.
        assert!(k.apply(&instances).is_empty());
        {
            let mut t = tables.lock().unwrap();
            let log = std::mem::take(&mut t.log);
            assert!(log.iter().all(|c| c.contains(" -S ") || c.contains(" -C ")), "{log:?}");
            // Docker creates a network: its masquerade rule goes first, ahead of the exemption.
            t.chains
                .get_mut("nat/POSTROUTING")
                .unwrap()
                .insert(0, "-s 10.232.1.0/27 ! -o br-2 -j MASQUERADE".into());
        }
        assert!(k.apply(&instances).is_empty());
        {
            let t = tables.lock().unwrap();
            let post = chain(&t, "nat/POSTROUTING");
            assert_eq!(post[0], format!("-j {NAT_CHAIN}"), "{post:?}");
            assert_eq!(post.iter().filter(|r| r.contains(NAT_CHAIN)).count(), 1, "{post:?}");
        }
        // The peer deregistered: its route and its rules go.
        assert!(k.apply(&instances[..1]).is_empty());
        let t = tables.lock().unwrap();
        assert!(t.log.contains(&"ip -4 route del 10.232.1.32/27 via 10.231.0.12".to_string()), "{:?}", t.log);
        assert_eq!(
            chain(&t, &format!("filter/{CHAIN}")),
            vec!["-s 10.231.0.1/32 -d 10.232.1.0/27 -j ACCEPT"]
        );
        assert!(chain(&t, &format!("nat/{NAT_CHAIN}")).is_empty());
        assert!(k.installed().is_empty());
    }

    #[test]
    fn a_failed_route_is_retried_on_the_next_pass() {
        let fail = Arc::new(AtomicBool::new(true));
        let f = fail.clone();
        let run: Arc<Run> = Arc::new(move |args: &[String]| {
            if args[0] == "ip" && f.load(SeqCst) {
                return Err("Nexthop has invalid gateway".into());
            }
            Ok(String::new())
        });
        let mut k = Keeper::new(None, None, vec![], run);
        let instances = vec![instance("arn:b", "ACTIVE", Some("10.232.1.32/27"), Some("10.231.0.12"))];
        assert_eq!(k.apply(&instances).len(), 1);
        assert!(k.installed().is_empty());
        fail.store(false, SeqCst);
        assert!(k.apply(&instances).is_empty());
        assert_eq!(k.installed().len(), 1);
    }
}

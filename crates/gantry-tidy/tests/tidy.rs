//! The tidy test: ARCHITECTURE.md's invariants that the compiler does not check, checked on the
//! sources. Every rule is a row of a table below; an exception is a row of its rule's allowlist
//! with the reason for it. A failure names the file, the line and the rule.
//!
//! Adding a crate means adding it to `CRATES` (a new AWS service's crate is one line there).
//! An allowlist entry that no longer matches anything fails too, so the lists do not rot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// The crates
// ---------------------------------------------------------------------------------------------

/// Where a crate sits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layer {
    /// Below the services: shared by all of them, knows none of them.
    Shared,
    /// Part of one AWS service (its name); never depends on another service's crates.
    Service(&'static str),
    /// Wires several services together: the front door and the binary.
    Front,
}

struct Crate {
    name: &'static str,
    layer: Layer,
    /// Pure: no I/O, no runtime (no tokio and friends among its dependencies).
    pure: bool,
}

const fn krate(name: &'static str, layer: Layer, pure: bool) -> Crate {
    Crate { name, layer, pure }
}

/// Every crate under `crates/`. A crate missing here fails the test.
const CRATES: &[Crate] = &[
    krate("gantry-model", Layer::Shared, true),
    krate("gantry-core", Layer::Shared, true),
    krate("gantry-sigv4", Layer::Shared, true),
    krate("gantry-protocol", Layer::Shared, true),
    krate("gantry-ports", Layer::Shared, true),
    // IAM's policy language: parsing and evaluation, shared by IAM, STS and the front door.
    krate("gantry-policy", Layer::Shared, true),
    krate("gantry-store", Layer::Shared, false),
    krate("gantry-runtime", Layer::Shared, false),
    krate("gantry-agent", Layer::Shared, false),
    krate("gantry-tidy", Layer::Shared, true),
    // The load balancer's data plane: capacity, like the agent; ELBv2's API wires it.
    krate("gantry-lb", Layer::Shared, false),
    // ECS, and the pure parts it is made of.
    krate("gantry-ecs", Layer::Service("ecs"), false),
    krate("gantry-placement", Layer::Service("ecs"), true),
    krate("gantry-sched", Layer::Service("ecs"), true),
    // STS.
    krate("gantry-sts", Layer::Service("sts"), false),
    // IAM.
    krate("gantry-iam", Layer::Service("iam"), false),
    // Secrets Manager and SSM Parameter Store.
    krate("gantry-secretsmanager", Layer::Service("secretsmanager"), false),
    krate("gantry-ssm", Layer::Service("ssm"), false),
    // ELBv2 and ACM.
    krate("gantry-elbv2", Layer::Service("elasticloadbalancing"), false),
    krate("gantry-acm", Layer::Service("acm"), false),
    // CloudWatch Logs.
    krate("gantry-logs", Layer::Service("logs"), false),
    // CloudWatch metrics and alarms.
    krate("gantry-cloudwatch", Layer::Service("monitoring"), false),
    // Application Auto Scaling.
    krate("gantry-appautoscaling", Layer::Service("application-autoscaling"), false),
    // EventBridge.
    krate("gantry-events", Layer::Service("events"), false),
    // EventBridge Scheduler.
    krate("gantry-scheduler", Layer::Service("scheduler"), false),
    // EC2 Auto Scaling.
    krate("gantry-autoscaling", Layer::Service("autoscaling"), false),
    // Only these may depend on several services.
    krate("gantry-api", Layer::Front, false),
    krate("gantry", Layer::Front, false),
];

/// What a pure crate must not depend on (in `[dependencies]`; its tests may).
const IMPURE_DEPS: &[&str] = &["tokio", "tokio-util", "futures", "futures-util", "mio", "async-trait"];

// ---------------------------------------------------------------------------------------------
// Dependency rules: which crates may depend on which libraries
// ---------------------------------------------------------------------------------------------

struct DepRule {
    rule: &'static str,
    /// Library names as `Cargo.toml` spells them.
    deps: &'static [&'static str],
    /// The crates that may depend on them, each with why.
    allowed: &'static [(&'static str, &'static str)],
}

const DEP_RULES: &[DepRule] = &[
    DepRule {
        rule: "wire formats live in the protocol layer",
        deps: &[
            "ciborium",
            "quick-xml",
            "quick_xml",
            "form_urlencoded",
            "serde_cbor",
            "serde-xml-rs",
            "xml-rs",
        ],
        allowed: &[("gantry-protocol", "AWS's wire protocols: CBOR, awsQuery forms, XML")],
    },
    DepRule {
        rule: "only the front door, the agent and the binary know HTTP",
        deps: &[
            "axum",
            "hyper",
            "hyper-util",
            "http",
            "http-body",
            "http-body-util",
            "tower",
            "tower-http",
            "reqwest",
        ],
        allowed: &[
            ("gantry-api", "the front door: the axum router and the listener"),
            ("gantry-agent", "its control-plane client (client.rs) and task metadata endpoint (metadata.rs)"),
            ("gantry", "the binary: wiring the listener"),
            ("gantry-lb", "the load balancer's data plane: it proxies HTTP"),
        ],
    },
    DepRule {
        rule: "only the store knows SQLite",
        deps: &["rusqlite", "libsqlite3-sys", "sqlx"],
        allowed: &[("gantry-store", "SqliteStore")],
    },
    DepRule {
        rule: "only the agent talks to Docker",
        deps: &["bollard"],
        allowed: &[("gantry-agent", "docker.rs, the Docker runtime")],
    },
];

// ---------------------------------------------------------------------------------------------
// Source rules: patterns that may appear only in listed places
// ---------------------------------------------------------------------------------------------

/// Which code of the files in scope a rule reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Code {
    /// Everything but tests, benches and examples (`tests/`, `benches/`, `examples/` directories
    /// and `#[cfg(test)]` items).
    Production,
    /// Only tests: `tests/` directories and `#[cfg(test)]` items.
    Tests,
    /// Everything.
    All,
}

/// An exception: a file (or a directory, ending in `/`) where the rule's patterns may appear, at
/// most `limit` times in all.
struct Allow {
    path: &'static str,
    limit: usize,
    why: &'static str,
}

const ANY: usize = usize::MAX;

const fn allow(path: &'static str, limit: usize, why: &'static str) -> Allow {
    Allow { path, limit, why }
}

struct SourceRule {
    rule: &'static str,
    /// What to do instead.
    help: &'static str,
    /// Files or directories (ending in `/`), relative to the workspace root.
    scope: &'static [&'static str],
    /// `rs` or `py`.
    ext: &'static str,
    code: Code,
    /// Substrings of a line, comments excluded (string literals included).
    patterns: &'static [&'static str],
    allow: &'static [Allow],
}

const SOURCE_RULES: &[SourceRule] = &[
    SourceRule {
        rule: "no clock or randomness outside their modules",
        help: "take the time from `Clock` and IDs or secrets from `IdGen`/`gantry_core::secret`, \
               injected; durations for metrics and tokio-clock delays are listed exceptions",
        scope: &["crates/"],
        ext: "rs",
        code: Code::Production,
        patterns: &[
            "SystemTime::now",
            "Instant::now",
            "Utc::now",
            "Local::now",
            "rand::",
            "getrandom",
            "/dev/urandom",
            "/dev/random",
        ],
        allow: &[
            allow(
                "crates/gantry-core/src/time.rs",
                ANY,
                "SystemClock and SeededIds::from_entropy: the one clock and the IDs' seed",
            ),
            allow(
                "crates/gantry-core/src/secret.rs",
                ANY,
                "the OS CSPRNG for access keys, secret keys and session tokens",
            ),
            allow(
                "crates/gantry/src/main.rs",
                1,
                "the binary: `gantry sim` prints how long registration took",
            ),
            allow("crates/gantry-api/src/front.rs", 1, "metrics: gantry_api_request_duration_seconds"),
            allow(
                "crates/gantry-api/src/server.rs",
                2,
                "each connection's header-timeout watchdog: tokio's clock, paused in tests",
            ),
            allow("crates/gantry-store/src/sqlite.rs", 1, "metrics: gantry_store_commit_duration_seconds"),
            allow("crates/gantry-store/src/etcd.rs", 1, "metrics: gantry_store_commit_duration_seconds"),
            allow(
                "crates/gantry-store/src/election.rs",
                3,
                "the leader's lease deadline (when its last keep-alive was answered): tokio's clock",
            ),
            allow(
                "crates/gantry-store/src/testing.rs",
                2,
                "the test etcd's start-up deadline (the `testing` feature, for tests only)",
            ),
            allow(
                "crates/gantry-runtime/src/controller.rs",
                1,
                "metrics: gantry_controller_reconcile_duration_seconds",
            ),
            allow(
                "crates/gantry-runtime/src/queue.rs",
                3,
                "WorkQueue's delays: tokio's clock, paused in tests",
            ),
            allow(
                "crates/gantry-agent/src/agent.rs",
                1,
                "the agent's full container list every LIST_INTERVAL: tokio's clock, paused in tests",
            ),
            allow("crates/gantry-lb/src/http.rs", 1, "metrics: TargetResponseTime"),
            allow("crates/gantry-lb/src/prober.rs", 1, "each target's next health check: tokio's clock"),
            allow(
                "crates/gantry-agent/src/awslogs.rs",
                6,
                "the awslogs shipper's flush, hold and retry deadlines: tokio's clock, paused in tests",
            ),
        ],
    },
    SourceRule {
        rule: "statuses are set and compared through gantry-core's enums",
        help: "read a stored status with `status::*_status` and write it with `status::set_*_status` \
               (gantry-ecs/src/status.rs), comparing enums, never string literals (a task's \
               lastStatus and desiredStatus through `TaskStatus`, the lifecycle's one order)",
        scope: &["crates/gantry-ecs/src/"],
        ext: "rs",
        code: Code::Production,
        patterns: &[
            "status.as_deref() == Some(\"",
            "status.as_deref() != Some(\"",
            "status = Some(\"",
            "status: Some(\"",
            "last_status.as_deref() == Some(\"",
            "last_status.as_deref() != Some(\"",
            "last_status = Some(\"",
            "last_status: Some(\"",
            "desired_status.as_deref() == Some(\"",
            "desired_status.as_deref() != Some(\"",
            "desired_status = Some(\"",
            "desired_status: Some(\"",
            "health_status.as_deref() == Some(\"",
            "health_status.as_deref() != Some(\"",
            "health_status = Some(\"",
            "health_status: Some(\"",
            "update_status.as_deref() == Some(\"",
            "update_status.as_deref() != Some(\"",
            "update_status = Some(\"",
            "update_status: Some(\"",
            "agent_update_status.as_deref() == Some(\"",
            "agent_update_status.as_deref() != Some(\"",
            "agent_update_status = Some(\"",
            "agent_update_status: Some(\"",
        ],
        allow: &[],
    },
    SourceRule {
        rule: "stored records are decoded only by the record layer",
        help: "read records with `records::load`/`load_prefix`/`decode`/`parse` (records may be \
               LZ4-compressed), never with serde_json directly",
        scope: &["crates/gantry-ecs/src/"],
        ext: "rs",
        code: Code::Production,
        patterns: &[
            "serde_json::from_slice",
            "serde_json::from_str",
            "serde_json::from_reader",
            "serde_json::Deserializer",
            "lz4_flex",
            "unpack(",
        ],
        allow: &[
            allow("crates/gantry-ecs/src/records.rs", ANY, "the record layer: compression and decoding"),
            allow("crates/gantry-ecs/src/authz.rs", 1, "a request's body, read for IAM's resources"),
            allow(
                "crates/gantry-ecs/src/ops/agent_channel.rs",
                1,
                "reads the head of a task kept as a RawValue in a record `records::load` already decoded",
            ),
            allow(
                "crates/gantry-ecs/src/ops/container_instances.rs",
                1,
                "parses the request's instanceIdentityDocument, not a stored value",
            ),
            allow("crates/gantry-ecs/src/launcher.rs", 1, "parses a RunTask request from another service"),
        ],
    },
    SourceRule {
        rule: "the service crates' stored records are decoded only by the shared record layer",
        help: "read records with `gantry_runtime::records::load`/`load_prefix`/`decode` (records may \
               be LZ4-compressed), never with serde_json directly",
        scope: &[
            "crates/gantry-elbv2/src/",
            "crates/gantry-acm/src/",
            "crates/gantry-iam/src/",
            "crates/gantry-sts/src/",
            "crates/gantry-ssm/src/",
            "crates/gantry-secretsmanager/src/",
            "crates/gantry-events/src/",
            "crates/gantry-scheduler/src/",
            "crates/gantry-autoscaling/src/",
            "crates/gantry-appautoscaling/src/",
        ],
        ext: "rs",
        code: Code::Production,
        patterns: &[
            "serde_json::from_slice",
            "serde_json::from_str",
            "serde_json::from_reader",
            "serde_json::Deserializer",
            "lz4_flex",
        ],
        allow: &[
            allow("crates/gantry-elbv2/src/lib.rs", 1, "parses the request's JSON form, not a stored value"),
            allow("crates/gantry-acm/src/lib.rs", 1, "parses the request's JSON form, not a stored value"),
            allow("crates/gantry-elbv2/src/tests.rs", 1, "the tests read the operations' JSON output"),
            allow("crates/gantry-acm/src/tests.rs", 1, "the tests read the operations' JSON output"),
            allow("crates/gantry-appautoscaling/src/ingress.rs", 1, "reads its own operation's JSON answer"),
            allow(
                "crates/gantry-appautoscaling/src/lib.rs",
                1,
                "parses the request's JSON, not a stored value",
            ),
            allow(
                "crates/gantry-appautoscaling/src/tests.rs",
                2,
                "the tests read the operations' JSON output",
            ),
            allow("crates/gantry-autoscaling/src/lib.rs", 1, "parses the request's JSON, not a stored value"),
            allow("crates/gantry-autoscaling/src/tests.rs", 1, "the tests read the operations' JSON output"),
            allow(
                "crates/gantry-events/src/bus.rs",
                2,
                "an event's detail and a rule's pattern: the user's JSON documents",
            ),
            allow("crates/gantry-events/src/fire.rs", 1, "a target's Input: the user's JSON document"),
            allow(
                "crates/gantry-events/src/lib.rs",
                3,
                "the request's JSON, a pattern and a target's Input being validated",
            ),
            allow("crates/gantry-events/src/tests.rs", 2, "the tests read the operations' JSON output"),
            allow("crates/gantry-iam/src/ops.rs", 1, "parses the request's JSON, not a stored value"),
            allow("crates/gantry-iam/src/tests.rs", 1, "the tests read the operations' JSON output"),
            allow("crates/gantry-scheduler/src/fire.rs", 1, "a target's Input: the user's JSON document"),
            allow("crates/gantry-scheduler/src/lib.rs", 1, "parses the request's JSON, not a stored value"),
            allow("crates/gantry-scheduler/src/tests.rs", 2, "the tests read the operations' JSON output"),
            allow(
                "crates/gantry-secretsmanager/src/lib.rs",
                2,
                "the request's JSON and a resource policy being validated",
            ),
            allow(
                "crates/gantry-secretsmanager/src/resolve.rs",
                1,
                "a secret's value, opened, as the JSON document ECS asks a key of",
            ),
            allow(
                "crates/gantry-secretsmanager/src/tests.rs",
                1,
                "the tests read the operations' JSON output",
            ),
            allow("crates/gantry-ssm/src/lib.rs", 1, "parses the request's JSON, not a stored value"),
            allow("crates/gantry-ssm/src/tests.rs", 1, "the tests read the operations' JSON output"),
            allow("crates/gantry-sts/src/lib.rs", 1, "parses the request's JSON, not a stored value"),
            allow("crates/gantry-sts/src/tests.rs", 1, "the tests read the operations' JSON output"),
        ],
    },
    SourceRule {
        rule: "the agent's HTTP stays in its client and metadata endpoint",
        help: "talk to the control plane through client.rs",
        scope: &["crates/gantry-agent/src/"],
        ext: "rs",
        code: Code::Production,
        patterns: &["hyper::", "hyper_util::", "http_body_util::", "http::"],
        allow: &[
            allow("crates/gantry-agent/src/client.rs", ANY, "the control-plane client"),
            allow("crates/gantry-agent/src/metadata.rs", ANY, "the task metadata endpoint v4"),
            allow(
                "crates/gantry-agent/src/docker.rs",
                ANY,
                "a modifier of bollard's requests to Docker (a container's MAC address for engines before API 1.44)",
            ),
        ],
    },
    SourceRule {
        rule: "the agent talks to Docker only in docker.rs",
        help: "go through the `Runtime` trait",
        scope: &["crates/gantry-agent/src/"],
        ext: "rs",
        code: Code::Production,
        patterns: &["bollard"],
        allow: &[allow("crates/gantry-agent/src/docker.rs", ANY, "the Docker runtime")],
    },
    SourceRule {
        rule: "no ignored tests",
        help: "fix the test or delete it; a test that needs Docker checks for it and returns",
        scope: &["crates/"],
        ext: "rs",
        code: Code::All,
        patterns: &["#[ignore"],
        allow: &[],
    },
    SourceRule {
        rule: "no sleeps in tests",
        help: "wait for the condition (poll with a deadline), or run on tokio's paused clock",
        scope: &["crates/"],
        ext: "rs",
        code: Code::Tests,
        patterns: &["sleep(", "sleep_until("],
        allow: &[
            allow(
                "crates/gantry-runtime/tests/controller.rs",
                ANY,
                "start_paused: the sleeps advance the paused clock",
            ),
            allow(
                "crates/gantry-runtime/src/queue.rs",
                1,
                "start_paused: the sleep advances the paused clock",
            ),
            allow(
                "crates/gantry-agent/tests/it/reconcile.rs",
                1,
                "start_paused: the `until` helper's poll step",
            ),
            allow(
                "crates/gantry-ecs/tests/it/metrics.rs",
                1,
                "start_paused: the sleep lets the scheduler's passes run",
            ),
            allow(
                "crates/gantry-api/src/server.rs",
                3,
                "start_paused: the test service's work and the client's pauses advance the paused clock",
            ),
            allow(
                "crates/gantry-agent/tests/it/docker.rs",
                1,
                "`poll_until`'s step against a real Docker daemon, with a deadline",
            ),
            allow(
                "crates/gantry-lb/tests/it/support.rs",
                2,
                "`eventually`'s poll step with a deadline, and the test backend's slow request (the 3 s request draining must let finish)",
            ),
        ],
    },
    SourceRule {
        rule: "no sleeps in the black-box tests",
        help: "use harness.wait_for(predicate, timeout)",
        scope: &["tests/blackbox/"],
        ext: "py",
        code: Code::All,
        patterns: &["sleep("],
        allow: &[allow("tests/blackbox/harness.py", 1, "wait_for's poll step")],
    },
];

/// The longest a function's body may be, in lines, in `crates/*/src` outside tests and
/// gantry-model's generated code: a longer one is split along the steps it has.
const MAX_FN_LINES: usize = 150;

/// Functions that may be longer for now: (file, function, why). An entry that matches no long
/// function fails, so the list does not rot.
const LONG_FN_ALLOW: &[(&str, &str, &str)] = &[];

/// Not read by the source rules: this crate, whose tables spell out every pattern.
const SKIP: &[&str] = &["crates/gantry-tidy/"];

/// Files under `crates/gantry-model/src` other than these are generated and say so first. The
/// JSON writer's primitives (`json.rs`) define no shape: the generated structures call them.
const MODEL_HANDWRITTEN: &[&str] = &["crates/gantry-model/src/lib.rs", "crates/gantry-model/src/json.rs"];
const MODEL_HEADER: &str = "// @generated by tools/gen-model.py";

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let mut out = Report::default();
    check_crates(&root, &mut out);
    check_sources(&root, &mut out);
    check_model(&root, &mut out);
    check_function_lengths(&root, &mut out);
    if !out.0.is_empty() {
        let mut msg = format!("tidy: {} violation(s) of ARCHITECTURE.md's invariants\n", out.0.len());
        for v in &out.0 {
            let _ = writeln!(msg, "  {v}");
        }
        msg.push_str("(rules and allowlists: crates/gantry-tidy/tests/tidy.rs)");
        panic!("{msg}");
    }
}

#[derive(Default)]
struct Report(Vec<String>);

impl Report {
    fn at(&mut self, path: &str, line: usize, rule: &str, what: String) {
        self.0.push(format!("{path}:{line}: [{rule}] {what}"));
    }
}

/// The crates' `Cargo.toml`s, entry points and integration test binaries: rules 3
/// (dependencies), 4 and 6, and one test binary per crate.
fn check_crates(root: &Path, out: &mut Report) {
    let mut on_disk: Vec<String> = fs::read_dir(root.join("crates"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    for name in &on_disk {
        if !CRATES.iter().any(|c| c.name == name) {
            out.at(
                &format!("crates/{name}/Cargo.toml"),
                1,
                "every crate is classified",
                "add the crate to CRATES in crates/gantry-tidy/tests/tidy.rs (shared, a service's, or front)"
                    .into(),
            );
        }
    }
    for c in CRATES {
        if !on_disk.iter().any(|n| n == c.name) {
            out.at(
                "crates/gantry-tidy/tests/tidy.rs",
                1,
                "every crate is classified",
                format!("CRATES lists `{}`, which does not exist", c.name),
            );
        }
    }

    for name in &on_disk {
        let Some(me) = CRATES.iter().find(|c| c.name == name) else { continue };
        let manifest = format!("crates/{name}/Cargo.toml");
        let text = fs::read_to_string(root.join(&manifest)).unwrap();
        let manifest_info = parse_manifest(&text);

        for (dep, line) in &manifest_info.deps {
            // Service crates never import each other; shared crates import none.
            if let Some(other) = CRATES.iter().find(|c| c.name == dep)
                && let Layer::Service(svc) = other.layer
            {
                match me.layer {
                    Layer::Front => {}
                    Layer::Service(mine) if mine == svc => {}
                    Layer::Service(mine) => out.at(
                        &manifest,
                        *line,
                        "service crates never import each other",
                        format!("`{name}` ({mine}) depends on `{dep}` ({svc}); go through gantry-ports"),
                    ),
                    Layer::Shared => out.at(
                        &manifest,
                        *line,
                        "shared crates know no service",
                        format!("`{name}` depends on the {svc} service's `{dep}`"),
                    ),
                }
            }
            if me.pure && IMPURE_DEPS.contains(&dep.as_str()) {
                out.at(
                    &manifest,
                    *line,
                    "pure crates use no runtime",
                    format!("`{name}` is pure and depends on `{dep}`"),
                );
            }
            for r in DEP_RULES {
                if r.deps.contains(&dep.as_str()) && !r.allowed.iter().any(|(c, _)| c == name) {
                    let allowed: Vec<&str> = r.allowed.iter().map(|(c, _)| *c).collect();
                    out.at(
                        &manifest,
                        *line,
                        r.rule,
                        format!("`{name}` depends on `{dep}` (allowed only in {})", allowed.join(", ")),
                    );
                }
            }
        }

        if !manifest_info.workspace_lints {
            out.at(
                &manifest,
                1,
                "every crate inherits the workspace lints",
                "add `[lints]\\nworkspace = true`".into(),
            );
        }
        // Integration tests link into one binary per crate (each binary links the whole crate
        // graph again): top-level `tests/*.rs` files and `tests/DIR/main.rs` are binaries.
        let tests = root.join(format!("crates/{name}/tests"));
        let mut binaries: Vec<String> = fs::read_dir(&tests)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                let file = e.file_name().to_string_lossy().into_owned();
                let binary = (p.is_file() && file.ends_with(".rs")) || p.join("main.rs").is_file();
                binary.then_some(file)
            })
            .collect();
        binaries.sort();
        if binaries.len() > 1 {
            out.at(
                &format!("crates/{name}/tests"),
                1,
                "one integration test binary per crate",
                format!(
                    "{} binaries ({}): make them modules of one `tests/it/main.rs`",
                    binaries.len(),
                    binaries.join(", ")
                ),
            );
        }
        let src = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| format!("crates/{name}/{f}"))
            .find(|f| root.join(f).is_file());
        match src {
            None => out.at(
                &manifest,
                1,
                "every crate opens with a `//!` paragraph",
                "no src/lib.rs or src/main.rs".into(),
            ),
            Some(f) => {
                let text = fs::read_to_string(root.join(&f)).unwrap();
                let first = text.lines().position(|l| !l.trim().is_empty());
                let ok = first.is_some_and(|i| text.lines().nth(i).unwrap().trim_start().starts_with("//!"));
                if !ok {
                    out.at(
                        &f,
                        first.map_or(1, |i| i + 1),
                        "every crate opens with a `//!` paragraph",
                        "say what the crate is for".into(),
                    );
                }
            }
        }
    }
}

struct Manifest {
    /// Normal and build dependencies (tests' dev-dependencies are free), with their line numbers.
    deps: Vec<(String, usize)>,
    workspace_lints: bool,
}

/// Reads what the rules need from a `Cargo.toml`, line by line: the keys of `[dependencies]`,
/// `[build-dependencies]` and `[target.'…'.dependencies]` (and `[dependencies.NAME]` tables), and
/// whether `[lints]` says `workspace = true`.
fn parse_manifest(text: &str) -> Manifest {
    let mut deps = Vec::new();
    let mut workspace_lints = false;
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            // `[dependencies.NAME]`
            for table in ["dependencies.", "build-dependencies."] {
                if let Some(name) = section.strip_prefix(table) {
                    deps.push((name.trim_matches('"').to_string(), i + 1));
                }
            }
            continue;
        }
        let is_deps = section == "dependencies"
            || section == "build-dependencies"
            || (section.starts_with("target.")
                && (section.ends_with(".dependencies") || section.ends_with(".build-dependencies")));
        if is_deps {
            let key = line.split(['=', '.']).next().unwrap().trim().trim_matches('"');
            if !key.is_empty() {
                deps.push((key.to_string(), i + 1));
            }
        }
        if section == "lints" && line.replace(' ', "") == "workspace=true" {
            workspace_lints = true;
        }
    }
    Manifest { deps, workspace_lints }
}

/// The pattern rules over the sources: rules 1, 2, 7 and the agent's boundaries.
fn check_sources(root: &Path, out: &mut Report) {
    let mut files = Vec::new();
    walk(root, &root.join("crates"), &mut files);
    walk(root, &root.join("tests/blackbox"), &mut files);
    files.sort();
    let mut cache: BTreeMap<String, Source> = BTreeMap::new();

    for rule in SOURCE_RULES {
        let mut used = vec![0usize; rule.allow.len()];
        let mut over: Vec<Vec<(String, usize, &str)>> = vec![Vec::new(); rule.allow.len()];
        for rel in &files {
            if !rel.ends_with(&format!(".{}", rule.ext))
                || !rule.scope.iter().any(|s| within(rel, s))
                || SKIP.iter().any(|s| within(rel, s))
            {
                continue;
            }
            let src = cache.entry(rel.clone()).or_insert_with(|| Source::read(&root.join(rel), rule.ext));
            let test_file = is_test_path(rel);
            for (n, code) in src.lines.iter().enumerate() {
                let is_test = test_file || src.test[n];
                let applies = match rule.code {
                    Code::Production => !is_test,
                    Code::Tests => is_test && !is_bench_or_example(rel),
                    Code::All => true,
                };
                if !applies {
                    continue;
                }
                let Some(pattern) = rule.patterns.iter().find(|p| mentions(code, p)) else { continue };
                match rule.allow.iter().position(|a| within(rel, a.path)) {
                    Some(k) => {
                        used[k] += 1;
                        over[k].push((rel.clone(), n + 1, pattern));
                    }
                    None => out.at(rel, n + 1, rule.rule, format!("`{pattern}`: {}", rule.help)),
                }
            }
        }
        for (k, a) in rule.allow.iter().enumerate() {
            if used[k] == 0 {
                out.at(
                    "crates/gantry-tidy/tests/tidy.rs",
                    1,
                    rule.rule,
                    format!("the allowlist entry `{}` ({}) matches nothing: remove it", a.path, a.why),
                );
            } else if used[k] > a.limit {
                for (rel, line, pattern) in &over[k] {
                    out.at(
                        rel,
                        *line,
                        rule.rule,
                        format!(
                            "`{pattern}`: {} found in this file, the allowlist allows {} ({}); {}",
                            used[k], a.limit, a.why, rule.help
                        ),
                    );
                }
            }
        }
    }
}

/// Rule 5: the model's files are generated.
fn check_model(root: &Path, out: &mut Report) {
    let mut files = Vec::new();
    walk(root, &root.join("crates/gantry-model/src"), &mut files);
    for rel in files {
        if MODEL_HANDWRITTEN.contains(&rel.as_str()) {
            continue;
        }
        let text = fs::read_to_string(root.join(&rel)).unwrap_or_default();
        if !text.starts_with(MODEL_HEADER) {
            out.at(
                &rel,
                1,
                "only gantry-model defines wire shapes, and it is generated",
                format!("does not start with `{MODEL_HEADER}`; generate it, do not write it"),
            );
        }
    }
}

/// Functions of at most `MAX_FN_LINES` lines in the crates' production sources.
fn check_function_lengths(root: &Path, out: &mut Report) {
    let mut files = Vec::new();
    walk(root, &root.join("crates"), &mut files);
    files.sort();
    let mut used = vec![false; LONG_FN_ALLOW.len()];
    for rel in &files {
        let in_src = rel.split('/').nth(2) == Some("src");
        if !rel.ends_with(".rs") || !in_src || within(rel, "crates/gantry-model/") || is_test_path(rel) {
            continue;
        }
        let src = Source::read(&root.join(rel), "rs");
        for (line, name, len) in long_functions(&src, MAX_FN_LINES) {
            match LONG_FN_ALLOW.iter().position(|(f, n, _)| *f == rel && *n == name) {
                Some(k) => used[k] = true,
                None => out.at(
                    rel,
                    line,
                    "functions are at most 150 lines",
                    format!(
                        "`fn {name}` is {len} lines long (its body; at most {MAX_FN_LINES}): split it along the steps it has"
                    ),
                ),
            }
        }
    }
    for (k, (file, name, why)) in LONG_FN_ALLOW.iter().enumerate() {
        if !used[k] {
            out.at(
                "crates/gantry-tidy/tests/tidy.rs",
                1,
                "functions are at most 150 lines",
                format!("the allowlist entry `{name}` in {file} ({why}) matches no long function: remove it"),
            );
        }
    }
}

/// The functions outside `#[cfg(test)]` items whose bodies (the lines between their braces) are
/// longer than `max` lines: (line of `fn`, 1-based; name; body lines).
fn long_functions(src: &Source, max: usize) -> Vec<(usize, String, usize)> {
    let mut found = Vec::new();
    for (i, code) in src.lines.iter().enumerate() {
        let Some(name) = fn_item(code) else { continue };
        if src.test[i] {
            continue;
        }
        let outer = if i == 0 { 0 } else { src.depth_end[i - 1] };
        // The line the body opens on; none for a declaration (`fn f(&self);`).
        let Some(open) = (i..src.lines.len()).find(|&j| {
            src.depth_max[j] > outer || (src.depth_max[j] == outer && src.lines[j].trim_end().ends_with(';'))
        }) else {
            continue;
        };
        if src.depth_max[open] == outer {
            continue;
        }
        let close =
            (open..src.lines.len()).find(|&j| src.depth_end[j] <= outer).unwrap_or(src.lines.len() - 1);
        let len = close.saturating_sub(open + 1);
        if len > max {
            found.push((i + 1, name.to_string(), len));
        }
    }
    found
}

/// The name of the function item a line of code starts (`pub(crate) async fn name(`, ...).
fn fn_item(code: &str) -> Option<&str> {
    let mut rest = code.trim_start();
    loop {
        let word_end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        match word {
            "pub" | "const" | "async" | "unsafe" | "extern" | "default" => {
                let after = after.trim_start();
                // `pub(crate)`, `extern "C"`.
                rest = if let Some(r) = after.strip_prefix('(') {
                    r.split_once(')')?.1.trim_start()
                } else if let Some(r) = after.strip_prefix('"') {
                    r.split_once('"')?.1.trim_start()
                } else {
                    after
                };
            }
            "fn" => {
                let name = after.trim_start();
                let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(name.len());
                return (end > 0).then(|| &name[..end]);
            }
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Collects the files under `dir` as paths relative to `root` with `/` separators, skipping
/// hidden directories, build output and Python caches.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.filter_map(|e| e.ok()) {
        let path: PathBuf = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "__pycache__" {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>();
            out.push(rel.join("/"));
        }
    }
}

/// `code` holds `pattern` as a whole word at its start: `rand::` is not found in `Operand::`,
/// nor `sleep(` in `fn no_sleep(`.
fn mentions(code: &str, pattern: &str) -> bool {
    let word = pattern.starts_with(|c: char| c.is_alphanumeric() || c == '_');
    code.match_indices(pattern)
        .any(|(at, _)| !word || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
}

/// `path` is `prefix` (a file) or under it (a directory ending in `/`).
fn within(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') { path.starts_with(prefix) } else { path == prefix }
}

/// Test, bench and example code by its place: a crate's `tests/`, `benches/` or `examples/`.
fn is_test_path(rel: &str) -> bool {
    rel.split('/').any(|c| c == "tests" || c == "benches" || c == "examples")
}

fn is_bench_or_example(rel: &str) -> bool {
    rel.split('/').any(|c| c == "benches" || c == "examples")
}

/// A source file as the rules read it: each line without its comments (string literals kept, so
/// a path in a string is seen), which lines belong to `#[cfg(test)]` items, and the brace depth
/// at the end of each line and the deepest within it (braces in literals not counted).
struct Source {
    lines: Vec<String>,
    test: Vec<bool>,
    depth_end: Vec<usize>,
    depth_max: Vec<usize>,
}

impl Source {
    fn read(path: &Path, ext: &str) -> Source {
        let text = fs::read_to_string(path).unwrap_or_default();
        if ext == "rs" {
            return lex_rust(&text);
        }
        // Python: comment lines dropped.
        let lines: Vec<String> = text
            .lines()
            .map(|l| if l.trim_start().starts_with('#') { String::new() } else { l.to_string() })
            .collect();
        let n = lines.len();
        Source { lines, test: vec![false; n], depth_end: vec![0; n], depth_max: vec![0; n] }
    }
}

/// Where the lexer is.
#[derive(PartialEq, Default)]
enum St {
    #[default]
    Code,
    LineComment,
    Block(usize),
    Str,
    Raw(usize),
}

/// A small Rust lexer: enough to drop comments, not to count braces inside string and character
/// literals, and to find where a `#[cfg(test)]` item ends.
fn lex_rust(text: &str) -> Source {
    let chars: Vec<char> = text.chars().collect();
    let mut lx = Lexer::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            lx.end_line();
        } else {
            match lx.st {
                St::LineComment => {}
                St::Block(n) => {
                    if c == '*' && next == Some('/') {
                        lx.st = if n == 1 { St::Code } else { St::Block(n - 1) };
                        i += 1;
                    } else if c == '/' && next == Some('*') {
                        lx.st = St::Block(n + 1);
                        i += 1;
                    }
                }
                St::Str => {
                    lx.cur.push(c);
                    if c == '\\' {
                        if let Some(n) = next
                            && n != '\n'
                        {
                            lx.cur.push(n);
                            i += 1;
                        }
                    } else if c == '"' {
                        lx.st = St::Code;
                    }
                }
                St::Raw(hashes) => {
                    lx.cur.push(c);
                    if c == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                        lx.cur.extend(std::iter::repeat_n('#', hashes));
                        i += hashes;
                        lx.st = St::Code;
                    }
                }
                St::Code => i = lx.code(&chars, i),
            }
        }
        i += 1;
    }
    lx.finish()
}

/// The lexer's state between characters.
#[derive(Default)]
struct Lexer {
    lines: Vec<String>,
    cur: String,
    st: St,
    depth: usize,
    /// The deepest the current line went.
    line_max: usize,
    depth_end: Vec<usize>,
    depth_max: Vec<usize>,
    /// A `#[cfg(test)]` seen at this depth, on this line, whose item has not opened yet; then the
    /// item being skipped.
    pending: Option<(usize, usize)>,
    open: Option<(usize, usize)>,
    test_ranges: Vec<(usize, usize)>,
}

impl Lexer {
    fn end_line(&mut self) {
        if self.st == St::LineComment {
            self.st = St::Code;
        }
        let line = std::mem::take(&mut self.cur);
        if self.st == St::Code
            && self.open.is_none()
            && self.pending.is_none()
            && line.trim() == "#[cfg(test)]"
        {
            self.pending = Some((self.lines.len(), self.depth));
        }
        self.lines.push(line);
        self.depth_end.push(self.depth);
        self.depth_max.push(self.line_max);
        self.line_max = self.depth;
    }

    /// Code at `chars[i]`: a comment or literal starts, or a brace or `;` counts. Returns the
    /// index of the last character consumed.
    fn code(&mut self, chars: &[char], i: usize) -> usize {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if c == '/' && next == Some('/') {
            self.st = St::LineComment;
            return i + 1;
        }
        if c == '/' && next == Some('*') {
            self.st = St::Block(1);
            return i + 1;
        }
        if c == '"' {
            self.cur.push(c);
            self.st = St::Str;
            return i;
        }
        if let Some(k) = raw_string_quote(chars, i) {
            self.cur.extend(&chars[i..=k]);
            self.st = St::Raw(k - i - 1);
            return k;
        }
        if c == '\''
            && let Some(e) = char_literal_end(chars, i)
        {
            self.cur.extend(&chars[i..=e]);
            return e;
        }
        self.cur.push(c);
        match c {
            '{' => self.open_brace(),
            '}' => self.close_brace(),
            ';' => {
                if let Some((start, d)) = self.pending
                    && d == self.depth
                {
                    self.test_ranges.push((start, self.lines.len()));
                    self.pending = None;
                }
            }
            _ => {}
        }
        i
    }

    fn open_brace(&mut self) {
        if let Some((start, d)) = self.pending
            && d == self.depth
        {
            self.open = Some((start, d));
            self.pending = None;
        }
        self.depth += 1;
        self.line_max = self.line_max.max(self.depth);
    }

    fn close_brace(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if let Some((start, d)) = self.open
            && d == self.depth
        {
            self.test_ranges.push((start, self.lines.len()));
            self.open = None;
        }
    }

    fn finish(mut self) -> Source {
        self.end_line();
        if let Some((start, _)) = self.open {
            self.test_ranges.push((start, self.lines.len() - 1));
        }
        let n = self.lines.len();
        let mut test = vec![false; n];
        for (a, b) in self.test_ranges {
            for t in &mut test[a..=b.min(n - 1)] {
                *t = true;
            }
        }
        Source { lines: self.lines, test, depth_end: self.depth_end, depth_max: self.depth_max }
    }
}

/// At `chars[i]`, a raw string's opening (`r"`, `r#"`, `br#"`, not the `r` ending an
/// identifier): the index of its quote.
fn raw_string_quote(chars: &[char], i: usize) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let starts = chars[i] == 'r'
        && (i == 0 || !ident(chars[i - 1]) || (chars[i - 1] == 'b' && (i < 2 || !ident(chars[i - 2]))));
    if !starts {
        return None;
    }
    let mut k = i + 1;
    while chars.get(k) == Some(&'#') {
        k += 1;
    }
    (chars.get(k) == Some(&'"')).then_some(k)
}

/// At a `'`, the end of a character literal ('x', '\n', '\'', '\u{..}'); none for a lifetime
/// ('a).
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i + 1) == Some(&'\\') {
        (i + 3..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
    } else if chars.get(i + 2) == Some(&'\'') {
        Some(i + 2)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests
// ---------------------------------------------------------------------------------------------

#[test]
fn lexer_drops_comments_and_finds_test_items() {
    let src = lex_rust(
        "fn a() { let s = \"// not a comment {\"; } // Instant::now\n\
         /* SystemTime::now */ fn b() { let c = '{'; let r = r#\"}\"#; }\n\
         #[cfg(test)]\n\
         mod tests {\n\
             fn t<'a>(x: &'a str) { if true { } }\n\
         }\n\
         fn c() {}\n",
    );
    assert_eq!(src.lines[0], "fn a() { let s = \"// not a comment {\"; } ");
    assert!(!src.lines[1].contains("SystemTime"));
    assert_eq!(src.test, vec![false, false, true, true, true, true, false, false]);
}

#[test]
fn patterns_are_words() {
    assert!(mentions("let x = rand::random();", "rand::"));
    assert!(!mentions("Operand::Lit", "rand::"));
    assert!(mentions("std::thread::sleep(d)", "sleep("));
    assert!(!mentions("fn no_sleep(d)", "sleep("));
    assert!(mentions("#[ignore]", "#[ignore"));
}

#[test]
fn manifest_dependencies() {
    let m = parse_manifest(
        "[package]\nname = \"x\"\n\n[dependencies]\nserde.workspace = true\ntokio = { workspace = true }\n\
         # hyper = \"1\"\n\n[dev-dependencies]\naxum = \"1\"\n\n[dependencies.http]\nversion = \"1\"\n\n[lints]\nworkspace = true\n",
    );
    let names: Vec<&str> = m.deps.iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(names, ["serde", "tokio", "http"]);
    assert!(m.workspace_lints);
}

#[test]
fn long_functions_are_found_by_their_bodies() {
    let body = |n: usize| "    let x = \"{\";\n".repeat(n);
    let text = format!(
        "pub(crate) async fn long(\n    a: u8,\n) -> u8 {{\n{}}}\n\
         fn short() {{\n{}}}\n\
         trait T {{\n    fn declared(&self);\n    fn provided(&self) {{ }}\n}}\n\
         fn one_line() -> u8 {{ 1 }}\n\
         #[cfg(test)]\nmod tests {{\n    fn long_test() {{\n{}    }}\n}}\n",
        body(4),
        body(3),
        body(9),
    );
    let src = lex_rust(&text);
    assert_eq!(long_functions(&src, 3), [(1, "long".to_string(), 4)]);
    assert_eq!(long_functions(&src, 2), [(1, "long".to_string(), 4), (9, "short".to_string(), 3)]);
    assert_eq!(fn_item("    pub(crate) const unsafe fn f<T>("), Some("f"));
    assert_eq!(fn_item("let f: fn(u8) = g;"), None);
    assert_eq!(fn_item("extern \"C\" fn cb() {"), Some("cb"));
}

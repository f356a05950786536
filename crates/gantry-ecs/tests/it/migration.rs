//! A data directory written by Gantry 0.1.0 (`tests/fixtures/release-0.1.0/gantry.db`, made by
//! `tools/make-release-fixture.py`) opens with the current layout: everything the release
//! created reads back through the operations, no key of the old layout remains, and opening
//! again changes nothing.

use crate::common::req;
use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx, keys, migrate};
use gantry_store::{BoxFuture, KeyValue, SqliteStore, Store, StoreError, Txn, TxnResult, Watch};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-0.1.0/gantry.db");
const ACCOUNT: &str = "000000000000";

/// A copy of the fixture in a directory of its own.
fn fixture_copy(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gantry-migration-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("gantry.db");
    std::fs::copy(FIXTURE, &db).unwrap();
    db
}

fn all_keys(store: &dyn Store) -> Vec<String> {
    store.range("", None, usize::MAX).into_iter().map(|kv| kv.key).collect()
}

fn control(store: Arc<SqliteStore>) -> ControlPlane {
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    ControlPlane::new(store, clock, Arc::new(SeededIds::new(3)))
}

fn ctx(region: &str) -> Ctx {
    Ctx::root(Scope::new(ACCOUNT, region))
}

fn arn(region: &str, resource: &str) -> String {
    format!("arn:aws:ecs:{region}:{ACCOUNT}:{resource}")
}

#[tokio::test]
async fn a_release_0_1_0_data_directory_migrates_and_reads_back() {
    let db = fixture_copy("reads-back");
    let store = SqliteStore::open(&db).unwrap();
    let before = all_keys(&store);
    assert!(before.iter().any(|k| k.starts_with("/_node/")), "the fixture is of the old layout");
    assert!(before.iter().all(|k| !keys::owns(k)), "no key of the fixture names its service");

    let m = migrate(&store).await.unwrap();
    // 3 task definitions, 3 instances (td-status, ci-status), 4 unstopped tasks (node index) and
    // the ACTIVE service `web` (the scheduler's index).
    assert_eq!((m.reindexed, m.dropped, m.index_mismatches), (11, 11, 0), "{m:?}");
    assert_eq!(m.moved + m.dropped, before.len(), "{m:?}");
    let after = all_keys(&store);
    // The layout upgrade then derived what 0.1.0 did not keep: counters, ListTasks' and the
    // retention's rows (and its mark).
    // 0.1.0's client tokens had no expiry: the upgrade drops them (a write and a key less each).
    let tokens = before.iter().filter(|k| k.contains("/client-token/")).count();
    assert_eq!(tokens, 2);
    assert_eq!(after.len(), before.len() + m.upgraded - 2 * tokens, "{m:?}");
    assert!(after.iter().all(|k| !k.contains("/client-token/")));
    let derived = gantry_ecs::migrate::derive(&store).unwrap();
    assert_eq!(gantry_ecs::migrate::counters(&store), derived.counters, "the counters are a full recount");
    for k in &after {
        assert!(keys::owns(k), "{k} is not under ECS's prefixes");
        assert!(migrate::new_key(k).is_none(), "{k} is of the old layout");
    }
    drop(store);

    // Reopened from disk, as the binary would.
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let revision = store.revision();
    assert_eq!(migrate(&*store).await.unwrap(), gantry_ecs::Migration::default(), "a second open is a no-op");
    assert_eq!(store.revision(), revision);
    let cp = control(store.clone());
    let (us, eu) = (ctx("us-east-1"), ctx("eu-west-1"));

    // Clusters and their counts.
    let clusters = cp.list_clusters(&us, req(json!({}))).unwrap().cluster_arns.unwrap();
    assert_eq!(clusters, [arn("us-east-1", "cluster/dev"), arn("us-east-1", "cluster/prod")]);
    let edge = cp.list_clusters(&eu, req(json!({}))).unwrap().cluster_arns.unwrap();
    assert_eq!(edge, [arn("eu-west-1", "cluster/edge")]);
    let described = cp.describe_clusters(&us, req(json!({"clusters": ["prod", "dev"]}))).unwrap();
    let c = described.clusters.unwrap();
    let counts: Vec<_> = c
        .iter()
        .map(|c| {
            (
                c.cluster_name.clone().unwrap(),
                c.registered_container_instances_count,
                c.active_services_count,
                c.running_tasks_count,
                c.pending_tasks_count,
            )
        })
        .collect();
    // prod: 2 instances, service `web`, one task RUNNING, the service's two and the Fargate one
    // provisioning; dev: its DRAINING instance still counts as registered.
    assert_eq!(counts, [("prod".into(), 2, 1, 1, 3), ("dev".into(), 1, 0, 0, 0)]);

    // Task definitions, through the status index the migration derived again.
    let list = |status: &str, prefix: Option<&str>| {
        cp.list_task_definitions(&us, req(json!({"status": status, "familyPrefix": prefix})))
            .unwrap()
            .task_definition_arns
            .unwrap()
    };
    let td = |r: &str| arn("us-east-1", &format!("task-definition/{r}"));
    assert_eq!(list("ACTIVE", None), [td("fg:1"), td("web:2")]);
    assert_eq!(list("INACTIVE", None), [td("web:1")]);
    assert_eq!(list("ACTIVE", Some("web")), [td("web:2")]);
    assert!(list("DELETE_IN_PROGRESS", None).is_empty());
    let latest =
        cp.describe_task_definition(&us, req(json!({"taskDefinition": "web", "include": ["TAGS"]}))).unwrap();
    assert_eq!(latest.task_definition.unwrap().revision, 2);
    assert_eq!(latest.tags.unwrap()[0].key.as_deref(), Some("tier"));

    // Container instances, through the status index.
    let instances = |cluster: &str, status: Option<&str>| {
        cp.list_container_instances(&us, req(json!({"cluster": cluster, "status": status})))
            .unwrap()
            .container_instance_arns
            .unwrap()
    };
    assert_eq!(instances("prod", None).len(), 2);
    assert_eq!(instances("dev", Some("DRAINING")).len(), 1);
    assert!(instances("dev", Some("ACTIVE")).is_empty());

    // The service, and the scheduler's index of it, whose value is the service's new key.
    let svc = cp.describe_services(&us, req(json!({"cluster": "prod", "services": ["web"]}))).unwrap();
    let s = &svc.services.unwrap()[0];
    assert_eq!(s.status.as_deref(), Some("ACTIVE"));
    assert_eq!(s.desired_count, 2);
    assert_eq!(s.task_definition.as_deref(), Some(td("web:2").as_str()));
    assert_eq!(s.running_count + s.pending_count, 2);
    let scheduled = store.range(&keys::scheduled_services_prefix(), None, 10);
    assert_eq!(scheduled.len(), 1);
    assert_eq!(&scheduled[0].value[..], keys::service(&us.scope, "prod", "web").as_bytes());

    // Its service deployment, stored by 0.1.0 as ECS's shape, reads as the domain record does.
    let history = cp
        .list_service_deployments(&us, req(json!({"cluster": "prod", "service": "web"})))
        .unwrap()
        .service_deployments
        .unwrap();
    assert_eq!(history.len(), 1);
    let sd_arn = arn("us-east-1", "service-deployment/prod/web/5528817163459607562");
    assert_eq!(history[0].service_deployment_arn.as_deref(), Some(sd_arn.as_str()));
    assert_eq!(history[0].created_at, Some(1_796_334_293.524));
    let sd = cp.describe_service_deployments(&us, req(json!({"serviceDeploymentArns": [sd_arn]}))).unwrap();
    let sd = serde_json::to_value(&sd.service_deployments.unwrap()[0]).unwrap();
    assert_eq!(sd["status"], "IN_PROGRESS", "{sd}");
    assert_eq!(sd["updatedAt"], 1_796_334_293.541, "{sd}");
    assert_eq!(
        sd["deploymentCircuitBreaker"],
        json!({"status": "DISABLED", "failureCount": 0, "threshold": 3})
    );

    // Tasks: the service's two, the RUNNING one and the Fargate one; the STOPPED one.
    let tasks = |extra: serde_json::Value| {
        let mut r = json!({"cluster": "prod"});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        cp.list_tasks(&us, req(r)).unwrap().task_arns.unwrap()
    };
    let unstopped = tasks(json!({}));
    assert_eq!(unstopped.len(), 4);
    assert_eq!(tasks(json!({"serviceName": "web"})).len(), 2);
    assert_eq!(tasks(json!({"launchType": "FARGATE"})).len(), 1);
    let stopped = tasks(json!({"desiredStatus": "STOPPED"}));
    assert_eq!(stopped.len(), 1);
    let mut all = unstopped.clone();
    all.extend(stopped.clone());
    let described = cp.describe_tasks(&us, req(json!({"cluster": "prod", "tasks": all}))).unwrap();
    let mut statuses: Vec<_> = described
        .tasks
        .unwrap()
        .iter()
        .map(|t| (t.last_status.clone().unwrap(), t.started_by.clone().unwrap_or_default()))
        .collect();
    statuses.sort();
    assert_eq!(statuses.len(), 5);
    assert_eq!(statuses.iter().filter(|(s, _)| s == "RUNNING").count(), 1);
    assert_eq!(statuses.iter().filter(|(s, b)| s == "STOPPED" && b == "fixture").count(), 1);
    assert_eq!(statuses.iter().filter(|(s, _)| s == "PROVISIONING").count(), 3);

    // Nodes: the Fargate node, and the node index (what agents poll) for the four tasks.
    assert_eq!(cp.fargate_nodes().unwrap().len(), 1);
    assert_eq!(store.count(&keys::node_tasks_root()), 4);

    // Writes after the move keep the derived indexes: web:2 deregistered moves its status row.
    cp.deregister_task_definition(&us, req(json!({"taskDefinition": "web:2"}))).await.unwrap();
    assert_eq!(list("INACTIVE", None), [td("web:1"), td("web:2")]);
    assert_eq!(list("ACTIVE", None), [td("fg:1")]);
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// Records as the current release stores them read back unchanged: a service deployment written
/// as ECS's `ServiceDeployment` shape (before the history had a record type of its own), with
/// every part a deployment may have, is answered by DescribeServiceDeployments field for field.
#[tokio::test]
async fn service_deployments_stored_by_the_current_release_read_back_unchanged() {
    let dir = std::env::temp_dir().join(format!("gantry-migration-current-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(&dir.join("gantry.db")).unwrap());
    let us = ctx("us-east-1");
    let sd_arn = arn("us-east-1", "service-deployment/prod/web/7");
    let stored = json!({
        "serviceDeploymentArn": sd_arn,
        "serviceArn": arn("us-east-1", "service/prod/web"),
        "clusterArn": arn("us-east-1", "cluster/prod"),
        "createdAt": 1_796_334_293.524,
        "startedAt": 1_796_334_293.524,
        "finishedAt": 1_796_334_400.001,
        "updatedAt": 1_796_334_400.001,
        "sourceServiceRevisions": [{"arn": arn("us-east-1", "service-revision/prod/web/6"),
            "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0,
            "requestedTestTrafficWeight": 0.0, "requestedProductionTrafficWeight": 0.0}],
        "targetServiceRevision": {"arn": arn("us-east-1", "service-revision/prod/web/6"),
            "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0,
            "requestedTestTrafficWeight": 0.0, "requestedProductionTrafficWeight": 0.0},
        "status": "ROLLBACK_SUCCESSFUL",
        "statusReason": "ECS deployment circuit breaker: tasks failed to start.",
        "lifecycleStage": "BAKE_TIME",
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true},
            "maximumPercent": 200, "minimumHealthyPercent": 100,
            "alarms": {"alarmNames": ["high-5xx"], "rollback": true, "enable": true}},
        "rollback": {"reason": "ECS deployment circuit breaker: tasks failed to start.",
            "startedAt": 1_796_334_350.25,
            "serviceRevisionArn": arn("us-east-1", "service-revision/prod/web/6")},
        "deploymentCircuitBreaker": {"status": "TRIGGERED", "failureCount": 4, "threshold": 3},
        "alarms": {"status": "MONITORING", "alarmNames": ["high-5xx"], "triggeredAlarmNames": []}
    });
    let key = keys::service_deployment(&us.scope, "prod", "web", "7");
    let txn = Txn::new().put(&key, gantry_ecs::pack(serde_json::to_vec(&stored).unwrap()));
    store.txn(txn).await.unwrap();
    let m = migrate(&*store).await.unwrap();
    assert_eq!((m.moved, m.reindexed, m.dropped, m.index_mismatches), (0, 0, 0, 0), "nothing to move: {m:?}");
    assert_eq!(migrate(&*store).await.unwrap(), gantry_ecs::Migration::default(), "a second open is a no-op");

    let cp = control(store.clone());
    let out = cp.describe_service_deployments(&us, req(json!({"serviceDeploymentArns": [sd_arn]}))).unwrap();
    assert_eq!(out.failures.unwrap().len(), 0);
    let answered = serde_json::to_value(&out.service_deployments.unwrap()[0]).unwrap();
    assert_eq!(answered, stored);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SQLite store whose transactions go through `hook` (given the store and the call's number):
/// to inject a failure, or to commit another server's write just before this process's.
struct Hooked {
    inner: Arc<SqliteStore>,
    txns: AtomicUsize,
    hook: TxnHook,
}

type TxnHook =
    Box<dyn Fn(&Arc<SqliteStore>, usize, Txn) -> BoxFuture<Result<TxnResult, StoreError>> + Send + Sync>;

impl Hooked {
    /// Every write fails, to show the migration's all-or-nothing: it writes in one
    /// transaction, and when that fails nothing has moved.
    fn failing(inner: SqliteStore) -> Self {
        Hooked {
            inner: Arc::new(inner),
            txns: AtomicUsize::new(0),
            hook: Box::new(|_, _, _| {
                Box::pin(async { Err(StoreError::Storage("injected: the disk is full".into())) })
            }),
        }
    }

    /// Another server's transaction `first` commits just before this process's first one (two
    /// servers on one etcd upgrading at the same moment).
    fn racing(first: Txn) -> Self {
        Hooked {
            inner: Arc::new(SqliteStore::in_memory().unwrap()),
            txns: AtomicUsize::new(0),
            hook: Box::new(move |inner, n, txn| {
                let inner = inner.clone();
                let first = (n == 0).then(|| first.clone());
                Box::pin(async move {
                    if let Some(first) = first {
                        inner.txn(first).await?;
                    }
                    inner.txn(txn).await
                })
            }),
        }
    }
}

impl Store for Hooked {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.inner.get(key)
    }
    fn range(&self, prefix: &str, after: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.inner.range(prefix, after, limit)
    }
    fn range_rev(&self, prefix: &str, before: Option<&str>, limit: usize) -> Vec<KeyValue> {
        self.inner.range_rev(prefix, before, limit)
    }
    fn count(&self, prefix: &str) -> usize {
        self.inner.count(prefix)
    }
    fn revision(&self) -> i64 {
        self.inner.revision()
    }
    fn txn(&self, txn: Txn) -> BoxFuture<Result<TxnResult, StoreError>> {
        let n = self.txns.fetch_add(1, Ordering::Relaxed);
        (self.hook)(&self.inner, n, txn)
    }
    fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from_revision)
    }
    fn compact(&self, revision: i64) -> BoxFuture<Result<(), StoreError>> {
        self.inner.compact(revision)
    }
}

fn snapshot(db: &Path) -> Vec<(String, Vec<u8>, i64)> {
    let store = SqliteStore::open(db).unwrap();
    store
        .range("", None, usize::MAX)
        .into_iter()
        .map(|kv| (kv.key, kv.value.to_vec(), kv.mod_revision))
        .collect()
}

#[tokio::test]
async fn a_failed_migration_leaves_the_old_layout_intact_and_a_retry_completes_it() {
    let db = fixture_copy("atomic");
    let original = snapshot(&db);
    let failing = Hooked::failing(SqliteStore::open(&db).unwrap());
    let err = migrate(&failing).await.unwrap_err();
    assert!(err.message.contains("injected"), "{}", err.message);
    assert_eq!(failing.txns.load(Ordering::Relaxed), 1, "the whole move is one transaction");
    drop(failing);
    assert_eq!(snapshot(&db), original, "nothing moved");

    // The next open migrates.
    let store = SqliteStore::open(&db).unwrap();
    let m = migrate(&store).await.unwrap();
    assert_eq!(m.moved + m.dropped, original.len());
    assert!(all_keys(&store).iter().all(|k| keys::owns(k)));
    let _ = std::fs::remove_dir_all(db.parent().unwrap());
}

/// A write that CreateCluster makes after the migration lands under ECS's prefix, and ECS
/// refuses to write outside it.
#[tokio::test]
async fn new_writes_go_under_the_service_prefix() {
    let (cp, ctx, _) = crate::common::setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let keys_now = all_keys(&**cp.store());
    assert_eq!(keys_now, ["/000000000000/us-east-1/ecs/cluster/c"]);
}

#[tokio::test]
async fn an_upgrade_another_server_committed_first_is_done_not_an_error() {
    let store =
        Hooked::racing(Txn::new().put(migrate::layout_key(), migrate::LAYOUT.to_string().into_bytes()));
    assert_eq!(migrate::upgrade(&store).await.unwrap(), (0, 0));
    assert_eq!(
        store.get(&migrate::layout_key()).map(|kv| gantry_store::counter(&kv.value)),
        Some(migrate::LAYOUT)
    );
}

#[tokio::test]
async fn a_mark_moved_below_the_layout_derives_again() {
    let store = Hooked::racing(Txn::new().put(migrate::layout_key(), b"1".to_vec()));
    let (written, revision) = migrate::upgrade(&store).await.unwrap();
    assert!(written >= 1 && revision > 0, "{written} {revision}");
    assert_eq!(
        store.get(&migrate::layout_key()).map(|kv| gantry_store::counter(&kv.value)),
        Some(migrate::LAYOUT)
    );
}

/// A store of layout 2 (before the clusters' registered-instance counters) gains them when it
/// is upgraded: DescribeClusters counts its instances again, and DRAINING ones too.
#[tokio::test]
async fn a_layout_2_store_gains_the_registered_instance_counters() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let cp = control(store.clone());
    let ctx = ctx("us-east-1");
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let mut arns = Vec::new();
    for _ in 0..3 {
        let r = cp
            .register_container_instance(
                &ctx,
                req(json!({"cluster": "c", "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]})),
            )
            .await
            .unwrap();
        arns.push(r.container_instance.unwrap().container_instance_arn.unwrap());
    }
    cp.update_container_instances_state(
        &ctx,
        req(json!({"cluster": "c", "containerInstances": [arns[0]], "status": "DRAINING"})),
    )
    .await
    .unwrap();
    cp.deregister_container_instance(&ctx, req(json!({"cluster": "c", "containerInstance": arns[1]})))
        .await
        .unwrap();
    let registered = |cp: &ControlPlane| {
        cp.describe_clusters(&ctx, req(json!({"clusters": ["c"]}))).unwrap().clusters.unwrap()[0]
            .registered_container_instances_count
    };
    assert_eq!(registered(&cp), 2, "kept by the record layer: one ACTIVE, one DRAINING");

    // The store as layout 2 left it: no such counter.
    let counter = keys::cluster_count(&ctx.scope, "c", "registeredContainerInstancesCount");
    let txn = Txn::new().delete(counter.clone()).put(migrate::layout_key(), b"2".to_vec());
    store.txn(txn).await.unwrap();
    assert_eq!(registered(&cp), 0);

    let (written, _) = migrate::upgrade(&*store).await.unwrap();
    assert_eq!(written, 2, "the counter and the layout's mark");
    assert_eq!(store.get(&counter).map(|kv| gantry_store::counter(&kv.value)), Some(2));
    assert_eq!(registered(&control(store.clone())), 2);
}

//! The deployment record end to end: three-way plans, saved plans, the lock,
//! killed deploys and history, checked through the DynamoDB and Lambda APIs.

use crate::support::{Emulator, check_schema, copy_example, edit, finish, root, spawn_slx};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PK: &str = "orders#dev";

/// The record entries of the queue-worker example, by address, read through the API.
async fn entries(db: &aws_sdk_dynamodb::Client) -> BTreeMap<String, Value> {
    items(db, "applied#").await.into_iter().map(|doc| (doc["address"].as_str().unwrap().to_string(), doc)).collect()
}

async fn items(db: &aws_sdk_dynamodb::Client, prefix: &str) -> Vec<Value> {
    let out = db
        .query()
        .table_name("slx-state")
        .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
        .expression_attribute_values(":pk", AttributeValue::S(PK.to_string()))
        .expression_attribute_values(":p", AttributeValue::S(prefix.to_string()))
        .send()
        .await
        .unwrap();
    out.items().iter().map(|i| serde_json::from_str(i["doc"].as_s().unwrap()).unwrap()).collect()
}

async fn lock_holder(db: &aws_sdk_dynamodb::Client) -> Option<String> {
    let key = |k: &str, v: &str| (k.to_string(), AttributeValue::S(v.to_string()));
    let out = db
        .get_item()
        .table_name("slx-state")
        .set_key(Some([key("pk", PK), key("sk", "lock")].into()))
        .send()
        .await
        .ok()?;
    let item = out.item()?;
    let expires: u64 = item["expires"].as_n().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    (expires >= now).then(|| item["holder"].as_s().unwrap().clone())
}

async fn memory(lambda: &aws_sdk_lambda::Client, name: &str) -> Option<i32> {
    lambda.get_function_configuration().function_name(name).send().await.unwrap().memory_size()
}

#[tokio::test]
async fn drift_conflicts_and_saved_plans() {
    let emu = Emulator::start();
    let c = emu.sdk().await;
    let (db, lambda, logs) =
        (aws_sdk_dynamodb::Client::new(&c), aws_sdk_lambda::Client::new(&c), aws_sdk_cloudwatchlogs::Client::new(&c));
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();

    // Before any deploy there is nothing to compare with: drift checks refuse to guess.
    let run = emu.slx(&["plan", "-f", file, "--fail-on-drift"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("cannot be told from spec changes"), "{run:?}");

    let run = emu.slx_env(&[("GITHUB_SHA", "0123456789abcdef0123")], &["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");

    // The record holds what was applied, per address, and the table has PITR on.
    let recorded = entries(&db).await;
    assert_eq!(recorded.len(), 9, "{recorded:?}");
    assert_eq!(recorded["function.worker"]["config"]["memory"], 512);
    assert_eq!(recorded["function.worker"]["name"], "orders-dev-worker");
    let backups = db.describe_continuous_backups().table_name("slx-state").send().await.unwrap();
    let pitr = backups.continuous_backups_description().unwrap().point_in_time_recovery_description().unwrap();
    assert_eq!(pitr.point_in_time_recovery_status().map(|s| s.as_str()), Some("ENABLED"));
    let history = items(&db, "deploy#").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["result"], "succeeded");
    assert_eq!(history[0]["commit"], "0123456789abcdef0123");
    assert_eq!(history[0]["summary"], "9 to create, 0 to update, 0 to replace, 0 to delete");

    // Drift: memory changed by hand.
    lambda.update_function_configuration().function_name("orders-dev-worker").memory_size(1024).send().await.unwrap();
    let run = emu.slx(&["plan", "-f", file, "--fail-on-drift", "--detailed-exitcode"]);
    assert_eq!(run.code, 3, "drift wins over changes: {run:?}");
    assert!(
        run.stdout.contains(
            "  ~ function.worker  update  orders-dev-worker  [drift]\n      memory: 1024 → 512  (drift: changed outside slx; deploy reverts it)\n"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("By cause: 0 spec, 1 drift, 0 conflict, 0 orphan."), "{run:?}");

    // The same field changed in the spec too: a conflict showing all three values;
    // the timeout is a plain spec change, which --drift-only leaves out.
    edit(&spec, "    memory: 512\n    timeout: 30\n", "    memory: 256\n    timeout: 20\n");
    // A log group deleted by hand is drift as well.
    logs.delete_log_group().log_group_name("/aws/lambda/orders-dev-intake").send().await.unwrap();
    let out = dir.path().join("plan.json");
    let run = emu.slx(&["plan", "-f", file, "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .contains("  + log_group.intake  create  /aws/lambda/orders-dev-intake  [drift: deleted outside slx]\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("  ~ function.worker   update  orders-dev-worker  [conflict]\n"), "{run:?}");
    assert!(
        run.stdout.contains(
            "      memory: 1024 → 256  (conflict: last deployed 512; changed both in the spec and outside slx; deploy applies the spec)\n"
        ),
        "{run:?}"
    );
    assert!(run.stdout.contains("      timeout: 30 → 20\n"), "{run:?}");
    assert!(run.stdout.contains("By cause: 0 spec, 1 drift, 1 conflict, 0 orphan."), "{run:?}");
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let worker = plan["actions"].as_array().unwrap().iter().find(|a| a["address"] == "function.worker").unwrap();
    assert_eq!(worker["cause"], "conflict");
    assert_eq!(
        worker["fields"],
        serde_json::json!([
            { "field": "memory", "before": 1024, "after": 256, "cause": "conflict", "recorded": 512 },
            { "field": "timeout", "before": 30, "after": 20, "cause": "spec" }
        ])
    );
    let drift = emu.slx(&["plan", "-f", file, "--drift-only", "--format", "json"]);
    let drift_path = dir.path().join("drift.json");
    std::fs::write(&drift_path, &drift.stdout).unwrap();
    let view: Value = serde_json::from_str(&drift.stdout).unwrap();
    let addresses: Vec<&str> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] != "no_op")
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["log_group.intake", "function.worker"]);
    let worker = view["actions"].as_array().unwrap().iter().find(|a| a["address"] == "function.worker").unwrap();
    assert_eq!(worker["fields"].as_array().unwrap().len(), 1, "only the conflicting field: {view}");
    let md = emu.slx(&["plan", "-f", file, "--drift-only", "--format", "markdown"]);
    assert!(
        md.stdout.contains(
            "| `~` | `function.worker` | update | conflict | `memory`: `1024` → `256` (conflict; last deployed `512`) |"
        ),
        "{md:?}"
    );
    check_schema(&root().join("schemas/plan.schema.json"), &[&out, &drift_path]);

    // AWS moves after the plan was saved: deploying that plan refuses and changes nothing.
    lambda.update_function_configuration().function_name("orders-dev-worker").memory_size(2048).send().await.unwrap();
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--plan", out.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("AWS or the spec changed since the plan was made"), "{run:?}");
    assert!(run.stderr.contains("function.worker: memory is now 2048 → 256"), "{run:?}");
    assert!(emu.writes().is_empty(), "{:?}", emu.writes());

    // A fresh saved plan applies exactly, without a prompt, and the record follows.
    let run = emu.slx(&["plan", "-f", file, "--out", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--plan", out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(memory(&lambda, "orders-dev-worker").await, Some(256));
    let recorded = entries(&db).await;
    assert_eq!(recorded["function.worker"]["config"]["memory"], 256);
    assert_eq!(recorded["function.worker"]["config"]["timeout"], 20);
    let run = emu.slx(&["plan", "-f", file, "--fail-on-drift", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "converged: {run:?}");

    // A spec reverted by hand to what AWS already has is no change, but the record catches up.
    lambda.update_function_configuration().function_name("orders-dev-worker").memory_size(512).send().await.unwrap();
    edit(&spec, "    memory: 256\n", "    memory: 512\n");
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("deploy records 1 unchanged resources the record lacks."), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(entries(&db).await["function.worker"]["config"]["memory"], 512);

    let run = emu.slx(&["history", "-f", file]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains("  deploy ")).collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    assert!(lines[0].contains("succeeded") && lines[0].contains("0 to create, 0 to update"), "{run:?}");
    assert!(lines[2].contains("commit 0123456789ab  (9 to create"), "{run:?}");

    // Destroy empties the record as it deletes, and is history too.
    let run = emu.slx(&["destroy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(entries(&db).await.is_empty(), "{:?}", entries(&db).await);
    let history = items(&db, "deploy#").await;
    assert_eq!((history[3]["command"].as_str(), history[3]["result"].as_str()), (Some("destroy"), Some("succeeded")));
}

#[tokio::test]
async fn killed_deploys_converge_and_orphans_go() {
    let emu = Emulator::start();
    let c = emu.sdk().await;
    let (db, lambda) = (aws_sdk_dynamodb::Client::new(&c), aws_sdk_lambda::Client::new(&c));
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes"]).code, 0);
    let base = std::fs::read_to_string(&spec).unwrap();

    // Kills a deploy of `base` plus function `name` (with queue `name-q`) while
    // Lambda is still creating the function, and returns the killed pid.
    let kill_mid_way = |name: &str| {
        let extra = format!(
            "  {name}:\n    handler: app.handler\n    code: ./src/worker\n    environment:\n      QUEUE: ${{queues.{name}-q.url}}\n"
        );
        let with = base.replace("queues:\n", &format!("queues:\n  {name}-q: {{}}\n")) + &extra;
        std::fs::write(&spec, with).unwrap();
        emu.configure(r#"{"lambda_update_seconds": 5}"#);
        emu.reset_calls();
        let mut child = spawn_slx(&emu.url, &["deploy", "-f", file, "--yes"]);
        let target = format!("orders-dev-{name}");
        let started = Instant::now();
        while !emu.calls().iter().any(|c| c.operation == "CreateFunction") {
            if started.elapsed() > Duration::from_secs(60) || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("CreateFunction never came: {:?}", finish(child));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let run = finish(child);
        assert_eq!(run.code, -1, "killed mid-way, not finished: {run:?}");
        emu.configure(r#"{"lambda_update_seconds": 0}"#);
        target
    };

    let target = kill_mid_way("slow");
    // The record holds exactly what finished: the new queue, role and log group, not the function.
    let recorded = entries(&db).await;
    for a in ["queue.slow-q", "role.slow", "log_group.slow"] {
        assert!(recorded.contains_key(a), "{a} finished and is recorded: {:?}", recorded.keys());
    }
    assert!(!recorded.contains_key("function.slow"), "the function did not finish");
    assert!(lambda.get_function().function_name(&target).send().await.is_ok(), "but AWS has it");
    let history = items(&db, "deploy#").await;
    assert_eq!(history.last().unwrap()["result"], "running", "nobody closed the killed run's history item");

    // The dead run still holds the lock: deploys fail naming it; plans still work.
    let holder = lock_holder(&db).await.expect("the killed run's lease has not expired");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(&format!("is locked by {holder} (deploy, since ")), "{run:?}");
    assert!(run.stderr.contains("hint: wait for that run to finish"), "{run:?}");
    let run = emu.slx(&["plan", "-f", file]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("note: a run holds the lock"), "{run:?}");
    let run = emu.slx(&["unlock", "-f", file]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("pass --force"), "{run:?}");
    let run = emu.slx(&["unlock", "-f", file, "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(lock_holder(&db).await, None);
    let run = emu.slx(&["history", "-f", file]);
    assert!(run.stdout.lines().nth(2).unwrap().contains("did not finish"), "{run:?}");

    // Re-running the same deploy converges; the function is recorded now.
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(entries(&db).await.contains_key("function.slow"));
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");
    let functions = lambda.list_functions().send().await.unwrap();
    assert_eq!(functions.functions().iter().filter(|f| f.function_name() == Some(target.as_str())).count(), 1);

    // Killed again, and this time the change is abandoned: the half-made
    // function is an orphan (in neither the spec nor the record) and goes.
    let target = kill_mid_way("slow2");
    assert_eq!(emu.slx(&["unlock", "-f", file, "--force"]).code, 0);
    std::fs::write(&spec, &base).unwrap();
    let run = emu.slx(&["plan", "-f", file]);
    assert!(
        run.stdout.contains(&format!(
            "  - function.slow2   delete  {target}  [orphan: left by an interrupted run, in neither the spec nor the record]\n"
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("  - role.slow2 "), "recorded, so removed from the spec, not an orphan: {run:?}");
    assert!(run.stdout.contains("By cause: 7 spec, 0 drift, 0 conflict, 1 orphan."), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(lambda.get_function().function_name(&target).send().await.is_err(), "the orphan is gone");
    assert!(lambda.get_function().function_name("orders-dev-slow").send().await.is_err());
    let recorded = entries(&db).await;
    assert_eq!(recorded.len(), 9, "back to the example's resources: {:?}", recorded.keys());
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn concurrent_deploys_take_turns() {
    let emu = Emulator::start();
    let c = emu.sdk().await;
    let db = aws_sdk_dynamodb::Client::new(&c);
    let dir = copy_example("queue-worker");
    let file = dir.path().join("slx.yaml");
    let file = file.to_str().unwrap();
    emu.configure(r#"{"lambda_update_seconds": 3}"#);

    let first = spawn_slx(&emu.url, &["deploy", "-f", file, "--yes"]);
    let started = Instant::now();
    let holder = loop {
        if let Some(h) = lock_holder(&db).await {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "nobody took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let patient = spawn_slx(&emu.url, &["deploy", "-f", file, "--yes", "--lock-timeout", "2m"]);
    let impatient = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(impatient.code, 1, "{impatient:?}");
    assert!(impatient.stderr.contains(&format!("is locked by {holder}")), "{impatient:?}");
    let plan = emu.slx(&["plan", "-f", file]);
    assert_eq!(plan.code, 0, "plans never lock: {plan:?}");

    let (a, b) = (finish(first), finish(patient));
    assert_eq!((a.code, b.code), (0, 0), "{a:?}\n{b:?}");
    // The first applied everything; the patient one waited, planned again and found nothing to do.
    assert!(a.stdout.contains("Applied: 9 changed"), "{a:?}");
    assert!(b.stderr.contains(&format!("waiting for the lock held by {holder}")), "{b:?}");
    assert!(b.stdout.ends_with("No changes. 9 resources match the spec.\n"), "{b:?}");
    let creates = |op: &str| emu.calls().iter().filter(|c| c.operation == op).count();
    assert_eq!(creates("CreateFunction"), 2, "nothing is applied twice");
    assert_eq!(creates("CreateQueue"), 3, "nothing is applied twice");
    assert_eq!(items(&db, "deploy#").await.len(), 1, "one deployment happened");
}

/// The lock's conditional writes against DynamoDB: a lease excludes others,
/// a run that planned before someone else's deploy must plan again, and only
/// the holder renews or releases. The run's history item lands with the
/// lock, never without it.
#[tokio::test]
async fn lease_semantics() {
    use slx::record::{Attempt, Key, Lease, Store};
    let emu = Emulator::start();
    let aws = slx::provider::Aws::new(&emu.sdk().await).unwrap();
    let store = aws.record("locks");
    store.ensure().await.unwrap();
    store.ensure().await.unwrap();
    let key = Key { stack: "s".into(), stage: "dev".into() };
    let lease = |token: &str, generation: u64, expires: u64| Lease {
        holder: format!("holder {token}"),
        operation: "deploy".into(),
        token: token.into(),
        acquired: 100,
        expires,
        generation,
    };
    let opening =
        |id: &str| slx::record::Deployment { id: id.into(), ..slx::record::start_deployment("deploy", String::new()) };
    let history = || async { store.deployments(&key, 10).await.unwrap().into_iter().map(|d| d.id).collect::<Vec<_>>() };
    assert_eq!(store.lease(&key).await.unwrap(), None);
    assert_eq!(store.try_lock(&key, &lease("a", 1, 1000), 0, 100, &opening("1")).await.unwrap(), Attempt::Taken);
    assert_eq!(history().await, ["1"], "the history item came with the lock");
    assert_eq!(
        store.try_lock(&key, &lease("b", 1, 1000), 0, 100, &opening("2")).await.unwrap(),
        Attempt::Held(lease("a", 1, 1000)),
        "held: the second run learns who holds it"
    );
    assert_eq!(history().await, ["1"], "no history item without the lock");
    assert!(!store.renew(&key, "b", 2000).await.unwrap(), "only the holder renews");
    assert!(store.renew(&key, "a", 2000).await.unwrap());
    assert_eq!(store.unlock(&key, Some("b")).await.unwrap(), None, "only the holder releases");
    assert_eq!(store.unlock(&key, Some("a")).await.unwrap().map(|l| l.expires), Some(2000));
    // Free again, but at generation 1: a run that saw generation 0 planned before it and must plan again.
    assert_eq!(store.try_lock(&key, &lease("b", 1, 1000), 0, 100, &opening("3")).await.unwrap(), Attempt::Moved);
    assert_eq!(store.try_lock(&key, &lease("b", 2, 1000), 1, 100, &opening("4")).await.unwrap(), Attempt::Taken);
    // An expired lease is free for whoever saw its generation.
    assert_eq!(store.try_lock(&key, &lease("c", 3, 3000), 2, 1001, &opening("5")).await.unwrap(), Attempt::Taken);
    assert_eq!(history().await, ["5", "4", "1"]);
    // Breaking a lock removes whoever holds it.
    assert_eq!(store.unlock(&key, None).await.unwrap().map(|l| l.holder), Some("holder c".to_string()));
    assert!(!store.renew(&key, "x", 10).await.unwrap());
    assert_eq!(store.lease(&key).await.unwrap().map(|l| (l.generation, l.expires)), Some((3, 0)));
}

//! End to end against the emulator, checked through the AWS API.

use crate::support::{Aws, Emulator, copy_example, percent_decode};
use aws_sdk_sqs::types::QueueAttributeName as A;
use serde_json::Value;
use std::collections::HashMap;

impl Aws {
    async fn function(&self, name: &str) -> aws_sdk_lambda::operation::get_function::GetFunctionOutput {
        self.lambda.get_function().function_name(name).send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"))
    }

    async fn queue_url(&self, name: &str) -> Option<String> {
        self.sqs.get_queue_url().queue_name(name).send().await.ok().and_then(|o| o.queue_url().map(String::from))
    }

    async fn queue_attrs(&self, name: &str) -> HashMap<A, String> {
        let url = self.queue_url(name).await.unwrap_or_else(|| panic!("queue {name} missing"));
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::All)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()
            .clone()
    }

    async fn queue_tags(&self, name: &str) -> HashMap<String, String> {
        let url = self.queue_url(name).await.unwrap();
        self.sqs.list_queue_tags().queue_url(url).send().await.unwrap().tags().cloned().unwrap_or_default()
    }

    async fn role_policy(&self, role: &str) -> Value {
        let doc = self.iam.get_role_policy().role_name(role).policy_name("slx").send().await.unwrap();
        let text = doc.policy_document();
        let decoded = if text.starts_with('{') { text.to_string() } else { percent_decode(text) };
        serde_json::from_str(&decoded).unwrap()
    }

    /// Everything in the account whose name says it is part of the stack.
    async fn leftovers(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for f in self.lambda.list_functions().send().await.unwrap().functions() {
            if f.function_name().unwrap().starts_with(prefix) {
                out.push(format!("function {}", f.function_name().unwrap()));
            }
        }
        for q in self.sqs.list_queues().queue_name_prefix(prefix).send().await.unwrap().queue_urls() {
            out.push(format!("queue {q}"));
        }
        for r in self.iam.list_roles().send().await.unwrap().roles() {
            if r.role_name().starts_with(prefix) {
                out.push(format!("role {}", r.role_name()));
            }
        }
        let groups = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(format!("/aws/lambda/{prefix}"))
            .send()
            .await
            .unwrap();
        for g in groups.log_groups() {
            out.push(format!("log group {}", g.log_group_name().unwrap()));
        }
        out
    }
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no {sid} in {policy}"))
}

#[tokio::test]
async fn queue_worker_lifecycle() {
    let emu = Emulator::start();
    let aws = Aws::new(&emu).await;
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();

    // First deploy creates everything.
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Plan: 9 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged."), "{run:?}");
    assert!(run.stdout.contains("Applied: 9 changed, 0 failed, 0 skipped."), "{run:?}");

    // Queues, redrive and tags, as specified.
    let orders = aws.queue_attrs("orders-dev-orders").await;
    let dlq = aws.queue_attrs("orders-dev-orders-dlq").await;
    assert_eq!(orders[&A::VisibilityTimeout], "60");
    let redrive: Value = serde_json::from_str(&orders[&A::RedrivePolicy]).unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dlq[&A::QueueArn].as_str());
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");
    assert_eq!(dlq[&A::MessageRetentionPeriod], "1209600");
    let tags = aws.queue_tags("orders-dev-orders").await;
    assert_eq!(tags.get("slx:stack").map(String::as_str), Some("orders"));
    assert_eq!(tags.get("slx:stage").map(String::as_str), Some("dev"));
    assert_eq!(tags.get("slx:address").map(String::as_str), Some("queue.orders"));
    let failed_arn = aws.queue_attrs("orders-dev-failed-invocations").await[&A::QueueArn].clone();

    // Functions, with values from defaults, vars and references.
    let intake = aws.function("orders-dev-intake").await;
    let c = intake.configuration().unwrap();
    assert_eq!(c.memory_size(), Some(256), "defaults.memory from vars");
    assert_eq!(c.timeout(), Some(10));
    assert_eq!(c.runtime().unwrap().as_str(), "python3.12");
    assert_eq!(c.architectures()[0].as_str(), "arm64");
    assert_eq!(c.handler(), Some("app.handler"));
    let env = c.environment().unwrap().variables().unwrap();
    assert_eq!(env.get("QUEUE_URL"), aws.queue_url("orders-dev-orders").await.as_ref());
    assert_eq!(env.get("STAGE").map(String::as_str), Some("dev"));
    assert_eq!(c.dead_letter_config().and_then(|d| d.target_arn()), Some(failed_arn.as_str()));
    assert!(c.role().unwrap().ends_with(":role/slx/orders/dev/orders-dev-intake"), "{:?}", c.role());
    let pkg = slx::package::build(&dir.path().join("src/intake")).unwrap();
    assert_eq!(c.code_sha256(), Some(pkg.sha256.as_str()), "the deterministic zip is what was uploaded");
    let itags = intake.tags().unwrap();
    assert_eq!(itags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(itags.get("slx:address").map(String::as_str), Some("function.intake"));

    let worker = aws.function("orders-dev-worker").await;
    assert_eq!(worker.configuration().unwrap().memory_size(), Some(512));
    assert_eq!(worker.configuration().unwrap().timeout(), Some(30));
    assert_eq!(worker.concurrency().and_then(|c| c.reserved_concurrent_executions()), Some(5));
    let eic = aws.lambda.get_function_event_invoke_config().function_name("orders-dev-worker").send().await.unwrap();
    assert_eq!(eic.maximum_retry_attempts(), Some(1));
    assert_eq!(eic.maximum_event_age_in_seconds(), Some(3600));
    assert_eq!(eic.destination_config().unwrap().on_failure().unwrap().destination(), Some(failed_arn.as_str()));

    // Roles: trust, least-privilege inline policy, no wildcard resources, tags.
    let role = aws.iam.get_role().role_name("orders-dev-worker").send().await.unwrap();
    let role = role.role().unwrap();
    assert_eq!(role.path(), "/slx/orders/dev/");
    assert!(role.tags().iter().any(|t| t.key() == "slx:address" && t.value() == "role.worker"));
    let wp = aws.role_policy("orders-dev-worker").await;
    assert_eq!(statement(&wp, "ConsumeQueues")["Resource"], serde_json::json!([orders[&A::QueueArn]]));
    assert_eq!(statement(&wp, "SendToQueues")["Resource"], serde_json::json!([failed_arn]));
    assert_eq!(
        statement(&wp, "Logs")["Resource"],
        serde_json::json!(["arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/orders-dev-worker:*"])
    );
    let ip = aws.role_policy("orders-dev-intake").await;
    assert_eq!(statement(&ip, "SendToQueues")["Resource"], serde_json::json!([failed_arn, orders[&A::QueueArn]]));
    for p in [&wp, &ip] {
        for s in p["Statement"].as_array().unwrap() {
            for r in s["Resource"].as_array().unwrap() {
                assert!(
                    !r.as_str().unwrap().contains('*')
                        || r.as_str().unwrap().ends_with(":log-group:/aws/lambda/orders-dev-worker:*")
                        || r.as_str().unwrap().ends_with(":log-group:/aws/lambda/orders-dev-intake:*"),
                    "wildcard resource {r}"
                );
            }
        }
    }

    // Log groups with retention and tags.
    let groups = aws.logs.describe_log_groups().log_group_name_prefix("/aws/lambda/orders-dev-").send().await.unwrap();
    assert_eq!(groups.log_groups().len(), 2);
    assert!(groups.log_groups().iter().all(|g| g.retention_in_days() == Some(14)));

    // No change: plan exits 0 and a deploy makes no write call.
    emu.reset_calls();
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("No changes. 9 resources match the spec."), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        emu.writes().iter().map(|c| &c.operation).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "a no-op deploy writes nothing"
    );

    // Drift: memory changed behind slx's back is found and restored.
    aws.lambda
        .update_function_configuration()
        .function_name("orders-dev-worker")
        .memory_size(1024)
        .send()
        .await
        .unwrap();
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("~ function.worker  update  orders-dev-worker  [drift]\n      memory: 1024 → 512  (drift: "),
        "{run:?}"
    );
    assert!(run.stdout.contains("Plan: 0 to create, 1 to update, 0 to replace, 0 to delete, 8 unchanged."), "{run:?}");
    let saved = dir.path().join("plan.json");
    let md = emu.slx(&["plan", "-f", file, "--format", "markdown", "--out", saved.to_str().unwrap()]);
    assert!(
        md.stdout.contains("| `~` | `function.worker` | update | drift | `memory`: `1024` → `512` (drift) |"),
        "{md:?}"
    );
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(plan["format_version"], 1);
    let action = plan["actions"].as_array().unwrap().iter().find(|a| a["address"] == "function.worker").unwrap();
    assert_eq!(action["action"], "update");
    assert_eq!(action["cause"], "drift");
    assert_eq!(
        action["fields"],
        serde_json::json!([{ "field": "memory", "before": 1024, "after": 512, "cause": "drift" }])
    );
    assert_eq!(action["calls"], serde_json::json!(["lambda:UpdateFunctionConfiguration"]));
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(aws.function("orders-dev-worker").await.configuration().unwrap().memory_size(), Some(512));

    // A code change uploads only that function's code.
    std::fs::write(
        dir.path().join("src/worker/app.py"),
        "def handler(event, context):\n    return {'batchItemFailures': []}\n",
    )
    .unwrap();
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let writes: Vec<(String, String)> = emu.resource_writes().into_iter().map(|c| (c.operation, c.path)).collect();
    assert_eq!(
        writes,
        vec![("UpdateFunctionCode".to_string(), "/2015-03-31/functions/orders-dev-worker/code".to_string())]
    );
    // Besides: take the lock and open the history item in one transaction,
    // record the function, then close the history item and release the lock at once.
    let mut record: Vec<String> = emu.writes().into_iter().filter(|c| c.on_record()).map(|c| c.operation).collect();
    record[2..].sort();
    assert_eq!(record, ["TransactWriteItems", "PutItem", "PutItem", "UpdateItem"]);
    let new_sha = slx::package::build(&dir.path().join("src/worker")).unwrap().sha256;
    assert_eq!(aws.function("orders-dev-worker").await.configuration().unwrap().code_sha256(), Some(new_sha.as_str()));

    // Removing a queue from the spec plans its deletion; a queue holding
    // messages is not deleted without --force, and nothing else is lost.
    let spec_text = std::fs::read_to_string(&spec).unwrap();
    let trimmed: String =
        spec_text.lines().filter(|l| !l.contains("failed-invocations")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&spec, trimmed).unwrap();
    let run = emu.slx(&["plan", "-f", file]);
    assert!(run.stdout.contains("  - queue.failed-invocations"), "{run:?}");
    assert!(run.stdout.contains("delete  orders-dev-failed-invocations"), "{run:?}");
    let failed_url = aws.queue_url("orders-dev-failed-invocations").await.unwrap();
    aws.sqs.send_message().queue_url(&failed_url).message_body("precious").send().await.unwrap();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("! holds 1 message; deleting it destroys them and needs --force"), "{run:?}");
    assert!(
        run.stderr.contains("refusing to delete queue orders-dev-failed-invocations: it holds 1 message"),
        "{run:?}"
    );
    assert!(aws.queue_url("orders-dev-failed-invocations").await.is_some(), "the queue with a message survives");
    let intake = aws.function("orders-dev-intake").await;
    assert_eq!(
        intake.configuration().unwrap().dead_letter_config().and_then(|d| d.target_arn()),
        None,
        "independent updates still applied"
    );
    let run = emu.slx(&["deploy", "-f", file, "--yes", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(aws.queue_url("orders-dev-failed-invocations").await.is_none());
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Destroy refuses to delete a queue holding messages without --force.
    let dlq_url = aws.queue_url("orders-dev-orders-dlq").await.unwrap();
    aws.sqs.send_message().queue_url(&dlq_url).message_body("dead letter").send().await.unwrap();
    let run = emu.slx(&["destroy", "-f", file, "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("refusing to delete queue orders-dev-orders-dlq: it holds 1 message"), "{run:?}");
    assert!(aws.queue_url("orders-dev-orders-dlq").await.is_some(), "the queue with a message survives destroy");

    // Destroy --force leaves nothing of the stack; a stranger's resource with the same prefix survives.
    aws.sqs.create_queue().queue_name("orders-dev-handmade").send().await.unwrap();
    let run = emu.slx(&["destroy", "-f", file, "--yes", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    let left = aws.leftovers("orders-dev-").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("/orders-dev-handmade"), "{left:?}");
}

#[tokio::test]
async fn existing_resource_slx_does_not_own_is_refused_then_adopted() {
    let emu = Emulator::start();
    let aws = Aws::new(&emu).await;
    let dir = copy_example("queue-worker");
    let file = dir.path().join("slx.yaml");
    let file = file.to_str().unwrap();
    aws.sqs.create_queue().queue_name("orders-dev-orders").send().await.unwrap();
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("error: queue `orders-dev-orders` already exists and slx did not create it"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("hint: rename the resource in the spec, delete the existing one, or pass --adopt"),
        "{run:?}"
    );
    assert!(emu.writes().is_empty(), "nothing is created when the plan is refused");

    let run = emu.slx(&["deploy", "-f", file, "--yes", "--adopt"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("queue.orders"), "{run:?}");
    let tags = aws.queue_tags("orders-dev-orders").await;
    assert_eq!(tags.get("slx:address").map(String::as_str), Some("queue.orders"));
    assert_eq!(emu.slx(&["plan", "-f", file, "--detailed-exitcode"]).code, 0);
}

/// A JSON plan's actions that change something, as (address, action), sorted.
fn changes(plan: &Value) -> Vec<(&str, &str)> {
    let actions = plan["actions"].as_array().unwrap().iter().filter(|a| a["action"] != "no_op");
    let mut changed: Vec<_> =
        actions.map(|a| (a["address"].as_str().unwrap(), a["action"].as_str().unwrap())).collect();
    changed.sort();
    changed
}

/// `--target` plans and deploys only what it selects: the other function's
/// code change and a queue removed from the spec wait for a whole-stack
/// deploy, nothing of theirs is read, and a targeted plan that would leave
/// a renamed queue's old self behind is refused.
#[tokio::test]
async fn a_targeted_deploy_changes_only_what_it_selects() {
    use crate::support::edit;
    let emu = Emulator::start();
    let aws = Aws::new(&emu).await;
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();
    edit(&spec, "  failed-invocations: {}\n", "  failed-invocations: {}\n  spare: {}\n  extra: {}\n");
    let run = emu.slx(&["plan", "-f", file, "--target", "functions.worker"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("nothing is recorded") && run.stderr.contains("without --target"), "{run:?}");
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes"]).code, 0);
    let intake_before =
        aws.function("orders-dev-intake").await.configuration().unwrap().code_sha256().unwrap().to_string();

    for f in ["intake", "worker"] {
        let code = dir.path().join(format!("src/{f}/app.py"));
        std::fs::write(&code, std::fs::read_to_string(&code).unwrap() + "# changed\n").unwrap();
    }
    edit(&spec, "  spare: {}\n", "");
    let run = emu.slx(&["plan", "-f", file, "--target", "functions.worker", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["targets"], serde_json::json!(["functions.worker"]));
    assert_eq!(changes(&plan), [("function.worker", "update")]);
    let planned: Vec<&str> =
        plan["actions"].as_array().unwrap().iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert!(!planned.iter().any(|a| a.contains("intake") || a.contains("spare")), "{planned:?}");

    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes", "--target", "functions.worker"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Targeted at functions.worker"), "{run:?}");
    let calls = emu.calls();
    let about = |name: &str| calls.iter().filter(|c| c.path.contains(name)).count();
    assert_eq!(about("orders-dev-intake"), 0, "the other function is not read: {calls:?}");
    assert!(about("orders-dev-worker") > 0, "{calls:?}");
    assert!(!calls.iter().any(|c| c.operation.starts_with("Delete")), "{calls:?}");

    let pkg = |f: &str| slx::package::build(&dir.path().join(format!("src/{f}"))).unwrap().sha256;
    let worker = aws.function("orders-dev-worker").await;
    assert_eq!(worker.configuration().unwrap().code_sha256(), Some(pkg("worker").as_str()));
    let intake = aws.function("orders-dev-intake").await;
    assert_eq!(intake.configuration().unwrap().code_sha256(), Some(intake_before.as_str()));
    assert_ne!(intake_before, pkg("intake"));
    assert!(aws.queue_url("orders-dev-spare").await.is_some(), "a targeted deploy deletes nothing");
    let history = emu.slx(&["history", "-f", file]);
    assert!(history.stdout.contains("only functions.worker"), "{history:?}");

    // What it left is the whole-stack plan's: the other function and the delete.
    let run = emu.slx(&["plan", "-f", file, "--format", "json"]);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(changes(&plan), [("function.intake", "update"), ("queue.spare", "delete")], "{run:?}");
    assert!(plan.get("targets").is_none());

    // A saved targeted plan applies over its own targets only.
    let saved = dir.path().join("intake.json");
    let out = saved.to_str().unwrap();
    assert_eq!(emu.slx(&["plan", "-f", file, "--target", "functions.intake", "--out", out]).code, 0);
    let run = emu.slx(&["deploy", "-f", file, "--plan", out, "--target", "functions.worker"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("the plan is for functions.intake, not functions.worker"), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--plan", out]);
    assert_eq!(run.code, 0, "{run:?}");
    let intake = aws.function("orders-dev-intake").await;
    assert_eq!(intake.configuration().unwrap().code_sha256(), Some(pkg("intake").as_str()));
    assert!(aws.queue_url("orders-dev-spare").await.is_some());

    // A name that no resource or spec entry has, with the nearest one.
    let run = emu.slx(&["plan", "-f", file, "--target", "functions.wroker"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("names nothing") && run.stderr.contains("did you mean `functions.worker`"), "{run:?}");

    // Made FIFO, the queue gets a new name: only a whole-stack plan sees the old one.
    edit(&spec, "  extra: {}\n", "  extra: { fifo: true }\n");
    let run = emu.slx(&["plan", "-f", file, "--target", "queues.extra"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("is now named `orders-dev-extra.fifo`"), "{run:?}");
    let run = emu.slx(&["plan", "-f", file, "--format", "json"]);
    assert!(run.stdout.contains("\"replace\""), "{run:?}");

    // Only what a target selects is packaged: the other function's code may be broken.
    std::os::unix::fs::symlink("nowhere", dir.path().join("src/intake/dangling.py")).unwrap();
    let run = emu.slx(&["plan", "-f", file, "--target", "functions.worker"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = emu.slx(&["plan", "-f", file]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("packaging function.intake"), "{run:?}");
}

/// A reader that goes away (`slx deploy | head -1`) does not stop a deploy
/// halfway: what cannot be written to the closed pipes is dropped, the
/// deploy finishes and exits 0, and AWS holds the whole stack.
#[tokio::test]
async fn a_deploy_whose_output_pipes_close_still_finishes() {
    let emu = Emulator::start();
    let aws = Aws::new(&emu).await;
    let dir = copy_example("queue-worker");
    let file = dir.path().join("slx.yaml");
    let mut child = crate::support::spawn_slx(&emu.url, &["deploy", "-f", file.to_str().unwrap(), "--yes"]);
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(aws.function("orders-dev-worker").await.configuration().is_some());
    let run = emu.slx(&["plan", "-f", file.to_str().unwrap()]);
    assert!(run.stdout.contains("No changes. 9 resources match the spec."), "{run:?}");
}

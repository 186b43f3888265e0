//! Releases through aliases, end to end against the emulator with short intervals.

use crate::support::{Emulator, Run, copy_example, edit};
use aws_sdk_cloudwatch::types::{ComparisonOperator, StateValue, Statistic};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

async fn alias(lambda: &aws_sdk_lambda::Client) -> (String, Option<(String, f64)>) {
    let a = lambda.get_alias().function_name("pricing-dev-quote").name("live").send().await.unwrap();
    let canary = a
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .and_then(|m| m.iter().next().map(|(v, w)| (v.clone(), *w)));
    (a.function_version().unwrap().to_string(), canary)
}

/// Starts `slx deploy` in the background against the emulator.
fn deploy_in_background(emu: &Emulator, file: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_slx"))
        .args(["deploy", "-f", file, "--yes"])
        .env("AWS_ENDPOINT_URL", &emu.url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits until the alias sends some traffic to a second version, and returns it.
async fn alias_async(
    lambda: &aws_sdk_lambda::Client,
) -> aws_sdk_lambda::operation::get_function_event_invoke_config::GetFunctionEventInvokeConfigOutput {
    lambda.get_function_event_invoke_config().function_name("pricing-dev-quote").qualifier("live").send().await.unwrap()
}

async fn set_alarm(cloudwatch: &aws_sdk_cloudwatch::Client, state: StateValue, reason: &str) {
    cloudwatch
        .set_alarm_state()
        .alarm_name("pricing-quote-errors")
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .unwrap();
}

async fn wait_for_canary(lambda: &aws_sdk_lambda::Client) -> (String, (String, f64)) {
    let started = Instant::now();
    loop {
        if let (primary, Some(canary)) = alias(lambda).await {
            return (primary, canary);
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no canary within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn canary_releases_promote_and_roll_back_on_alarm() {
    let emu = Emulator::start();
    let sdk = emu.sdk().await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let dir = copy_example("canary-release");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();
    edit(&spec, "interval: 5m", "interval: 2s");
    let code = dir.path().join("src/quote/app.py");

    // v1: the alias is created on the first published version; callers use it.
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(alias(&lambda).await, ("1".to_string(), None));
    let pc = lambda
        .get_provisioned_concurrency_config()
        .function_name("pricing-dev-quote")
        .qualifier("live")
        .send()
        .await
        .unwrap();
    assert_eq!(pc.requested_provisioned_concurrent_executions(), Some(2));
    let mappings = lambda.list_event_source_mappings().function_name("pricing-dev-quote:live").send().await.unwrap();
    assert_eq!(
        mappings.event_source_mappings()[0].function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:pricing-dev-quote:live")
    );
    let on_alias = alias_async(&lambda).await;
    assert_eq!((on_alias.maximum_retry_attempts(), on_alias.maximum_event_age_in_seconds()), (Some(0), Some(3600)));
    let unqualified = lambda.get_function_event_invoke_config().function_name("pricing-dev-quote").send().await;
    assert!(unqualified.is_err(), "async settings live on the alias only: {unqualified:?}");
    let policy = lambda.get_policy().function_name("pricing-dev-quote").qualifier("live").send().await.unwrap();
    assert!(policy.policy().unwrap().contains("events.amazonaws.com"), "the rule's permission is on the alias");

    cloudwatch
        .put_metric_alarm()
        .alarm_name("pricing-quote-errors")
        .metric_name("Errors")
        .namespace("AWS/Lambda")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold)
        .send()
        .await
        .unwrap();

    // v2: 10 % first, then 100 % once the interval passed with the alarm OK.
    std::fs::write(&code, std::fs::read_to_string(&code).unwrap() + "# v2\n").unwrap();
    let plan = emu.slx(&["plan", "-f", file]);
    assert!(
        plan.stdout.contains("      rollout: (none) → \"10% for 2s → 100%, watching pricing-quote-errors\"\n"),
        "{plan:?}"
    );
    let child = deploy_in_background(&emu, file);
    let (primary, canary) = wait_for_canary(&lambda).await;
    assert_eq!((primary.as_str(), canary.0.as_str(), canary.1), ("1", "2", 0.1), "canary: 10% on v2");
    let run = finish(child);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(alias(&lambda).await, ("2".to_string(), None), "then 100% on v2");

    // Nothing changed: no version is published, nothing is written, and which
    // release the alias serves is recalled from the record, not read again.
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(emu.writes().is_empty(), "{:?}", emu.writes());
    let reads = |op: &str| emu.calls().iter().filter(|c| c.operation == op).count();
    assert_eq!((reads("GetAlias"), reads("GetFunctionConfiguration"), reads("ListVersionsByFunction")), (1, 0, 0));

    // Moved back to v1 by hand: the recorded release no longer holds (the
    // alias's revision changed), so the plan reads it and puts v2 back.
    lambda.update_alias().function_name("pricing-dev-quote").name("live").function_version("1").send().await.unwrap();
    emu.reset_calls();
    let plan = emu.slx(&["plan", "-f", file]);
    assert!(plan.stdout.contains("  ~ alias.quote.live  update  pricing-dev-quote:live  [drift]\n"), "{plan:?}");
    assert!(plan.stdout.contains("      current: false → true  (drift"), "{plan:?}");
    assert_eq!(reads("GetFunctionConfiguration"), 1);
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(alias(&lambda).await, ("2".to_string(), None));
    emu.reset_calls();
    assert_eq!(emu.slx(&["plan", "-f", file, "--detailed-exitcode"]).code, 0);
    assert_eq!(reads("GetFunctionConfiguration"), 0, "the deploy recorded the new revision");

    // The alias's async settings are read with its function's, and drift there is seen and reverted.
    lambda
        .put_function_event_invoke_config()
        .function_name("pricing-dev-quote")
        .qualifier("live")
        .maximum_retry_attempts(2)
        .maximum_event_age_in_seconds(3600)
        .send()
        .await
        .unwrap();
    let plan = emu.slx(&["plan", "-f", file]);
    assert!(plan.stdout.contains("  ~ alias.quote.live  update  pricing-dev-quote:live  [drift]\n"), "{plan:?}");
    assert!(plan.stdout.contains("      async.max_retries: 2 → 0  (drift"), "{plan:?}");
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes"]).code, 0);
    assert_eq!(alias_async(&lambda).await.maximum_retry_attempts(), Some(0));

    // v3 with the alarm going off mid-rollout: back on v2, non-zero exit naming the alarm.
    std::fs::write(&code, std::fs::read_to_string(&code).unwrap() + "# v3\n").unwrap();
    let child = deploy_in_background(&emu, file);
    let (_, canary) = wait_for_canary(&lambda).await;
    assert_eq!(canary.0, "3");
    set_alarm(&cloudwatch, StateValue::Alarm, "errors above threshold").await;
    let run = finish(child);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("rolled back alias.quote.live to version 2: alarm `pricing-quote-errors` is in ALARM"),
        "{run:?}"
    );
    assert_eq!(alias(&lambda).await, ("2".to_string(), None));

    // Ctrl-C mid-rollout puts all traffic back on the previous version.
    set_alarm(&cloudwatch, StateValue::Ok, "recovered").await;
    edit(&spec, "interval: 2s", "interval: 30s");
    let child = deploy_in_background(&emu, file);
    let (_, canary) = wait_for_canary(&lambda).await;
    assert_eq!(canary.0, "3");
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let run = finish(child);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("rolled back alias.quote.live to version 2: interrupted"), "{run:?}");
    assert_eq!(alias(&lambda).await, ("2".to_string(), None));
    edit(&spec, "interval: 30s", "interval: 2s");

    // --skip-alarms ships anyway, loudly; --no-wait leaves the canary for promote / rollback.
    let run = emu.slx(&["deploy", "-f", file, "--yes", "--skip-alarms", "--no-wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("WARNING: --skip-alarms: alias.quote.live releases without watching"), "{run:?}");
    let status = emu.slx(&["status", "-f", file]);
    assert_eq!(
        status.stdout, "alias.quote.live  pricing-dev-quote:live  version 2 with 10% on version 3\n",
        "{status:?}"
    );
    let run = emu.slx(&["rollback", "-f", file]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(alias(&lambda).await, ("2".to_string(), None));
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes", "--skip-alarms", "--no-wait"]).code, 0);
    let run = emu.slx(&["promote", "-f", file, "quote"]);
    assert_eq!(run.stdout, "alias.quote.live: promoted version 3 to 100%\n", "{run:?}");
    assert_eq!(alias(&lambda).await, ("3".to_string(), None));
    let json = emu.slx(&["status", "-f", file, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["aliases"][0]["primary"], "3");
    assert_eq!(v["aliases"][0]["current"], true);

    let run = emu.slx(&["destroy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty());
}

/// Each release keeps the newest `keep_versions` published versions and
/// deletes older ones, unless an alias still uses them.
#[tokio::test]
async fn releases_keep_the_newest_versions() {
    let emu = Emulator::start();
    let lambda = aws_sdk_lambda::Client::new(&emu.sdk().await);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("slx.yaml");
    std::fs::write(
        &spec,
        "stack: keep\nfunctions:\n  api:\n    runtime: python3.12\n    handler: app.handler\n    code: ./src\n    alias: { name: live, keep_versions: 2 }\n",
    )
    .unwrap();
    let code = dir.path().join("src/app.py");
    std::fs::create_dir_all(code.parent().unwrap()).unwrap();
    std::fs::write(&code, "def handler(event, context):\n    return 1\n").unwrap();
    let file = spec.to_str().unwrap();
    let versions = || async {
        let out = lambda.list_versions_by_function().function_name("keep-dev-api").send().await.unwrap();
        out.versions().iter().filter_map(|v| v.version().map(String::from)).collect::<Vec<_>>()
    };
    let release = |n: usize| {
        std::fs::write(&code, format!("def handler(event, context):\n    return {n}\n")).unwrap();
        let run = emu.slx(&["deploy", "-f", file, "--yes"]);
        assert_eq!(run.code, 0, "{run:?}");
    };
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes"]).code, 0);
    release(2);
    assert_eq!(versions().await, ["$LATEST", "1", "2"]);
    emu.reset_calls();
    release(3);
    assert_eq!(versions().await, ["$LATEST", "2", "3"]);
    assert_eq!(emu.calls().iter().filter(|c| c.operation == "DeleteFunction").count(), 1);
    // An alias made by hand keeps its version alive.
    lambda.create_alias().function_name("keep-dev-api").name("pinned").function_version("2").send().await.unwrap();
    release(4);
    release(5);
    assert_eq!(versions().await, ["$LATEST", "2", "4", "5"]);
    assert_eq!(
        lambda.get_alias().function_name("keep-dev-api").name("live").send().await.unwrap().function_version(),
        Some("5")
    );
}

//! The AWS provider's waiting and retrying, against an emulator made to
//! behave like real Lambda (slow updates, a role that appears late).

use crate::support::{Emulator, copy_example, edit};
use slx::provider::{Aws, Desired, Provider};
use std::time::{Duration, Instant};

/// With each Lambda create/update taking 0.4 s, a deploy that changes code,
/// configuration and concurrency of one function must wait between mutations.
#[tokio::test]
async fn deploy_waits_for_each_lambda_update_to_finish() {
    let emu = Emulator::start();
    emu.configure(r#"{"lambda_update_seconds": 0.4}"#);
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");

    edit(&spec, "    memory: 512\n", "    memory: 640\n");
    edit(&spec, "    reserved_concurrency: 5\n", "    reserved_concurrency: 7\n");
    std::fs::write(dir.path().join("src/worker/app.py"), "def handler(e, c):\n    return None\n").unwrap();
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let ops: Vec<String> =
        emu.calls().into_iter().filter(|c| c.path.contains("orders-dev-worker")).map(|c| c.operation).collect();
    let code = ops.iter().position(|o| o == "UpdateFunctionCode").expect("code updated");
    let config = ops.iter().position(|o| o == "UpdateFunctionConfiguration").expect("configuration updated");
    assert!(code < config);
    assert!(
        ops[code..config].iter().any(|o| o == "GetFunctionConfiguration"),
        "polled between the two updates: {ops:?}"
    );

    let c = emu.sdk().await;
    let f = aws_sdk_lambda::Client::new(&c).get_function().function_name("orders-dev-worker").send().await.unwrap();
    assert_eq!(f.configuration().unwrap().memory_size(), Some(640));
    assert_eq!(f.concurrency().and_then(|c| c.reserved_concurrent_executions()), Some(7));
    assert_eq!(emu.slx(&["plan", "-f", file, "--detailed-exitcode"]).code, 0);
}

/// CreateFunction keeps retrying while the role "cannot be assumed", as it
/// does for seconds after IAM creates a role.
#[tokio::test]
async fn create_function_retries_until_the_role_is_assumable() {
    let emu = Emulator::start();
    let provider = Aws::new(&emu.sdk().await).unwrap();
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("app.py"), "def handler(e, c):\n    return 1\n").unwrap();
    let package = slx::package::build(code.path()).unwrap();
    let config = serde_json::json!({
        "role": "arn:aws:iam::123456789012:role/late-role", "handler": "app.handler", "runtime": "python3.12",
        "code_sha256": package.sha256, "memory": 128, "timeout": 3, "ephemeral_storage": 512, "architecture": "x86_64",
        "description": "", "environment": {}, "layers": [], "dead_letter_target": null, "reserved_concurrency": null,
        "async": null, "tags": {}
    });
    let sdk = emu.sdk().await;
    let creator = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        aws_sdk_iam::Client::new(&sdk)
            .create_role()
            .role_name("late-role")
            .assume_role_policy_document("{}")
            .send()
            .await
            .unwrap();
    });
    let started = Instant::now();
    let desired = Desired {
        address: "function.late",
        kind: slx::resource::Kind::Function,
        name: "late",
        config: &config,
        package: Some(&package),
    };
    let out = provider.create(desired).await.unwrap();
    creator.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1400), "returned before the role existed");
    assert_eq!(out.get("arn").map(String::as_str), Some("arn:aws:lambda:us-east-1:123456789012:function:late"));
    let attempts = emu.calls().iter().filter(|c| c.operation == "CreateFunction").count();
    assert!(attempts >= 2, "CreateFunction was retried ({attempts} attempts)");
}

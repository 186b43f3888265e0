//! slx under latency and faults: the proxy itself, retries and their limits,
//! lost responses that must not create anything twice, and convergence after
//! failed or killed deploys. AWS state is checked directly on the emulator.

use crate::support::proxy::{Faults, Proxy};
use crate::support::{Aws, Emulator, Run, copy_example, finish, slx_env, spawn_slx};
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_secs(600);

/// SDK configuration that goes through the proxy, with the given retries.
async fn via(proxy: &Proxy, retry: RetryConfig) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&proxy.url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(retry)
        .load()
        .await
}

fn code_and_status<E: ProvideErrorMetadata>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> (String, u16) {
    let status = e.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (e.code().unwrap_or("none").to_string(), status)
}

#[tokio::test]
async fn proxy_speaks_each_protocol_and_counts() {
    let emu = Emulator::start();
    let proxy = Proxy::start(&emu.url, Faults { throttle: 1.0, ..Faults::default() }, BOUND);
    let c = via(&proxy, RetryConfig::disabled()).await;

    // Throttling as each service's protocol says it.
    let lambda = aws_sdk_lambda::Client::new(&c);
    let e = lambda.list_functions().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("TooManyRequestsException".into(), 429));
    let e = aws_sdk_apigatewayv2::Client::new(&c).get_apis().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("TooManyRequestsException".into(), 429));
    let e = aws_sdk_iam::Client::new(&c).list_roles().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("Throttling".into(), 400));
    let e = aws_sdk_sts::Client::new(&c).get_caller_identity().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("Throttling".into(), 400));
    let e = aws_sdk_sqs::Client::new(&c).list_queues().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ThrottlingException".into(), 400));
    let e = aws_sdk_dynamodb::Client::new(&c).list_tables().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ThrottlingException".into(), 400));
    let e = aws_sdk_cloudwatchlogs::Client::new(&c).describe_log_groups().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ThrottlingException".into(), 400));
    let e = aws_sdk_eventbridge::Client::new(&c).list_rules().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ThrottlingException".into(), 400));
    let e = aws_sdk_cloudwatch::Client::new(&c).describe_alarms().send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ThrottlingException".into(), 400));
    assert!(emu.calls().is_empty(), "throttled calls never reach AWS");

    // The SDK recognises them as throttling and retries: 3 attempts seen.
    proxy.reset();
    let retrying = via(&proxy, RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::ZERO)).await;
    aws_sdk_lambda::Client::new(&retrying).list_functions().send().await.unwrap_err();
    assert_eq!(proxy.counts(), BTreeMap::from([("lambda:GET /2015-03-31/functions".into(), (3, 0))]));

    // 5xx: retried too, and never applied.
    proxy.set(Faults { server_error: 1.0, ..Faults::default() });
    proxy.reset();
    let sqs = aws_sdk_sqs::Client::new(&retrying);
    let e = sqs.create_queue().queue_name("faulted").send().await.unwrap_err();
    assert_eq!(code_and_status(&e), ("ServiceUnavailableException".into(), 503));
    assert_eq!(proxy.counts(), BTreeMap::from([("sqs:CreateQueue".into(), (0, 3))]));

    // A dropped request never arrives; a dropped response was applied.
    let direct = aws_sdk_sqs::Client::new(&emu.sdk().await);
    let sqs = aws_sdk_sqs::Client::new(&c);
    proxy.set(Faults { drop_request: 1.0, ..Faults::default() });
    let e = sqs.create_queue().queue_name("never-sent").send().await.unwrap_err();
    assert!(matches!(e, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)), "{e:?}");
    assert!(direct.get_queue_url().queue_name("never-sent").send().await.is_err());
    proxy.set(Faults { drop_response: 1.0, ..Faults::default() });
    let e = sqs.create_queue().queue_name("applied").send().await.unwrap_err();
    assert!(matches!(e, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)), "{e:?}");
    assert!(direct.get_queue_url().queue_name("applied").send().await.is_ok(), "the lost response's call landed");

    // Latency, fixed and per service; reads and writes counted apart.
    let mut faults = Faults::latency(120);
    faults.service_latency.insert("sqs".into(), Duration::ZERO);
    proxy.set(faults);
    proxy.reset();
    let t = Instant::now();
    lambda.list_functions().send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(120), "{:?}", t.elapsed());
    let t = Instant::now();
    sqs.list_queues().send().await.unwrap();
    sqs.create_queue().queue_name("counted").send().await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(120), "sqs has no added latency: {:?}", t.elapsed());
    assert_eq!(
        proxy.counts(),
        BTreeMap::from([
            ("lambda:GET /2015-03-31/functions".into(), (1, 0)),
            ("sqs:CreateQueue".into(), (0, 1)),
            ("sqs:ListQueues".into(), (1, 0)),
        ])
    );
    assert!(proxy.url.starts_with("http://127.0.0.1:"));
}

fn slx_via(proxy: &Proxy, env: &[(&str, &str)], args: &[&str]) -> Run {
    slx_env(Some(&proxy.url), env, args)
}

/// A run that failed without a panic, with an error saying what.
fn failed_cleanly(r: &Run) -> bool {
    r.code == 1 && r.stderr.contains("error") && !r.stderr.contains("panicked")
}

#[test]
fn retries_ride_out_throttling_and_give_up_clearly() {
    let emu = Emulator::start();
    let dir = copy_example("queue-worker");
    let spec = dir.path().join("slx.yaml");
    let spec = spec.to_str().unwrap();

    // A third of all calls throttled: the deploy still succeeds.
    let proxy = Proxy::start(&emu.url, Faults { throttle: 0.3, seed: 7, ..Faults::default() }, BOUND);
    let r = slx_via(&proxy, &[], &["deploy", "-f", spec, "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let throttled = proxy.seen().iter().filter(|c| c.fault == Some("throttle")).count();
    assert!(throttled > 5, "faults were injected: {throttled}");

    // Every call throttled: a clear final error after the configured attempts.
    proxy.set(Faults { throttle: 1.0, ..Faults::default() });
    proxy.reset();
    let r = slx_via(&proxy, &[("AWS_MAX_ATTEMPTS", "2")], &["plan", "-f", spec]);
    assert!(failed_cleanly(&r), "{r:?}");
    assert!(r.stderr.contains("AWS kept throttling (slx retried, up to 2 attempts a call)"), "{r:?}");
    assert!(r.stderr.contains("hint: another deployment or tool may be using this account's API rate"), "{r:?}");
    let sts = proxy.seen().iter().filter(|c| c.operation == "GetCallerIdentity").count();
    assert_eq!(sts, 2, "exactly the configured attempts");

    // A bad setting is named.
    let r = slx_via(&proxy, &[("AWS_MAX_ATTEMPTS", "lots")], &["plan", "-f", spec]);
    assert!(r.code == 1 && r.stderr.contains("AWS_MAX_ATTEMPTS must be a whole number"), "{r:?}");
}

impl Aws {
    /// Event source mappings per (function, source), straight from Lambda.
    async fn mapping_counts(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        let all = self.lambda.list_event_source_mappings().max_items(1000).send().await.unwrap();
        for m in all.event_source_mappings() {
            let key = (m.function_arn().unwrap().to_string(), m.event_source_arn().unwrap().to_string());
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    /// APIs per name, straight from API Gateway.
    async fn api_counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for a in self.apigateway.get_apis().send().await.unwrap().items() {
            *out.entry(a.name().unwrap().to_string()).or_insert(0) += 1;
        }
        out
    }
}

/// Asserts nothing exists twice: one mapping per function and source, one API per name.
async fn assert_no_duplicates(emu: &Emulator) {
    let aws = Aws::new(emu).await;
    let m = aws.mapping_counts().await;
    assert!(m.values().all(|n| *n == 1), "duplicate event source mappings: {m:?}");
    let a = aws.api_counts().await;
    assert!(a.values().all(|n| *n == 1), "duplicate APIs: {a:?}");
}

/// Plans through the proxy (queue URLs name the host slx called) with faults off, expecting no changes.
fn no_op_plan(proxy: &Proxy, spec: &str, stage: &str) {
    let faults = proxy.faults();
    proxy.set(Faults::default());
    let r = slx_via(proxy, &[], &["plan", "-f", spec, "--stage", stage, "--detailed-exitcode"]);
    proxy.set(faults);
    assert_eq!(r.code, 0, "a no-op plan: {r:?}");
}

/// Creates whose first response is lost after AWS applied them.
const CREATES: [&str; 12] = [
    "lambda:POST /2015-03-31/functions",
    "lambda:POST /2015-03-31/event-source-mappings",
    "lambda:POST /2015-03-31/functions/*/aliases",
    "lambda:POST /2015-03-31/functions/*/policy",
    "apigateway:POST /v2/apis",
    "apigateway:POST /v2/apis/*/integrations",
    "apigateway:POST /v2/apis/*/routes",
    "apigateway:POST /v2/apis/*/stages",
    "iam:CreateRole",
    "logs:CreateLogGroup",
    "events:CreateEventBus",
    "dynamodb:CreateTable",
];

#[tokio::test]
async fn lost_responses_never_create_twice() {
    // The first call of every kind of create lands, and its response is lost:
    // every create is retried into its own earlier attempt.
    let emu = Emulator::start();
    let lossy = Faults {
        drop_response: 1.0,
        only_operations: CREATES.map(String::from).to_vec(),
        first_only: true,
        ..Faults::default()
    };
    let proxy = Proxy::start(&emu.url, lossy, BOUND);
    for example in ["queue-worker", "websocket-chat", "order-pipeline", "canary-release"] {
        let dir = copy_example(example);
        let spec = dir.path().join("slx.yaml");
        let spec = spec.to_str().unwrap();
        let r = slx_via(&proxy, &[], &["deploy", "-f", spec, "--yes"]);
        assert_eq!(r.code, 0, "{example}: {r:?}");
        no_op_plan(&proxy, spec, "dev");
    }
    let lost: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|c| c.fault == Some("drop-response"))
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    for op in CREATES {
        assert!(lost.iter().any(|o| o == op), "a lost {op} response was exercised: {lost:?}");
    }
    assert_no_duplicates(&emu).await;
    let m = Aws::new(&emu).await.mapping_counts().await;
    assert_eq!(m.len(), 3, "the examples' three mappings exist: {m:?}");
}

#[tokio::test]
async fn ten_percent_faults_converge() {
    let emu = Emulator::start();
    let proxy = Proxy::start(&emu.url, Faults::default(), BOUND);
    let mut outcomes = Vec::new();
    for (i, example) in ["queue-worker", "order-pipeline", "websocket-chat", "canary-release"].into_iter().enumerate() {
        let dir = copy_example(example);
        let spec = dir.path().join("slx.yaml");
        let spec = spec.to_str().unwrap();
        proxy.set(Faults::mixed(0.10, 100 + i as u64));
        let first = slx_via(&proxy, &[], &["deploy", "-f", spec, "--yes"]);
        assert!(first.code == 0 || failed_cleanly(&first), "{example}: {first:?}");
        outcomes.push((example, first.code));
        // Re-run, still through the faults, until it succeeds (at most 3 times).
        let mut last = first;
        for _ in 0..3 {
            if last.code == 0 {
                break;
            }
            last = slx_via(&proxy, &[], &["deploy", "-f", spec, "--yes"]);
            assert!(last.code == 0 || failed_cleanly(&last), "{example}: {last:?}");
        }
        assert_eq!(last.code, 0, "{example} converged: {last:?}");
        no_op_plan(&proxy, spec, "dev");
    }
    assert_no_duplicates(&emu).await;
    let faulted = proxy.seen().iter().filter(|c| c.fault.is_some()).count();
    assert!(faulted > 20, "faults were injected: {faulted}, outcomes {outcomes:?}");
}

#[tokio::test]
async fn killed_deploys_converge_for_every_seed() {
    use std::io::{BufRead, BufReader};
    let emu = Emulator::start();
    // 25 ms per call keeps steps in flight when the kill lands.
    let proxy = Proxy::start(&emu.url, Faults::latency(25), BOUND);
    for example in ["order-pipeline", "websocket-chat"] {
        let dir = copy_example(example);
        let spec = dir.path().join("slx.yaml");
        let spec = spec.to_str().unwrap();
        // How many steps a whole deploy finishes, on a stage of its own.
        let probe = slx_via(&proxy, &[], &["deploy", "-f", spec, "--stage", "probe", "--yes"]);
        assert_eq!(probe.code, 0, "{probe:?}");
        let steps = probe.stderr.lines().filter(|l| l.starts_with("created")).count();
        assert!(steps > 4, "{example}: {probe:?}");
        for seed in [3u64, 17, 29] {
            let stage = format!("kill{seed}");
            // xorshift: kill once between one step and half of them have finished,
            // so steps are still in flight (a point in time would race the deploy).
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kill_after = 1 + (x % (steps as u64 / 2)) as usize;
            let mut child = spawn_slx(&proxy.url, &["deploy", "-f", spec, "--stage", &stage, "--yes"]);
            let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
            let mut finished = 0;
            for line in progress.by_ref() {
                if line.unwrap().starts_with("created") {
                    finished += 1;
                    if finished == kill_after {
                        break;
                    }
                }
            }
            // SIGKILL, as an OOM killer or a cancelled CI runner would; the pipe
            // stays open until then, so slx is not stopped by a closed stderr.
            child.kill().unwrap();
            let killed = finish(child);
            drop(progress);
            assert_eq!(
                killed.code, -1,
                "{example} seed {seed}: killed after {kill_after} of {steps} steps: {killed:?}"
            );

            let _ = slx_via(&proxy, &[], &["unlock", "-f", spec, "--stage", &stage, "--force"]);
            let r = slx_via(&proxy, &[], &["deploy", "-f", spec, "--stage", &stage, "--yes"]);
            assert_eq!(r.code, 0, "{example} seed {seed} re-run: {r:?}");
            no_op_plan(&proxy, spec, &stage);
        }
    }
    assert_no_duplicates(&emu).await;
}

#[test]
fn each_service_has_a_cap_on_calls_in_flight() {
    // 40 functions, none deployed: planning reads each role by name
    // (GetRole and GetRolePolicy at once), 80 IAM calls that could all go
    // out together. IAM's cap is 8.
    let emu = Emulator::start();
    let proxy = Proxy::start(&emu.url, Faults::latency(100), BOUND);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = String::from("stack: capped\ndefaults: { runtime: python3.12, handler: app.handler }\nfunctions:\n");
    for i in 0..40 {
        std::fs::create_dir_all(dir.path().join(format!("src/f{i}"))).unwrap();
        std::fs::write(dir.path().join(format!("src/f{i}/app.py")), "def handler(e, c):\n    return 1\n").unwrap();
        spec += &format!("  f{i}: {{ code: ./src/f{i} }}\n");
    }
    let path = dir.path().join("slx.yaml");
    std::fs::write(&path, spec).unwrap();
    let r = slx_via(&proxy, &[], &["plan", "-f", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let iam_calls = proxy.seen().iter().filter(|c| c.service == "iam").count();
    assert!(iam_calls >= 80, "every role was read: {iam_calls}");
    let peak = proxy.peak_in_flight();
    assert!((2..=8).contains(&peak["iam"]), "IAM calls ran in parallel, at most 8 at once: {peak:?}");
}

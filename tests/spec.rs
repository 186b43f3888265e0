//! Spec parsing, interpolation and validation: exact messages and positions.

use slx::diag::{Diagnostic, Mark};
use slx::spec::{Loaded, load_str};
use std::collections::HashMap;

struct Fixture {
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/app.py"), "def handler(e, c):\n    return e\n").unwrap();
    Fixture { dir }
}

impl Fixture {
    fn load_env(&self, yaml: &str, stage: &str, env: &[(&str, &str)]) -> Result<Loaded, Vec<Diagnostic>> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load_str(yaml, "slx.yaml", self.dir.path(), stage, &|k| env.get(k).cloned()).map_err(|d| d.0)
    }

    fn load(&self, yaml: &str) -> Result<Loaded, Vec<Diagnostic>> {
        self.load_env(yaml, "dev", &[])
    }

    /// The single error a spec produces.
    fn error(&self, yaml: &str) -> Diagnostic {
        let errs = self.load(yaml).expect_err("spec should be rejected");
        assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
        errs.into_iter().next().unwrap()
    }
}

/// A minimal valid function with `extra` lines appended (indented 4 spaces).
fn function(extra: &str) -> String {
    format!(
        "stack: shop\nfunctions:\n  api:\n    handler: app.handler\n    runtime: python3.12\n    code: ./src\n{extra}"
    )
}

fn check(d: &Diagnostic, message: &str, line: usize, col: usize, address: Option<&str>, hint: &str) {
    assert_eq!(d.message, message);
    assert_eq!(d.file.as_deref(), Some("slx.yaml"));
    assert_eq!(d.mark, Some(Mark { line, col }), "position of: {message}");
    assert_eq!(d.address.as_deref(), address);
    assert_eq!(d.hint.as_deref(), Some(hint));
}

#[test]
fn valid_spec_loads_with_defaults_merged() {
    let f = fixture();
    let l = f
        .load("stack: shop\ndefaults:\n  runtime: python3.12\n  memory: 256\n  tags: {team: a}\nfunctions:\n  api:\n    handler: app.h\n    code: ./src\n    tags: {svc: api}\n")
        .unwrap();
    let api = l.function("api");
    assert_eq!(api.memory, Some(256));
    assert_eq!(api.runtime.as_deref(), Some("python3.12"));
    assert_eq!(api.tags.len(), 2);
}

#[test]
fn memory_out_of_range() {
    let d = fixture().error(&function("    memory: 20000\n"));
    check(
        &d,
        "memory 20000 MB is out of range 128..10240 MB",
        7,
        13,
        Some("function.api"),
        "Lambda accepts 128 to 10240 MB",
    );
}

#[test]
fn memory_below_range() {
    let d = fixture().error(&function("    memory: 64\n"));
    check(
        &d,
        "memory 64 MB is out of range 128..10240 MB",
        7,
        13,
        Some("function.api"),
        "Lambda accepts 128 to 10240 MB",
    );
}

#[test]
fn timeout_above_fifteen_minutes() {
    let d = fixture().error(&function("    timeout: 16m\n"));
    check(
        &d,
        "timeout 960 s is out of range 1..900 s",
        7,
        14,
        Some("function.api"),
        "Lambda functions run at most 900 seconds (15 minutes)",
    );
}

#[test]
fn ephemeral_storage_out_of_range() {
    let d = fixture().error(&function("    ephemeral_storage: 256\n"));
    check(
        &d,
        "ephemeral_storage 256 MB is out of range 512..10240 MB",
        7,
        24,
        Some("function.api"),
        "Lambda's /tmp is 512 to 10240 MB",
    );
}

#[test]
fn environment_over_four_kilobytes() {
    let big = "x".repeat(4100);
    let d = fixture().error(&function(&format!("    environment:\n      BIG: {big}\n")));
    check(
        &d,
        "environment is 4103 bytes; Lambda allows 4096 in total",
        7,
        5,
        Some("function.api"),
        "move large values to SSM Parameter Store or a file in the code",
    );
}

#[test]
fn reserved_environment_variable() {
    let d = fixture().error(&function("    environment:\n      AWS_REGION: eu-west-1\n"));
    check(
        &d,
        "environment variable `AWS_REGION` is reserved by Lambda",
        8,
        7,
        Some("function.api"),
        "Lambda sets it itself; choose another name",
    );
}

#[test]
fn fifo_queue_as_lambda_dead_letter_queue() {
    let yaml = function("    dead_letter_queue: audit\nqueues:\n  audit: { fifo: true }\n");
    let d = fixture().error(&yaml);
    check(
        &d,
        "the dead-letter queue `audit` is a FIFO queue",
        7,
        24,
        Some("function.api"),
        "Lambda sends failed async events only to standard queues or SNS topics; use a standard queue",
    );
}

#[test]
fn fifo_queue_as_on_failure_destination() {
    let yaml = function("    async:\n      on_failure: { queue: audit }\nqueues:\n  audit: { fifo: true }\n");
    let d = fixture().error(&yaml);
    assert_eq!(d.message, "the on_failure queue `audit` is a FIFO queue");
    assert_eq!(d.mark, Some(Mark { line: 8, col: 28 }));
}

#[test]
fn redrive_between_fifo_and_standard_queue() {
    let d = fixture().error(
        "stack: shop\nqueues:\n  jobs:\n    fifo: true\n    dead_letter: { queue: dlq, max_receives: 3 }\n  dlq: {}\n",
    );
    check(
        &d,
        "the dead-letter queue of FIFO queue `jobs` must also be FIFO; `dlq` is standard",
        5,
        27,
        Some("queue.jobs"),
        "SQS requires a queue and its dead-letter queue to be of the same type",
    );
}

#[test]
fn unknown_key_suggests_the_closest() {
    let d = fixture().error(&function("    memroy: 512\n"));
    check(&d, "unknown key `memroy`", 7, 5, Some("function.api"), "did you mean `memory`?");
}

#[test]
fn unknown_top_level_key_lists_the_expected_ones() {
    let d = fixture().error("stack: shop\nwidgets: {}\n");
    assert_eq!(d.message, "unknown key `widgets`");
    assert_eq!(d.mark, Some(Mark { line: 2, col: 1 }));
    assert_eq!(
        d.hint.as_deref(),
        Some(
            "expected one of `stack`, `region`, `vars`, `stages`, `defaults`, `queues`, `tables`, `buses`, `websockets`, `functions`"
        )
    );
}

#[test]
fn wrong_type_names_what_was_found() {
    let d = fixture().error(&function("    memory: lots\n"));
    assert_eq!(d.message, "expected a whole number, found `lots`");
    assert_eq!(d.mark, Some(Mark { line: 7, col: 13 }));
    assert_eq!(d.address.as_deref(), Some("function.api"));
}

#[test]
fn unknown_enum_value_suggests() {
    let d = fixture().error(&function("    architecture: arm\n"));
    check(&d, "unknown value `arm`", 7, 19, Some("function.api"), "did you mean `arm64`?");
}

#[test]
fn missing_required_settings_point_at_the_function() {
    let d = fixture().error("stack: shop\nfunctions:\n  api:\n    runtime: python3.12\n    code: ./src\n");
    check(
        &d,
        "function `api` has no handler",
        3,
        3,
        Some("function.api"),
        "set `handler:` on the function or under `defaults:` (a handler is required)",
    );
}

#[test]
fn errors_from_defaults_point_at_defaults() {
    let yaml = "stack: shop\ndefaults:\n  memory: 99999\nfunctions:\n  a: { handler: x.h, runtime: python3.12, code: ./src }\n  b: { handler: x.h, runtime: python3.12, code: ./src }\n";
    let d = fixture().error(yaml);
    check(
        &d,
        "memory 99999 MB is out of range 128..10240 MB",
        3,
        11,
        Some("defaults"),
        "Lambda accepts 128 to 10240 MB",
    );
}

#[test]
fn unknown_runtime_suggests() {
    let d = fixture().error(&function("").replace("python3.12", "pyhton3.12"));
    check(&d, "unknown runtime `pyhton3.12`", 5, 14, Some("function.api"), "did you mean `python3.12`?");
}

#[test]
fn log_retention_must_be_a_cloudwatch_value() {
    let d = fixture().error(&function("    log_retention_days: 10\n"));
    check(
        &d,
        "log_retention_days 10 is not a CloudWatch Logs retention period",
        7,
        25,
        Some("function.api"),
        "the nearest allowed value is 7",
    );
}

#[test]
fn function_name_too_long_for_lambda() {
    let long = "a".repeat(60);
    let d = fixture().error(&function("").replace("  api:", &format!("  {long}:")));
    assert_eq!(d.message, format!("function name `shop-dev-{long}` is 69 characters; Lambda allows 64"));
    assert_eq!(d.mark, Some(Mark { line: 3, col: 3 }));
    assert_eq!(d.hint.as_deref(), Some("shorten the stack, stage or function name"));
}

#[test]
fn code_path_must_exist() {
    let d = fixture().error(&function("").replace("./src", "./missing"));
    assert_eq!(d.message, "code path `./missing` does not exist");
    assert_eq!(d.mark, Some(Mark { line: 6, col: 11 }));
}

#[test]
fn reference_to_unknown_queue_suggests() {
    let yaml = function("    environment:\n      URL: ${queues.ordrs.url}\nqueues:\n  orders: {}\n");
    let d = fixture().error(&yaml);
    check(
        &d,
        "${queues.ordrs.url} refers to an unknown queue",
        8,
        12,
        Some("function.api"),
        "did you mean `${queues.orders.url}`?",
    );
}

#[test]
fn reference_to_unknown_attribute() {
    let yaml = function("    environment:\n      URL: ${queues.orders.endpoint}\nqueues:\n  orders: {}\n");
    let d = fixture().error(&yaml);
    check(
        &d,
        "${queues.orders.endpoint}: `endpoint` is not an attribute of a queue",
        8,
        12,
        Some("function.api"),
        "use one of url, arn, name",
    );
}

#[test]
fn malformed_reference() {
    let d = fixture().error(&function("    description: ${stage\n"));
    check(&d, "unterminated `${` reference", 7, 18, None, "close it with `}`, or write `$${` for a literal `${`");
}

#[test]
fn missing_environment_variable() {
    let d = fixture().error(&function("    description: built by ${env:BUILD_USER}\n"));
    check(
        &d,
        "environment variable `BUILD_USER` is not set",
        7,
        18,
        None,
        "export BUILD_USER=..., or move the value into `vars`",
    );
}

#[test]
fn unknown_var_suggests() {
    let yaml = format!("vars: {{ memory: 256 }}\n{}", function("    memory: ${vars.memroy}\n"));
    let d = fixture().error(&yaml);
    check(&d, "${vars.memroy} is not defined", 8, 13, None, "did you mean `memory`?");
}

#[test]
fn self_referencing_vars_are_an_error_not_a_hang() {
    let yaml = format!("vars: {{ a: '${{vars.b}}', b: '${{vars.a}}' }}\n{}", function("    description: ${vars.a}\n"));
    let d = fixture().error(&yaml);
    assert_eq!(d.message, "${vars.b} refers to itself through other vars");
}

#[test]
fn vars_stages_env_and_stage_interpolate_with_types() {
    let yaml = "stack: shop\nvars: { memory: 256, name: base }\nstages:\n  prod: { vars: { memory: 1024 } }\nfunctions:\n  api:\n    handler: app.h\n    runtime: python3.12\n    code: ./src\n    memory: ${vars.memory}\n    description: ${vars.name}-${stage}-${env:USER_NAME}\n    environment: { LITERAL: 'cost $${not_a_ref}' }\n";
    let f = fixture();
    let dev = f.load_env(yaml, "dev", &[("USER_NAME", "ci")]).unwrap();
    assert_eq!(dev.function("api").memory, Some(256));
    assert_eq!(dev.function("api").description.as_deref(), Some("base-dev-ci"));
    let prod = f.load_env(yaml, "prod", &[("USER_NAME", "ci")]).unwrap();
    assert_eq!(prod.function("api").memory, Some(1024));
    // The escape survives typing and resolves to a literal `${`.
    let graph = slx::graph::build(&dev, &Default::default()).unwrap();
    let function = graph.get("function.api").unwrap();
    let (resolved, unknown) = graph.resolve(&function.config, &slx::graph::Facts::default());
    assert!(!unknown);
    assert_eq!(resolved["environment"]["LITERAL"], "cost ${not_a_ref}");
}

#[test]
fn dependency_cycle_names_the_cycle() {
    let yaml = "stack: shop\ndefaults: { handler: app.h, runtime: python3.12, code: ./src }\nfunctions:\n  a:\n    environment: { PEER: '${functions.b.arn}' }\n  b:\n    environment: { PEER: '${functions.a.arn}' }\n";
    let f = fixture();
    let l = f.load(yaml).unwrap();
    let errs = slx::graph::build(&l, &Default::default()).unwrap_err().0;
    check(
        &errs[0],
        "dependency cycle: function.a → function.b → function.a",
        4,
        3,
        Some("function.a"),
        "a resource cannot depend on itself, directly or through references; remove one of these references",
    );
}

#[test]
fn self_reference_is_a_cycle() {
    let f = fixture();
    let l = f.load(&function("    environment: { ME: '${functions.api.arn}' }\n")).unwrap();
    let errs = slx::graph::build(&l, &Default::default()).unwrap_err().0;
    assert_eq!(errs[0].message, "dependency cycle: function.api → function.api");
}

#[test]
fn invalid_stage_name() {
    let errs = fixture().load_env(&function(""), "Prod", &[]).unwrap_err();
    assert_eq!(errs[0].message, "invalid stage name `Prod`");
}

#[test]
fn reserved_tag_prefix() {
    let d = fixture().error(&function("    tags: { 'slx:stack': other }\n"));
    check(
        &d,
        "tag key `slx:stack` is reserved",
        7,
        13,
        Some("function.api"),
        "`slx:` tags mark ownership and `aws:` tags belong to AWS; choose another key",
    );
}

#[test]
fn several_problems_are_reported_together() {
    let errs = fixture().load(&function("    memory: 1\n    timeout: 0\n")).unwrap_err();
    let messages: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(messages, vec!["memory 1 MB is out of range 128..10240 MB", "timeout 0 s is out of range 1..900 s"]);
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let errs = fixture().load("stack: shop\nfunctions:\n  api: [unclosed\n").unwrap_err();
    assert!(errs[0].message.starts_with("invalid YAML: "), "{}", errs[0].message);
    assert_eq!(errs[0].file.as_deref(), Some("slx.yaml"));
    assert!(errs[0].mark.is_some());
}

#[test]
fn generated_roles_are_least_privilege() {
    let yaml = "stack: shop\ndefaults: { handler: app.h, runtime: python3.12, code: ./src }\nqueues:\n  jobs: {}\n  failed: {}\nfunctions:\n  worker:\n    dead_letter_queue: failed\n    access: { queues: { jobs: consume } }\n";
    let f = fixture();
    let l = f.load(yaml).unwrap();
    let g = slx::graph::build(&l, &Default::default()).unwrap();
    let facts =
        slx::graph::Facts { account: "123456789012".into(), region: "eu-west-1".into(), outputs: Default::default() };
    let (role, _) = g.resolve(&g.get("role.worker").unwrap().config, &facts);
    let expected = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
              "Resource": ["arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/shop-dev-worker:*"] },
            { "Sid": "SendToQueues", "Effect": "Allow", "Action": ["sqs:SendMessage"],
              "Resource": ["arn:aws:sqs:eu-west-1:123456789012:shop-dev-failed"] },
            { "Sid": "ConsumeQueues", "Effect": "Allow",
              "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
              "Resource": ["arn:aws:sqs:eu-west-1:123456789012:shop-dev-jobs"] }
        ]
    });
    assert_eq!(role["policy"], expected);
    assert_eq!(role["trust_policy"]["Statement"][0]["Principal"]["Service"], "lambda.amazonaws.com");
}

/// A function `api` with `events` (indented 6 spaces) and a few resources to point at.
fn with_events(events: &str) -> String {
    format!(
        "stack: shop\nqueues:\n  jobs: {{}}\n  audit: {{ fifo: true }}\n  failed: {{}}\ntables:\n  orders: {{ partition_key: {{ name: id, type: S }}, stream: new_image }}\n  plain: {{ partition_key: {{ name: id, type: S }} }}\nbuses:\n  shop-events: {{}}\nfunctions:\n  api:\n    handler: app.handler\n    runtime: python3.12\n    code: ./src\n    events:\n{events}"
    )
}

#[test]
fn sqs_batches_above_ten_need_a_batching_window() {
    let d = fixture().error(&with_events("      - sqs: { queue: jobs, batch_size: 50 }\n"));
    check(
        &d,
        "batch_size 50 needs a batching_window",
        17,
        41,
        Some("function.api"),
        "SQS batches above 10 records need `batching_window` of at least 1s",
    );
    assert!(
        fixture().load(&with_events("      - sqs: { queue: jobs, batch_size: 50, batching_window: 1s }\n")).is_ok()
    );
}

#[test]
fn fifo_queues_cap_batches_at_ten() {
    let d = fixture().error(&with_events("      - sqs: { queue: audit, batch_size: 20, batching_window: 5s }\n"));
    check(
        &d,
        "batch_size 20 is out of range 1..10",
        17,
        42,
        Some("function.api"),
        "Lambda reads at most 10 messages at a time from a FIFO queue",
    );
}

#[test]
fn streams_need_a_starting_position() {
    let d = fixture().error(&with_events("      - stream: { table: orders }\n"));
    check(
        &d,
        "a stream source needs `starting_position`",
        17,
        9,
        Some("function.api"),
        "use `latest` (new records only) or `trim_horizon` (everything retained)",
    );
}

#[test]
fn on_failure_is_for_stream_sources_only() {
    let d = fixture().error(&with_events("      - sqs: { queue: jobs, on_failure: { queue: failed } }\n"));
    check(
        &d,
        "on_failure applies to stream sources only",
        17,
        29,
        Some("function.api"),
        "failed SQS messages go to the queue's dead-letter queue: set `dead_letter:` on queue `jobs`",
    );
}

#[test]
fn stream_sources_need_a_table_with_a_stream() {
    let d = fixture().error(&with_events("      - stream: { table: plain, starting_position: latest }\n"));
    check(
        &d,
        "table `plain` has no stream",
        17,
        26,
        Some("function.api"),
        "set `stream: new_and_old_images` (or another view) on table `plain`",
    );
}

#[test]
fn stream_failure_destination_cannot_be_fifo() {
    let d = fixture().error(&with_events(
        "      - stream: { table: orders, starting_position: latest, on_failure: { queue: audit } }\n",
    ));
    assert_eq!(d.message, "the on_failure queue `audit` is a FIFO queue");
}

#[test]
fn stream_tuning_limits() {
    let d = fixture().error(&with_events(
        "      - stream: { table: orders, starting_position: latest, parallelization_factor: 11 }\n",
    ));
    check(
        &d,
        "parallelization_factor 11 is out of range 1..10",
        17,
        85,
        Some("function.api"),
        "Lambda processes 1 to 10 batches per shard at once",
    );
}

#[test]
fn kinesis_needs_a_stream_arn() {
    let d = fixture().error(&with_events(
        "      - kinesis: { arn: 'arn:aws:sqs:us-east-1:123456789012:q', starting_position: latest }\n",
    ));
    assert_eq!(d.message, "`arn:aws:sqs:us-east-1:123456789012:q` is not a Kinesis stream ARN");
}

#[test]
fn schedule_expressions_are_checked_where_they_are_written() {
    let d = fixture().error(&with_events("      - schedule: rate(1 minutes)\n"));
    check(
        &d,
        "`rate(1 minutes)` must say `1 minute`",
        17,
        19,
        Some("function.api"),
        "EventBridge wants the singular unit for 1 and the plural otherwise",
    );
    let d = fixture().error(&with_events("      - schedule: { expression: 'cron(0 8 * * * *)' }\n"));
    assert_eq!(d.message, "`cron(0 8 * * * *)`: exactly one of day-of-month and day-of-week must be `?`");
    assert_eq!(d.mark, Some(Mark { line: 17, col: 33 }));
}

#[test]
fn event_patterns_are_checked() {
    let d =
        fixture().error(&with_events("      - eventbridge: { bus: shop-events, pattern: { source: shop.orders } }\n"));
    check(
        &d,
        "pattern field `source` must be a list of values, e.g. [\"shop.orders\"]",
        17,
        51,
        Some("function.api"),
        "patterns match with arrays at the leaves, e.g. { source: [orders.app], detail: { status: [created] } }",
    );
}

#[test]
fn one_kind_of_rule_input() {
    let d = fixture().error(&with_events(
        "      - eventbridge: { pattern: { source: [x] }, input: { a: 1 }, input_transformer: { template: '<a>' } }\n",
    ));
    check(
        &d,
        "set at most one of `input`, `input_path` and `input_transformer`",
        17,
        9,
        Some("function.api"),
        "EventBridge sends one of them to the target",
    );
}

#[test]
fn rule_dead_letter_queues_are_standard() {
    let d = fixture()
        .error(&with_events("      - schedule: { expression: rate(1 hour), dead_letter: { queue: audit } }\n"));
    check(
        &d,
        "the dead-letter queue `audit` is a FIFO queue",
        17,
        69,
        Some("function.api"),
        "EventBridge dead-letter queues must be standard queues",
    );
}

#[test]
fn several_schedules_need_names() {
    let d = fixture().error(&with_events("      - schedule: rate(1 hour)\n      - schedule: rate(2 hours)\n"));
    check(
        &d,
        "two events of `api` are both rule.api.schedule",
        18,
        9,
        Some("function.api"),
        "give each a distinct `name:`",
    );
    assert!(
        fixture()
            .load(&with_events(
                "      - schedule: rate(1 hour)\n      - schedule: { expression: rate(2 hours), name: slow }\n"
            ))
            .is_ok()
    );
}

#[test]
fn unknown_bus_and_table_grants() {
    let d = fixture().error(&with_events("      - eventbridge: { bus: shop-event, pattern: { source: [x] } }\n"));
    check(&d, "unknown bus `shop-event`", 17, 29, Some("function.api"), "did you mean `shop-events`?");
    let yaml = function(
        "    access: { tables: { ordres: read } }\ntables:\n  orders: { partition_key: { name: id, type: S } }\n",
    );
    let d = fixture().error(&yaml);
    check(&d, "unknown table `ordres`", 7, 25, Some("function.api"), "did you mean `orders`?");
}

#[test]
fn event_addresses_come_from_sources_not_positions() {
    let f = fixture();
    let a = f.load(&with_events("      - sqs: { queue: jobs }\n      - schedule: rate(1 hour)\n")).unwrap();
    let b = f.load(&with_events("      - schedule: rate(1 hour)\n      - sqs: { queue: jobs }\n")).unwrap();
    let addresses = |l: &Loaded| {
        let mut v: Vec<String> =
            slx::graph::build(l, &Default::default()).unwrap().resources.iter().map(|r| r.address.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(addresses(&a), addresses(&b));
    assert!(addresses(&a).contains(&"event_source.api.sqs.jobs".to_string()));
    assert!(addresses(&a).contains(&"rule.api.schedule".to_string()));
}

#[test]
fn event_sources_and_table_grants_are_least_privilege() {
    let yaml = with_events(
        "      - sqs: { queue: jobs }\n      - stream: { table: orders, starting_position: latest, on_failure: { queue: failed } }\n",
    ) + "    access: { tables: { plain: read } }\n";
    let f = fixture();
    let l = f.load(&yaml).unwrap();
    let g = slx::graph::build(&l, &Default::default()).unwrap();
    let facts =
        slx::graph::Facts { account: "123456789012".into(), region: "eu-west-1".into(), outputs: Default::default() };
    let (role, _) = g.resolve(&g.get("role.api").unwrap().config, &facts);
    let statements = role["policy"]["Statement"].as_array().unwrap();
    let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid}"));
    assert_eq!(
        by_sid("SendToQueues")["Resource"],
        serde_json::json!(["arn:aws:sqs:eu-west-1:123456789012:shop-dev-failed"])
    );
    assert_eq!(
        by_sid("ConsumeQueues")["Resource"],
        serde_json::json!(["arn:aws:sqs:eu-west-1:123456789012:shop-dev-jobs"])
    );
    assert_eq!(
        by_sid("ReadTableStreams")["Resource"],
        serde_json::json!(["arn:aws:dynamodb:eu-west-1:123456789012:table/shop-dev-orders/stream/*"])
    );
    assert_eq!(
        by_sid("ReadTables"),
        &serde_json::json!({
            "Sid": "ReadTables", "Effect": "Allow",
            "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:ConditionCheckItem"],
            "Resource": ["arn:aws:dynamodb:eu-west-1:123456789012:table/shop-dev-plain", "arn:aws:dynamodb:eu-west-1:123456789012:table/shop-dev-plain/index/*"]
        })
    );
    assert!(statements.iter().all(|s| s["Sid"] != "WriteTables"), "read access grants no writes");
    let sids: Vec<&str> = statements.iter().map(|s| s["Sid"].as_str().unwrap()).collect();
    assert_eq!(sids, vec!["Logs", "SendToQueues", "ConsumeQueues", "ReadTableStreams", "ReadTables"]);
}

fn chat(routes: &str) -> String {
    format!(
        "stack: chat\ndefaults: {{ runtime: python3.12, code: ./src }}\nwebsockets:\n  chat:\n    connections_table: true\n    routes:\n{routes}functions:\n  connect: {{ handler: app.connect }}\n  send:\n    handler: app.send\n    access: {{ websockets: {{ chat: manage_connections }} }}\n"
    )
}

#[test]
fn reserved_route_keys_must_be_known() {
    let d = fixture().error(&chat("      $connect: connect\n      $conect: send\n"));
    check(
        &d,
        "`$conect` is not a route API Gateway knows",
        8,
        7,
        Some("websocket.chat"),
        "did you mean `$connect`? Keys starting with `$` are reserved for $connect, $disconnect and $default",
    );
    let d = fixture().error(&chat("      $connect: connect\n      send message: send\n"));
    assert_eq!(d.message, "invalid route key `send message`");
}

#[test]
fn duplicate_route_keys_are_rejected() {
    let d = fixture().error(&chat("      $connect: connect\n      sendMessage: send\n      $connect: send\n"));
    check(&d, "duplicate key `$connect`", 9, 7, None, "it is first defined at line 7, column 7");
}

#[test]
fn routes_name_functions_of_the_stack() {
    let d = fixture().error(&chat("      $connect: conect\n"));
    check(&d, "unknown function `conect`", 7, 17, Some("websocket.chat"), "did you mean `connect`?");
}

#[test]
fn route_selection_must_read_the_body() {
    let d = fixture().error(
        &chat("      $connect: connect\n")
            .replace("    connections_table", "    route_selection: $request.header.x\n    connections_table"),
    );
    assert_eq!(d.message, "`$request.header.x` is not a WebSocket route selection expression");
}

#[test]
fn websocket_roles_manage_only_their_connections_and_share_the_table() {
    let f = fixture();
    let l = f.load(&chat("      $connect: connect\n      sendMessage: send\n")).unwrap();
    assert!(l.spec.tables.contains_key("chat-connections"), "connections_table: true adds the table");
    let g = slx::graph::build(&l, &Default::default()).unwrap();
    let mut facts =
        slx::graph::Facts { account: "123456789012".into(), region: "eu-west-1".into(), outputs: Default::default() };
    facts.outputs.insert("websocket.chat".into(), [("id".to_string(), "abc123".to_string())].into());
    let (send_role, unknown) = g.resolve(&g.get("role.send").unwrap().config, &facts);
    assert!(!unknown);
    let statements = send_role["policy"]["Statement"].as_array().unwrap();
    let manage = statements.iter().find(|s| s["Sid"] == "ManageConnections").unwrap();
    assert_eq!(manage["Action"], serde_json::json!(["execute-api:ManageConnections"]));
    assert_eq!(
        manage["Resource"],
        serde_json::json!(["arn:aws:execute-api:eu-west-1:123456789012:abc123/dev/POST/@connections/*"])
    );
    let (connect_role, _) = g.resolve(&g.get("role.connect").unwrap().config, &facts);
    let connect_statements = connect_role["policy"]["Statement"].as_array().unwrap();
    assert!(connect_statements.iter().all(|s| s["Sid"] != "ManageConnections"), "only granted where asked");
    let write = connect_statements.iter().find(|s| s["Sid"] == "WriteTables").unwrap();
    assert_eq!(write["Resource"][0], "arn:aws:dynamodb:eu-west-1:123456789012:table/chat-dev-chat-connections");
    let (connect_fn, _) = g.resolve(&g.get("function.connect").unwrap().config, &facts);
    assert_eq!(connect_fn["environment"]["CONNECTIONS_TABLE"], "chat-dev-chat-connections");
    let (route, _) = g.resolve(&g.get("route.chat.$connect").unwrap().config, &facts);
    assert_eq!(route["permission"]["source_arn"], "arn:aws:execute-api:eu-west-1:123456789012:abc123/*/$connect");
    assert_eq!(route["permission"]["principal"], "apigateway.amazonaws.com");
}

/// An example's graph, loaded from its folder.
fn example_graph(name: &str) -> slx::graph::Graph {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    let yaml = std::fs::read_to_string(dir.join("slx.yaml")).unwrap();
    let l = load_str(&yaml, "slx.yaml", &dir, "dev", &|_| None).map_err(|d| d.0).unwrap();
    slx::graph::build(&l, &Default::default()).unwrap()
}

/// A target selects its resources, what re-applies after them and what they
/// need, in the graph's order; a name that selects nothing is an error
/// offering the nearest one.
#[test]
fn targets_select_what_they_name_need_and_republish() {
    let addresses = |g: &slx::graph::Graph| g.resources.iter().map(|r| r.address.clone()).collect::<Vec<_>>();
    let canary = example_graph("canary-release");
    let function = canary.select(&["function.quote".into()]).unwrap();
    // The role's policy names the queue the mapping consumes; the alias publishes the new code.
    assert_eq!(
        addresses(&function),
        ["log_group.quote", "queue.quotes", "role.quote", "function.quote", "alias.quote.live"]
    );
    assert_eq!(function.targets, ["function.quote"]);
    let entry = canary.select(&["functions.quote".into()]).unwrap();
    assert_eq!(addresses(&entry), addresses(&canary), "the entry declares all but the queue, which it needs");

    let chat = example_graph("websocket-chat");
    let route = addresses(&chat.select(&["route.chat.sendMessage".into()]).unwrap());
    // A changed route is deployed, and a deployment holds every route of its API.
    for needed in ["deployment.chat", "route.chat.$connect", "function.connect"] {
        assert!(route.contains(&needed.to_string()), "{needed} in {route:?}");
    }
    let send = addresses(&chat.select(&["function.send".into()]).unwrap());
    assert_eq!(send, ["log_group.send", "table.chat-connections", "websocket.chat", "role.send", "function.send"]);
    let in_order: Vec<String> = addresses(&chat).into_iter().filter(|a| send.contains(a)).collect();
    assert_eq!(send, in_order);

    let wrong = chat.select(&["route.chat.sendMesage".into()]).unwrap_err();
    assert_eq!(wrong.hint.as_deref(), Some("did you mean `route.chat.sendMessage`?"));
}

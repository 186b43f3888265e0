//! The event-driven example end to end, checked through the AWS API.

use crate::support::{Aws, Emulator, copy_example, edit, percent_decode};
use serde_json::Value;

impl Aws {
    async fn mappings(&self, function: &str) -> Vec<aws_sdk_lambda::types::EventSourceMappingConfiguration> {
        self.lambda
            .list_event_source_mappings()
            .function_name(function)
            .send()
            .await
            .unwrap()
            .event_source_mappings()
            .to_vec()
    }

    async fn queue_arn(&self, name: &str) -> String {
        let url = self.sqs.get_queue_url().queue_name(name).send().await.unwrap().queue_url().unwrap().to_string();
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone()
    }

    async fn policy(&self, function: &str) -> Value {
        let p = self.lambda.get_policy().function_name(function).send().await.unwrap();
        serde_json::from_str(p.policy().unwrap()).unwrap()
    }
}

#[tokio::test]
async fn order_pipeline_lifecycle() {
    let emu = Emulator::start();
    let aws = Aws::new(&emu).await;
    let dir = copy_example("order-pipeline");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Applied: 22 changed, 0 failed, 0 skipped."), "{run:?}");

    // Table: keys, TTL, stream, point-in-time recovery, tags.
    let t = aws.dynamodb.describe_table().table_name("shop-dev-orders").send().await.unwrap();
    let t = t.table().unwrap();
    assert_eq!(t.key_schema()[0].attribute_name(), "orderId");
    assert_eq!(t.billing_mode_summary().and_then(|b| b.billing_mode()).map(|m| m.as_str()), Some("PAY_PER_REQUEST"));
    let stream = t.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type().map(|v| v.as_str()), Some("NEW_AND_OLD_IMAGES"));
    let stream_arn = t.latest_stream_arn().unwrap().to_string();
    let ttl = aws.dynamodb.describe_time_to_live().table_name("shop-dev-orders").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expiresAt"));
    let pitr = aws.dynamodb.describe_continuous_backups().table_name("shop-dev-orders").send().await.unwrap();
    let status = pitr
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status());
    assert_eq!(status.map(|s| s.as_str()), Some("ENABLED"), "point-in-time recovery is on by default");

    // Mappings, with their tuning.
    let ingest = aws.mappings("shop-dev-ingest").await;
    assert_eq!(ingest.len(), 1);
    let sqs = &ingest[0];
    assert_eq!(sqs.event_source_arn(), Some(aws.queue_arn("shop-dev-orders").await.as_str()));
    assert_eq!(sqs.batch_size(), Some(20));
    assert_eq!(sqs.maximum_batching_window_in_seconds(), Some(5));
    assert_eq!(sqs.scaling_config().and_then(|s| s.maximum_concurrency()), Some(10));
    assert_eq!(
        sqs.function_response_types().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        vec!["ReportBatchItemFailures"]
    );
    let uuid = sqs.uuid().unwrap().to_string();
    let project = aws.mappings("shop-dev-project").await;
    assert_eq!(project.len(), 1);
    let s = &project[0];
    assert_eq!(s.event_source_arn(), Some(stream_arn.as_str()));
    assert_eq!(s.starting_position().map(|p| p.as_str()), Some("LATEST"));
    assert_eq!(
        (s.batch_size(), s.bisect_batch_on_function_error(), s.maximum_retry_attempts()),
        (Some(100), Some(true), Some(3))
    );
    let failures_arn = aws.queue_arn("shop-dev-stream-failures").await;
    assert_eq!(
        s.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination()),
        Some(failures_arn.as_str())
    );

    // Rules, targets and permissions scoped by SourceArn.
    let nightly = aws.events.describe_rule().name("shop-dev-nightly-report-schedule").send().await.unwrap();
    assert_eq!(nightly.schedule_expression(), Some("cron(0 2 * * ? *)"));
    let notify = aws
        .events
        .describe_rule()
        .name("shop-dev-notify-shop-events")
        .event_bus_name("shop-dev-shop-events")
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(notify.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern, serde_json::json!({ "source": ["shop.orders"], "detail-type": ["OrderShipped"] }));
    let targets = aws
        .events
        .list_targets_by_rule()
        .rule("shop-dev-notify-shop-events")
        .event_bus_name("shop-dev-shop-events")
        .send()
        .await
        .unwrap();
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), "arn:aws:lambda:us-east-1:123456789012:function:shop-dev-notify");
    assert_eq!(target.input_transformer().unwrap().input_template(), r#"{"orderId": <id>}"#);
    assert_eq!(target.retry_policy().and_then(|r| r.maximum_retry_attempts()), Some(3));
    let events_dlq = aws.queue_arn("shop-dev-events-dlq").await;
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), Some(events_dlq.as_str()));
    for (function, rule_arn) in [
        ("shop-dev-notify", notify.arn().unwrap().to_string()),
        ("shop-dev-nightly-report", nightly.arn().unwrap().to_string()),
    ] {
        let policy = aws.policy(function).await;
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1, "{policy}");
        assert_eq!(statements[0]["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"],
            rule_arn.as_str(),
            "scoped to this rule only"
        );
    }
    // The DLQ lets exactly that rule send to it.
    let url = aws
        .sqs
        .get_queue_url()
        .queue_name("shop-dev-events-dlq")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let attrs = aws
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await
        .unwrap();
    let qp: Value =
        serde_json::from_str(&attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::Policy]).unwrap();
    assert_eq!(
        qp["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
        serde_json::json!([notify.arn().unwrap()])
    );

    // Role policies from the graph.
    let doc = aws.iam.get_role_policy().role_name("shop-dev-project").policy_name("slx").send().await.unwrap();
    let text = percent_decode(doc.policy_document());
    assert!(text.contains("dynamodb:GetRecords") && text.contains("table/shop-dev-orders/stream/*"), "{text}");
    let doc = aws.iam.get_role_policy().role_name("shop-dev-ingest").policy_name("slx").send().await.unwrap();
    let text = percent_decode(doc.policy_document());
    assert!(text.contains("dynamodb:PutItem") && !text.contains("dynamodb:Scan"), "{text}");

    // No change, no write.
    emu.reset_calls();
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(emu.writes().is_empty(), "{:?}", emu.writes());

    // Drift on a mapping and a rule is found and reverted.
    aws.lambda.update_event_source_mapping().uuid(&uuid).enabled(false).send().await.unwrap();
    aws.events
        .put_rule()
        .name("shop-dev-nightly-report-schedule")
        .schedule_expression("rate(1 hour)")
        .send()
        .await
        .unwrap();
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("~ event_source.ingest.sqs.orders  update  shop-dev-ingest|sqs:shop-dev-orders  [drift]\n"),
        "{run:?}"
    );
    assert!(
        run.stdout.contains("      enabled: false → true  (drift: changed outside slx; deploy reverts it)\n"),
        "{run:?}"
    );
    assert!(run.stdout.contains("      schedule: \"rate(1 hour)\" → \"cron(0 2 * * ? *)\"  (drift: "), "{run:?}");
    assert_eq!(emu.slx(&["deploy", "-f", file, "--yes"]).code, 0);
    let nightly = aws.events.describe_rule().name("shop-dev-nightly-report-schedule").send().await.unwrap();
    assert_eq!(nightly.schedule_expression(), Some("cron(0 2 * * ? *)"));
    assert_eq!(aws.mappings("shop-dev-ingest").await[0].state(), Some("Enabled"));

    // A tuning change updates the mapping in place.
    edit(&spec, "          batch_size: 20\n", "          batch_size: 50\n");
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = aws.mappings("shop-dev-ingest").await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].uuid(), Some(uuid.as_str()), "same mapping, updated in place");
    assert_eq!(after[0].batch_size(), Some(50));
    let writes: Vec<String> = emu.resource_writes().into_iter().map(|c| c.operation).collect();
    assert_eq!(writes, vec!["PUT /2015-03-31/event-source-mappings/".to_string() + &uuid]);

    // Changing a key replaces the table, and the plan says so loudly.
    edit(&spec, "partition_key: { name: orderId, type: S }", "partition_key: { name: id, type: S }");
    let run = emu.slx(&["plan", "-f", file]);
    assert!(run.stdout.contains("-/+ table.orders"), "{run:?}");
    assert!(run.stdout.contains("      partition_key.name: \"orderId\" → \"id\" (forces replacement)\n"), "{run:?}");
    assert!(
        run.stdout.contains("      ! replacing deletes the table and everything in it, then creates it empty\n"),
        "{run:?}"
    );
    edit(&spec, "partition_key: { name: id, type: S }", "partition_key: { name: orderId, type: S }");

    // Destroy refuses a table with items, then removes everything with --force.
    aws.dynamodb
        .put_item()
        .table_name("shop-dev-orders")
        .item("orderId", aws_sdk_dynamodb::types::AttributeValue::S("o-1".into()))
        .send()
        .await
        .unwrap();
    let run = emu.slx(&["destroy", "-f", file, "--yes"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("refusing to delete table shop-dev-orders: it holds items"), "{run:?}");
    assert!(aws.dynamodb.describe_table().table_name("shop-dev-orders").send().await.is_ok());
    let run = emu.slx(&["destroy", "-f", file, "--yes", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        aws.dynamodb.list_tables().send().await.unwrap().table_names() == ["slx-state"],
        "only the deployment record table is left"
    );
    assert!(aws.lambda.list_event_source_mappings().send().await.unwrap().event_source_mappings().is_empty());
    assert!(aws.events.list_rules().send().await.unwrap().rules().is_empty());
    let buses = aws.events.list_event_buses().send().await.unwrap();
    assert!(buses.event_buses().iter().all(|b| b.name() == Some("default")), "{buses:?}");
    assert!(aws.lambda.list_functions().send().await.unwrap().functions().is_empty());
    assert!(aws.sqs.list_queues().send().await.unwrap().queue_urls().is_empty());
}

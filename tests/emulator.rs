//! The launcher's extensions to moto, checked against the behaviour the AWS
//! API reference documents.

use crate::support::Emulator;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{DeadLetterConfig, DestinationConfig, EphemeralStorage, FunctionCode, OnFailure, Runtime};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

async fn setup(emu: &Emulator) -> (aws_sdk_lambda::Client, String) {
    let c = emu.sdk().await;
    let iam = aws_sdk_iam::Client::new(&c);
    let role = iam.create_role().role_name("r").assume_role_policy_document("{}").send().await.unwrap();
    (aws_sdk_lambda::Client::new(&c), role.role().unwrap().arn().to_string())
}

fn zip() -> Blob {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.py"), "x = 1\n").unwrap();
    Blob::new(slx::package::build(dir.path()).unwrap().bytes)
}

async fn create(
    lambda: &aws_sdk_lambda::Client,
    role: &str,
    name: &str,
) -> aws_sdk_lambda::operation::create_function::CreateFunctionOutput {
    lambda
        .create_function()
        .function_name(name)
        .role(role)
        .runtime(Runtime::Python312)
        .handler("a.h")
        .code(FunctionCode::builder().zip_file(zip()).build())
        .dead_letter_config(DeadLetterConfig::builder().target_arn("arn:aws:sqs:us-east-1:123456789012:dlq").build())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn lambda_keeps_and_updates_dead_letter_config_and_ephemeral_storage() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    let created = create(&lambda, &role, "f").await;
    assert_eq!(
        created.dead_letter_config().and_then(|d| d.target_arn()),
        Some("arn:aws:sqs:us-east-1:123456789012:dlq")
    );
    lambda
        .update_function_configuration()
        .function_name("f")
        .ephemeral_storage(EphemeralStorage::builder().size(2048).build().unwrap())
        .dead_letter_config(DeadLetterConfig::builder().target_arn("").build())
        .send()
        .await
        .unwrap();
    let c = lambda.get_function_configuration().function_name("f").send().await.unwrap();
    assert_eq!(c.ephemeral_storage().map(|e| e.size()), Some(2048));
    assert_eq!(c.dead_letter_config().and_then(|d| d.target_arn()), None, "an empty TargetArn removes the DLQ");
}

#[tokio::test]
async fn put_event_invoke_config_replaces_and_update_merges() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    let dest = DestinationConfig::builder()
        .on_failure(OnFailure::builder().destination("arn:aws:sqs:us-east-1:123456789012:dlq").build())
        .build();
    lambda
        .put_function_event_invoke_config()
        .function_name("f")
        .maximum_retry_attempts(1)
        .destination_config(dest)
        .send()
        .await
        .unwrap();
    lambda
        .put_function_event_invoke_config()
        .function_name("f")
        .maximum_event_age_in_seconds(600)
        .send()
        .await
        .unwrap();
    let got = lambda.get_function_event_invoke_config().function_name("f").send().await.unwrap();
    assert_eq!(got.maximum_event_age_in_seconds(), Some(600));
    assert_eq!(got.maximum_retry_attempts(), None, "settings left out of a put are removed");
    assert!(got.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination()).is_none());
    lambda.update_function_event_invoke_config().function_name("f").maximum_retry_attempts(0).send().await.unwrap();
    let got = lambda.get_function_event_invoke_config().function_name("f").send().await.unwrap();
    assert_eq!(
        (got.maximum_retry_attempts(), got.maximum_event_age_in_seconds()),
        (Some(0), Some(600)),
        "update merges"
    );
}

#[tokio::test]
async fn lambda_update_latency_reports_in_progress_and_refuses_a_second_mutation() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    emu.configure(r#"{"lambda_update_seconds": 1.0}"#);
    let created = create(&lambda, &role, "f").await;
    assert_eq!(created.state().map(|s| s.as_str()), Some("Pending"));
    let err = lambda.update_function_configuration().function_name("f").memory_size(256).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(409));
    assert!(format!("{:?}", err).contains("ResourceConflictException"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let c = lambda.get_function_configuration().function_name("f").send().await.unwrap();
    assert_eq!(c.state().map(|s| s.as_str()), Some("Active"));
    lambda.update_function_configuration().function_name("f").memory_size(256).send().await.unwrap();
    let c = lambda.get_function_configuration().function_name("f").send().await.unwrap();
    assert_eq!(c.last_update_status().map(|s| s.as_str()), Some("InProgress"));
    let err = lambda.update_function_code().function_name("f").zip_file(zip()).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(409));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let c = lambda.get_function_configuration().function_name("f").send().await.unwrap();
    assert_eq!(c.last_update_status().map(|s| s.as_str()), Some("Successful"));
    assert_eq!(c.memory_size(), Some(256));
}

#[tokio::test]
async fn call_log_names_operations_and_writes() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    emu.reset_calls();
    create(&lambda, &role, "f").await;
    lambda.get_function().function_name("f").send().await.unwrap();
    let c = emu.sdk().await;
    aws_sdk_sqs::Client::new(&c).list_queues().send().await.unwrap();
    let calls: Vec<(String, String, bool)> =
        emu.calls().into_iter().map(|c| (c.service, c.operation, c.write)).collect();
    assert_eq!(
        calls,
        vec![
            ("lambda".into(), "CreateFunction".into(), true),
            ("lambda".into(), "GetFunction".into(), false),
            ("sqs".into(), "ListQueues".into(), false),
        ]
    );
}

/// API Gateway v2 deployments and UpdateStage, which the launcher adds to moto.
#[tokio::test]
async fn apigateway_deployments_attach_to_stages() {
    use aws_sdk_apigatewayv2::types::ProtocolType;
    let emu = Emulator::start();
    let api = aws_sdk_apigatewayv2::Client::new(&emu.sdk().await);
    let created = api
        .create_api()
        .name("ws")
        .protocol_type(ProtocolType::Websocket)
        .route_selection_expression("$request.body.action")
        .send()
        .await
        .unwrap();
    let id = created.api_id().unwrap();
    api.create_stage().api_id(id).stage_name("live").send().await.unwrap();

    // No routes, nothing to deploy (as API Gateway says).
    let err = api.create_deployment().api_id(id).stage_name("live").send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert!(format!("{err:?}").contains("no routes exist in this API"), "{err:?}");

    api.create_route().api_id(id).route_key("$default").send().await.unwrap();
    let first = api.create_deployment().api_id(id).stage_name("live").description("one").send().await.unwrap();
    assert_eq!(first.deployment_status().map(|s| s.as_str()), Some("DEPLOYED"));
    let first_id = first.deployment_id().unwrap().to_string();
    let stage = api.get_stage().api_id(id).stage_name("live").send().await.unwrap();
    assert_eq!(stage.deployment_id(), Some(first_id.as_str()), "stageName attaches the deployment");

    let second = api.create_deployment().api_id(id).description("two").send().await.unwrap();
    let second_id = second.deployment_id().unwrap().to_string();
    let stage = api.get_stage().api_id(id).stage_name("live").send().await.unwrap();
    assert_eq!(stage.deployment_id(), Some(first_id.as_str()), "without stageName the stage keeps its deployment");
    let listed = api.get_deployments().api_id(id).send().await.unwrap();
    assert_eq!(listed.items().len(), 2);
    let got = api.get_deployment().api_id(id).deployment_id(&second_id).send().await.unwrap();
    assert_eq!(got.description(), Some("two"));

    let updated = api.update_stage().api_id(id).stage_name("live").deployment_id(&second_id).send().await.unwrap();
    assert_eq!(updated.deployment_id(), Some(second_id.as_str()));
    let err = api.update_stage().api_id(id).stage_name("live").deployment_id("nope00").send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));
    let err = api.delete_deployment().api_id(id).deployment_id(&second_id).send().await.unwrap_err();
    assert!(format!("{err:?}").contains("Active stages pointing to this deployment"), "{err:?}");
    api.delete_deployment().api_id(id).deployment_id(&first_id).send().await.unwrap();
    assert_eq!(api.get_deployments().api_id(id).send().await.unwrap().items().len(), 1);
}

/// Event-invoke configs are kept per qualifier, as Lambda does.
#[tokio::test]
async fn event_invoke_configs_are_per_qualifier() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    lambda.publish_version().function_name("f").send().await.unwrap();
    lambda.create_alias().function_name("f").name("live").function_version("1").send().await.unwrap();
    lambda
        .put_function_event_invoke_config()
        .function_name("f")
        .qualifier("live")
        .maximum_retry_attempts(0)
        .send()
        .await
        .unwrap();
    let missing = lambda.get_function_event_invoke_config().function_name("f").send().await.unwrap_err();
    assert_eq!(missing.raw_response().map(|r| r.status().as_u16()), Some(404), "nothing on $LATEST");
    lambda.put_function_event_invoke_config().function_name("f").maximum_retry_attempts(2).send().await.unwrap();
    let live = lambda.get_function_event_invoke_config().function_name("f").qualifier("live").send().await.unwrap();
    assert_eq!(live.maximum_retry_attempts(), Some(0));
    assert!(live.function_arn().unwrap().ends_with(":function:f:live"), "{:?}", live.function_arn());
    let latest = lambda.get_function_event_invoke_config().function_name("f").send().await.unwrap();
    assert_eq!(latest.maximum_retry_attempts(), Some(2));
    let all = lambda.list_function_event_invoke_configs().function_name("f").send().await.unwrap();
    assert_eq!(all.function_event_invoke_configs().len(), 2);
    lambda.delete_function_event_invoke_config().function_name("f").qualifier("live").send().await.unwrap();
    assert!(lambda.get_function_event_invoke_config().function_name("f").qualifier("live").send().await.is_err());
    let bad = lambda
        .put_function_event_invoke_config()
        .function_name("f")
        .qualifier("nope")
        .maximum_retry_attempts(0)
        .send()
        .await;
    assert!(bad.is_err(), "unknown alias");
}

/// Provisioned concurrency, which the launcher adds, lives on aliases and versions only.
#[tokio::test]
async fn provisioned_concurrency_is_for_published_qualifiers() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    let latest = lambda
        .put_provisioned_concurrency_config()
        .function_name("f")
        .qualifier("$LATEST")
        .provisioned_concurrent_executions(1)
        .send()
        .await;
    assert!(format!("{:?}", latest.unwrap_err()).contains("unpublished function versions"));
    lambda.publish_version().function_name("f").send().await.unwrap();
    lambda.create_alias().function_name("f").name("live").function_version("1").send().await.unwrap();
    let put = lambda
        .put_provisioned_concurrency_config()
        .function_name("f")
        .qualifier("live")
        .provisioned_concurrent_executions(3)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().map(|s| s.as_str()), Some("READY"));
    let got = lambda.get_provisioned_concurrency_config().function_name("f").qualifier("live").send().await.unwrap();
    assert_eq!(got.requested_provisioned_concurrent_executions(), Some(3));
    lambda.delete_provisioned_concurrency_config().function_name("f").qualifier("live").send().await.unwrap();
    let gone =
        lambda.get_provisioned_concurrency_config().function_name("f").qualifier("live").send().await.unwrap_err();
    assert!(format!("{gone:?}").contains("ProvisionedConcurrencyConfigNotFoundException"), "{gone:?}");
}

#[tokio::test]
async fn creating_an_existing_alias_is_a_resource_conflict() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    lambda.publish_version().function_name("f").send().await.unwrap();
    let alias = || lambda.create_alias().function_name("f").name("live").function_version("1").send();
    alias().await.unwrap();
    let again = alias().await.unwrap_err();
    assert_eq!(again.code(), Some("ResourceConflictException"), "{again:?}");
    assert_eq!(again.raw_response().map(|r| r.status().as_u16()), Some(409));
}

/// Every UpdateAlias gives the alias a new RevisionId (slx trusts what it
/// recorded about an alias only while its revision is unchanged); a
/// configuration read through the alias is its version's.
#[tokio::test]
async fn updating_an_alias_changes_its_revision() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    lambda.publish_version().function_name("f").send().await.unwrap();
    lambda.update_function_configuration().function_name("f").memory_size(512).send().await.unwrap();
    lambda.publish_version().function_name("f").send().await.unwrap();
    let created = lambda.create_alias().function_name("f").name("live").function_version("1").send().await.unwrap();
    let got = lambda.get_alias().function_name("f").name("live").send().await.unwrap();
    assert_eq!(got.revision_id(), created.revision_id(), "reading changes nothing");
    let via_alias = lambda.get_function_configuration().function_name("f").qualifier("live").send().await.unwrap();
    assert_eq!((via_alias.version(), via_alias.memory_size()), (Some("1"), Some(128)));
    let moved = lambda.update_alias().function_name("f").name("live").function_version("2").send().await.unwrap();
    assert_ne!(moved.revision_id(), created.revision_id());
    let again = lambda.update_alias().function_name("f").name("live").description("d").send().await.unwrap();
    assert_ne!(again.revision_id(), moved.revision_id());
    assert_eq!(
        lambda.get_alias().function_name("f").name("live").send().await.unwrap().revision_id(),
        again.revision_id()
    );
    let via_alias = lambda.get_function_configuration().function_name("f").qualifier("live").send().await.unwrap();
    assert_eq!((via_alias.version(), via_alias.memory_size()), (Some("2"), Some(512)));
}

/// One answer read off a connection: status line, lower-cased headers and
/// the body its Content-Length gives (none for a HEAD).
fn read_answer(reader: &mut impl std::io::BufRead, head: bool) -> (String, Vec<(String, String)>, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        match line.trim_end().split_once(':') {
            Some((k, v)) => headers.push((k.to_ascii_lowercase(), v.trim().to_string())),
            None => break,
        }
    }
    let length = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; if head { 0 } else { length }];
    reader.read_exact(&mut body).unwrap();
    (status.trim_end().to_string(), headers, String::from_utf8(body).unwrap())
}

/// Connections stay open across calls, as AWS endpoints allow (moto's own
/// server closes each one), and the launcher's server reads requests as
/// HTTP/1.1 clients send them: several on one socket, sent back to back,
/// bodies by length or in chunks, `Expect: 100-continue`, HEAD without a
/// body, and `Connection: close` honoured.
#[test]
fn the_emulator_keeps_connections_alive() {
    use std::io::{BufReader, Read, Write};
    let emu = Emulator::start();
    let addr = emu.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let health = format!("GET /_slx/health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    conn.write_all(health.repeat(3).as_bytes()).unwrap();
    for _ in 0..3 {
        let (status, headers, body) = read_answer(&mut reader, false);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(!headers.contains(&("connection".into(), "close".into())), "{headers:?}");
        assert_eq!(body, r#"{"status": "ok"}"#);
    }

    conn.write_all(format!("HEAD /_slx/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let (status, headers, _) = read_answer(&mut reader, true);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(&("content-length".into(), "16".into())), "{headers:?}");

    let setting = r#"{"lambda_update_seconds": 0.25}"#;
    let (first, second) = setting.split_at(10);
    let chunked = format!(
        "POST /_slx/config HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n{:x};ext=1\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    conn.write_all(chunked.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut reader, false).2, setting, "the HEAD answer carried no body");

    let reset = r#"{"lambda_update_seconds": 0}"#;
    let expect = format!(
        "POST /_slx/config HTTP/1.1\r\nHost: {addr}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        reset.len()
    );
    conn.write_all(expect.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut reader, true).0, "HTTP/1.1 100 Continue");
    conn.write_all(reset.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut reader, false).2, r#"{"lambda_update_seconds": 0}"#);

    conn.write_all(format!("GET /_slx/health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let (_, headers, body) = read_answer(&mut reader, false);
    assert!(headers.contains(&("connection".into(), "close".into())), "{headers:?}");
    assert_eq!(body, r#"{"status": "ok"}"#);
    assert_eq!(reader.read(&mut [0; 1]).unwrap(), 0, "the connection is closed after the answer");
}

/// Version numbers only go up: deleting old versions frees no number.
#[tokio::test]
async fn version_numbers_are_never_reused() {
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    create(&lambda, &role, "f").await;
    let mut published = Vec::new();
    for memory in [256, 512, 1024] {
        lambda.update_function_configuration().function_name("f").memory_size(memory).send().await.unwrap();
        published
            .push(lambda.publish_version().function_name("f").send().await.unwrap().version().unwrap().to_string());
    }
    assert_eq!(published, ["1", "2", "3"]);
    for v in ["1", "3"] {
        lambda.delete_function().function_name("f").qualifier(v).send().await.unwrap();
    }
    lambda.update_function_configuration().function_name("f").memory_size(128).send().await.unwrap();
    let next = lambda.publish_version().function_name("f").send().await.unwrap();
    assert_eq!((next.version(), next.memory_size()), (Some("4"), Some(128)));
    let left = lambda.list_versions_by_function().function_name("f").send().await.unwrap();
    let left: Vec<_> = left.versions().iter().filter_map(|v| v.version()).collect();
    assert_eq!(left, ["$LATEST", "2", "4"]);
}

/// moto's backends are not safe to change from two threads at once: an SQS
/// CreateQueue with a redrive policy walks every queue to find its DLQ while
/// other creates add queues. The emulator runs writes one at a time and never
/// beside reads, so concurrent creates all succeed (SDK retries off: a 500
/// would surface here).
#[tokio::test]
async fn concurrent_calls_do_not_race_inside_the_emulator() {
    use aws_sdk_sqs::types::QueueAttributeName as Attr;
    let emu = Emulator::start();
    let config = aws_sdk_sqs::config::Builder::from(&emu.sdk().await)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    let sqs = aws_sdk_sqs::Client::from_conf(config);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let create_all = |names: Vec<(String, Option<String>)>| {
        let mut creates = tokio::task::JoinSet::new();
        for (name, redrive) in names {
            let (sqs, slots) = (sqs.clone(), slots.clone());
            creates.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                sqs.create_queue()
                    .queue_name(&name)
                    .set_attributes(redrive.map(|r| [(Attr::RedrivePolicy, r)].into()))
                    .send()
                    .await
                    .map_err(|e| format!("{name}: {:?}", e.into_service_error()))
            });
        }
        async move { creates.join_all().await.into_iter().filter_map(Result::err).collect::<Vec<_>>() }
    };
    // The DLQ comes after many queues, so finding it is a long walk.
    assert_eq!(create_all((0..1000).map(|i| (format!("a{i}"), None)).collect()).await, Vec::<String>::new());
    let dlq = sqs.create_queue().queue_name("dlq").send().await.unwrap();
    let attrs = sqs.get_queue_attributes().queue_url(dlq.queue_url().unwrap()).attribute_names(Attr::QueueArn);
    let arn = attrs.send().await.unwrap().attributes().unwrap()[&Attr::QueueArn].clone();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#);
    let mixed = (0..1000).map(|i| (format!("b{i}"), (i % 2 == 0).then(|| redrive.clone()))).collect();
    let failed = create_all(mixed).await;
    assert!(failed.is_empty(), "{} of 1000 creates failed, first: {:?}", failed.len(), failed.first());
}

/// The launcher's shortcuts for moto's per-request work leave answers as
/// moto gives them: REST paths seen before route to the function they name,
/// with the qualifier from the query; request IDs stay 52 random letters and
/// digits; a reset of moto's state still empties every account's backends.
#[tokio::test]
async fn per_request_shortcuts_leave_answers_unchanged() {
    use aws_sdk_sqs::operation::RequestId;
    let emu = Emulator::start();
    let (lambda, role) = setup(&emu).await;
    for name in ["f1", "f2"] {
        create(&lambda, &role, name).await;
        lambda.publish_version().function_name(name).send().await.unwrap();
    }
    lambda.update_function_configuration().function_name("f1").memory_size(512).send().await.unwrap();
    for _ in 0..2 {
        for (name, qualifier, memory) in [("f1", None, 512), ("f2", None, 128), ("f1", Some("1"), 128)] {
            let got = lambda.get_function().function_name(name).set_qualifier(qualifier.map(String::from));
            let config = got.send().await.unwrap().configuration.unwrap();
            assert_eq!(config.function_name(), Some(name));
            assert_eq!(config.version(), Some(qualifier.unwrap_or("$LATEST")));
            assert_eq!(config.memory_size(), Some(memory), "{name} {qualifier:?}");
        }
        let missing = lambda.get_function().function_name("f3").send().await.unwrap_err();
        assert_eq!(missing.into_service_error().code(), Some("ResourceNotFoundException"));
    }

    let sqs = aws_sdk_sqs::Client::new(&emu.sdk().await);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(sqs.list_queues().send().await.unwrap().request_id().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert!(id.len() == 52 && id.chars().all(|c| c.is_ascii_alphanumeric()), "{id:?}");
    }

    // Twice: the backends a reset empties must be found again by the next.
    for _ in 0..2 {
        sqs.create_queue().queue_name("until-reset").send().await.unwrap();
        assert!(sqs.get_queue_url().queue_name("until-reset").send().await.is_ok());
        emu.request("POST", "/moto-api/reset", "");
        let listed = sqs.list_queues().send().await.unwrap();
        assert!(listed.queue_urls().is_empty(), "{:?}", listed.queue_urls());
        assert!(lambda.list_functions().send().await.unwrap().functions().is_empty());
    }
}

/// A long poll waits inside moto for messages other calls send, so it runs
/// outside the order that keeps writes apart: a message sent while it waits
/// reaches it (were the poll a reader, the send would wait for the poll to
/// end empty-handed).
#[tokio::test]
async fn a_long_poll_receives_what_is_sent_while_it_waits() {
    let emu = Emulator::start();
    let sqs = aws_sdk_sqs::Client::new(&emu.sdk().await);
    let url = sqs.create_queue().queue_name("polled").send().await.unwrap().queue_url().unwrap().to_string();
    let poll = tokio::spawn({
        let (sqs, url) = (sqs.clone(), url.clone());
        async move { sqs.receive_message().queue_url(url).wait_time_seconds(10).send().await.unwrap() }
    });
    // Let the poll start waiting first.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sqs.send_message().queue_url(&url).message_body("while you wait").send().await.unwrap();
    let received = poll.await.unwrap();
    let bodies: Vec<_> = received.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["while you wait"]);
}

/// One DynamoDB call as raw JSON: the status line and the body as sent.
fn dynamodb(emu: &Emulator, operation: &str, body: &serde_json::Value) -> (String, String) {
    let target = format!("DynamoDB_20120810.{operation}");
    let auth =
        "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0";
    let headers =
        [("Content-Type", "application/x-amz-json-1.0"), ("X-Amz-Target", target.as_str()), ("Authorization", auth)];
    emu.raw("POST", "/", &headers, &body.to_string())
}

/// The launcher answers DynamoDB Query on a table's own key from the
/// partition alone, serializes structures of dicts directly and backs a
/// transaction up item by item (`spare_repeated_work`). Every answer must be byte for byte what moto's
/// own code gives: the same calls go to a plain emulator beside it, over
/// sort keys of two types, every key condition, both directions, limits,
/// pages (by count and by the 1 MB size limit), projections the shortcut
/// takes and those it leaves to moto, an index, a filter and errors; and
/// transactions that land, are cancelled or are refused, after which the table must read as it did before.
#[test]
fn dynamodb_answers_match_moto_without_the_shortcuts() {
    use serde_json::json;
    let (quick, plain) = (Emulator::start(), Emulator::start_plain());
    let both = |operation: &str, body: serde_json::Value| {
        let (a, b) = (dynamodb(&quick, operation, &body), dynamodb(&plain, operation, &body));
        assert_eq!(a, b, "{operation} {body}");
        a
    };
    // Tables hold their creation time: only the outcome must agree.
    let create = |body: serde_json::Value| {
        for emu in [&quick, &plain] {
            let (status, answer) = dynamodb(emu, "CreateTable", &body);
            assert!(status.contains(" 200 "), "{status} {answer}");
        }
    };
    let key = |name: &str, kind: &str| json!({"AttributeName": name, "AttributeType": kind});
    let schema =
        |range: &str| json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": range, "KeyType": "RANGE"}]);
    create(json!({"TableName": "named", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [key("pk", "S"), key("sk", "S"), key("g", "S")], "KeySchema": schema("sk"),
        "GlobalSecondaryIndexes": [{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}]}));
    create(json!({"TableName": "numbered", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [key("pk", "S"), key("n", "N")], "KeySchema": schema("n")}));

    // A fixed pseudo-random mix of attribute types, including documents that
    // are not strings (the shortcut hands those to moto's projection).
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for i in 0..60u64 {
        let pk = format!("p{}", i % 3);
        let sk = ["applied#", "deploy#", "lock", "é#"][next(4) as usize].to_string() + &format!("{:03}", next(1000));
        let mut item = json!({"pk": {"S": pk}, "sk": {"S": sk}, "g": {"S": format!("g{}", next(2))}});
        let doc = match next(6) {
            0 => json!({"N": "1.50"}),
            1 => json!({"M": {"x": {"S": "inner"}, "y": {"N": "1e2"}}}),
            2 => json!({"S": ""}),
            _ => json!({"S": "x".repeat(next(200) as usize)}),
        };
        if next(8) != 0 {
            item["doc"] = doc;
        }
        let number = ["1e2", "2.50", "-3", "10"][next(4) as usize];
        item["n"] = json!({"N": number});
        item["ss"] = json!({"SS": ["b", "a", "c"]});
        item["m"] = json!({"M": {"x": {"S": "inner"}, "y": {"N": "1e2"}}});
        item["l"] = json!({"L": [{"S": "first"}, {"BOOL": true}, {"NULL": true}]});
        item["bin"] = json!({"B": "AAEC"});
        both("PutItem", json!({"TableName": "named", "Item": item}));
        let numbered = json!({"pk": {"S": pk}, "n": {"N": format!("{}", next(2000) as i64 - 1000)},
            "doc": {"S": format!("number {i}")}});
        both("PutItem", json!({"TableName": "numbered", "Item": numbered}));
    }
    // Big items: a partition whose Query pages by size.
    for i in 0..4 {
        let item = json!({"pk": {"S": "big"}, "sk": {"S": format!("applied#{i}")}, "doc": {"S": "z".repeat(300_000)}});
        both("PutItem", json!({"TableName": "named", "Item": item}));
    }

    let conditions = [
        ("pk = :pk", json!({})),
        ("pk = :pk AND begins_with(sk, :v)", json!({":v": {"S": "applied#"}})),
        ("pk = :pk AND sk BETWEEN :v AND :w", json!({":v": {"S": "deploy#2"}, ":w": {"S": "lock5"}})),
        ("pk = :pk AND sk < :v", json!({":v": {"S": "deploy#5"}})),
        ("pk = :pk AND sk >= :v", json!({":v": {"S": "lock"}})),
        ("pk = :pk AND sk = :v", json!({":v": {"S": "lock"}})),
        ("pk = :pk AND n > :n", json!({":n": {"N": "-100"}})),
    ];
    let projections = [None, Some("doc"), Some("doc, sk"), Some("m.x"), Some("l[1], bin"), Some("#n, ss")];
    // Every page of an answer, following LastEvaluatedKey.
    let pages_of = |operation: &str, mut body: serde_json::Value| {
        let mut pages = Vec::new();
        loop {
            let (status, answer) = both(operation, body.clone());
            let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            let last = parsed.get("LastEvaluatedKey").cloned();
            pages.push((status, answer, parsed, body.clone()));
            let Some(last) = last else { return pages };
            body["ExclusiveStartKey"] = last;
        }
    };
    let mut queries = Vec::new();
    for (condition, values) in &conditions {
        let table = if condition.contains(" n ") { "numbered" } else { "named" };
        for (pk, forward, limit, projection) in ["p0", "p1", "big", "none"].into_iter().flat_map(|pk| {
            [true, false].into_iter().flat_map(move |forward| {
                [None, Some(7)].into_iter().flat_map(move |limit| projections.map(move |p| (pk, forward, limit, p)))
            })
        }) {
            // Big answers cost time; a few of them show paging by size.
            if pk == "big" && (limit.is_some() || projection.is_some_and(|p| p != "doc")) {
                continue;
            }
            let mut values = values.clone();
            values[":pk"] = json!({"S": pk});
            let mut body = json!({"TableName": table, "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values, "ScanIndexForward": forward});
            if let Some(limit) = limit {
                body["Limit"] = json!(limit);
            }
            if let Some(projection) = projection {
                body["ProjectionExpression"] = json!(projection);
                if projection.contains("#n") {
                    body["ExpressionAttributeNames"] = json!({"#n": "n"});
                }
            }
            queries.push((body, limit));
        }
    }
    let (mut items, mut pages, mut by_size) = (0, 0, 0);
    for (body, limit) in queries {
        let answers = pages_of("Query", body);
        for (status, answer, parsed, body) in &answers {
            assert!(status.contains(" 200 "), "{status} {answer} {body}");
            items += parsed["Items"].as_array().unwrap().len();
        }
        pages += answers.len() - 1;
        by_size += if limit.is_none() { answers.len() - 1 } else { 0 };
    }
    assert!(items > 1000 && pages > 100 && by_size > 0, "{items} items, {pages} pages, {by_size} by size");

    // Left to moto: an index, a filter; and errors.
    let values = json!({":g": {"S": "g1"}, ":pk": {"S": "p0"}});
    both(
        "Query",
        json!({"TableName": "named", "IndexName": "by-g", "KeyConditionExpression": "g = :g",
        "ExpressionAttributeValues": {":g": {"S": "g1"}}}),
    );
    both(
        "Query",
        json!({"TableName": "named", "KeyConditionExpression": "pk = :pk", "FilterExpression": "g = :g",
        "ExpressionAttributeValues": values}),
    );
    let (status, _) = both(
        "Query",
        json!({"TableName": "missing", "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "p0"}}}),
    );
    assert!(status.contains(" 400 "), "{status}");
    both("GetItem", json!({"TableName": "numbered", "Key": {"pk": {"S": "p0"}, "n": {"N": "1"}}}));

    // Transactions back up only the items they name: one that lands, and
    // cancelled ones whose update (made in place), delete and put must all
    // be undone.
    let lock = |sk: &str| json!({"pk": {"S": "p0"}, "sk": {"S": sk}, "doc": {"S": "held"}});
    let put = |item: serde_json::Value, condition: &str| json!({"Put": {"TableName": "named", "Item": item, "ConditionExpression": condition}});
    let update = json!({"Update": {"TableName": "named", "Key": {"pk": {"S": "p0"}, "sk": {"S": "lock"}},
        "UpdateExpression": "SET doc = :d, extra = :d", "ExpressionAttributeValues": {":d": {"S": "changed"}}}});
    let delete = json!({"Delete": {"TableName": "named", "Key": {"pk": {"S": "p1"}, "sk": {"S": "lock"}}}});
    let landed = json!({"TransactItems": [put(lock("lock"), "attribute_not_exists(sk)"), put(lock("history"), "attribute_not_exists(sk)")]});
    assert!(both("TransactWriteItems", landed.clone()).0.contains(" 200 "));
    both("PutItem", json!({"TableName": "named", "Item": {"pk": {"S": "p1"}, "sk": {"S": "lock"}}}));
    for (refused, why) in [
        (
            json!({"TransactItems": [update.clone(), delete.clone(), put(lock("new"), "attribute_not_exists(sk)"),
            put(lock("history"), "attribute_not_exists(sk)")]}),
            "TransactionCanceledException",
        ),
        (
            json!({"TransactItems": [delete, update, put(lock("lock"), "attribute_not_exists(sk)")]}),
            "multiple operations",
        ),
        (landed, "TransactionCanceledException"),
    ] {
        let (status, answer) = both("TransactWriteItems", refused);
        assert!(status.contains(" 400 ") && answer.contains(why), "{status} {answer}");
    }
    let kept = both("GetItem", json!({"TableName": "named", "Key": {"pk": {"S": "p0"}, "sk": {"S": "lock"}}})).1;
    assert!(kept.contains("held") && !kept.contains("changed"), "{kept}");
    assert_eq!(both("GetItem", json!({"TableName": "named", "Key": {"pk": {"S": "p0"}, "sk": {"S": "new"}}})).1, "{}");
    assert!(
        both("GetItem", json!({"TableName": "named", "Key": {"pk": {"S": "p1"}, "sk": {"S": "lock"}}}))
            .1
            .contains("lock")
    );
    pages_of("Scan", json!({"TableName": "named", "ProjectionExpression": "pk, sk, doc, extra"}));
}

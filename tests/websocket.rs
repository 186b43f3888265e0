//! The WebSocket chat example end to end, checked through the AWS API.

use crate::support::{Emulator, copy_example, edit, percent_decode};
use aws_sdk_apigatewayv2::Client as ApiGateway;
use serde_json::Value;
use std::collections::BTreeMap;

async fn api_id(api: &ApiGateway) -> String {
    let apis = api.get_apis().send().await.unwrap();
    apis.items().iter().find(|a| a.name() == Some("chat-dev-chat")).and_then(|a| a.api_id()).unwrap().to_string()
}

async fn stage_deployment(api: &ApiGateway, id: &str) -> String {
    api.get_stage().api_id(id).stage_name("live").send().await.unwrap().deployment_id().unwrap().to_string()
}

#[tokio::test]
async fn websocket_chat_lifecycle() {
    let emu = Emulator::start();
    let sdk = emu.sdk().await;
    let api = ApiGateway::new(&sdk);
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let iam = aws_sdk_iam::Client::new(&sdk);
    let dir = copy_example("websocket-chat");
    let spec = dir.path().join("slx.yaml");
    let file = spec.to_str().unwrap();

    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = api_id(&api).await;
    assert!(
        run.stdout.contains(&format!("websockets.chat.url: wss://{id}.execute-api.us-east-1.amazonaws.com/live\n")),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!(
            "websockets.chat.callback_url: https://{id}.execute-api.us-east-1.amazonaws.com/live\n"
        )),
        "{run:?}"
    );

    // API, routes, integrations.
    let a = api.get_api().api_id(&id).send().await.unwrap();
    assert_eq!(a.route_selection_expression(), Some("$request.body.action"));
    assert_eq!(a.tags().and_then(|t| t.get("slx:address")).map(String::as_str), Some("websocket.chat"));
    let integrations = api.get_integrations().api_id(&id).send().await.unwrap();
    assert_eq!(integrations.items().len(), 4, "one integration per target function");
    let uri_of = |iid: &str| {
        integrations
            .items()
            .iter()
            .find(|i| i.integration_id() == Some(iid))
            .and_then(|i| i.integration_uri())
            .unwrap()
            .to_string()
    };
    let routes = api.get_routes().api_id(&id).send().await.unwrap();
    let mut keys: Vec<(String, String)> = routes
        .items()
        .iter()
        .map(|r| {
            let target = r.target().unwrap().strip_prefix("integrations/").unwrap();
            let function = uri_of(target).split("function:").nth(1).unwrap().split('/').next().unwrap().to_string();
            (r.route_key().unwrap().to_string(), function)
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("$connect".into(), "chat-dev-connect".into()),
            ("$default".into(), "chat-dev-fallback".into()),
            ("$disconnect".into(), "chat-dev-disconnect".into()),
            ("sendMessage".into(), "chat-dev-send".into()),
        ]
    );
    // Stage with throttling and a deployment.
    let stage = api.get_stage().api_id(&id).stage_name("live").send().await.unwrap();
    assert_eq!(stage.default_route_settings().and_then(|s| s.throttling_burst_limit()), Some(200));
    let first_deployment = stage.deployment_id().expect("the stage serves a deployment").to_string();

    // Each route function may be invoked by this API and route only.
    let policy = lambda.get_policy().function_name("chat-dev-send").send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let st = &policy["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "apigateway.amazonaws.com");
    assert_eq!(
        st["Condition"]["ArnLike"]["AWS:SourceArn"],
        format!("arn:aws:execute-api:us-east-1:123456789012:{id}/*/sendMessage")
    );

    // Connection table, its wiring, and the management grant.
    let table = dynamodb.describe_table().table_name("chat-dev-chat-connections").send().await.unwrap();
    assert_eq!(table.table().unwrap().key_schema()[0].attribute_name(), "connectionId");
    let ttl = dynamodb.describe_time_to_live().table_name("chat-dev-chat-connections").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expiresAt"));
    let f = lambda.get_function().function_name("chat-dev-connect").send().await.unwrap();
    let env = f.configuration().unwrap().environment().unwrap().variables().unwrap();
    assert_eq!(env.get("CONNECTIONS_TABLE").map(String::as_str), Some("chat-dev-chat-connections"));
    let send = lambda.get_function().function_name("chat-dev-send").send().await.unwrap();
    let env = send.configuration().unwrap().environment().unwrap().variables().unwrap();
    assert_eq!(env.get("CALLBACK_URL"), Some(&format!("https://{id}.execute-api.us-east-1.amazonaws.com/live")));
    let doc = iam.get_role_policy().role_name("chat-dev-send").policy_name("slx").send().await.unwrap();
    let doc: Value = serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let manage = doc["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == "ManageConnections").unwrap();
    assert_eq!(
        manage["Resource"],
        serde_json::json!([format!("arn:aws:execute-api:us-east-1:123456789012:{id}/live/POST/@connections/*")])
    );

    // No change: no deployment, no write.
    emu.reset_calls();
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(emu.writes().is_empty(), "{:?}", emu.writes());
    assert_eq!(api.get_deployments().api_id(&id).send().await.unwrap().items().len(), 1);

    // A new route: route + integration + redeploy, and the stage moves on.
    edit(&spec, "      $default: fallback\n", "      $default: fallback\n      typing: typing\n");
    edit(
        &spec,
        "  fallback:\n    handler: handlers.fallback\n",
        "  fallback:\n    handler: handlers.fallback\n  typing:\n    handler: handlers.fallback\n",
    );
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("  + route.chat.typing "), "{run:?}");
    assert!(run.stdout.contains("  + integration.chat.typing "), "{run:?}");
    assert!(run.stdout.contains("  ~ deployment.chat "), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let second = stage_deployment(&api, &id).await;
    assert_ne!(second, first_deployment, "the stage points at a new deployment");

    // A route deleted by hand is reported, restored, and redeployed; a
    // deploy targeted at the route does all of it.
    let routes = api.get_routes().api_id(&id).send().await.unwrap();
    let send_route = routes.items().iter().find(|r| r.route_key() == Some("sendMessage")).unwrap();
    api.delete_route().api_id(&id).route_id(send_route.route_id().unwrap()).send().await.unwrap();
    let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("  + route.chat.sendMessage "), "{run:?}");
    assert!(run.stdout.contains("      redeploy: (none) → \"after changes to route.chat.sendMessage\"\n"), "{run:?}");
    let run = emu.slx(&["deploy", "-f", file, "--yes", "--target", "route.chat.sendMessage"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("  + route.chat.sendMessage ") && run.stdout.contains("  ~ deployment.chat "),
        "{run:?}"
    );
    assert_ne!(stage_deployment(&api, &id).await, second);
    emu.reset_calls();
    assert_eq!(emu.slx(&["plan", "-f", file, "--detailed-exitcode"]).code, 0);
    // A parent's listing serves all its children: the API is walked once,
    // and a function's async configs come in one call with its aliases'.
    let mut calls: BTreeMap<String, usize> = BTreeMap::new();
    for c in emu.calls() {
        *calls.entry(c.operation).or_default() += 1;
    }
    let functions = calls.get("GetFunction").copied().unwrap_or(0);
    assert!(functions >= 4, "{calls:?}");
    for (op, n) in [("GetApis", 1), ("GetIntegrations", 1), ("GetRoutes", 1), ("GetStages", 1), ("ListEventBuses", 1)] {
        assert_eq!(calls.get(op).copied().unwrap_or(0), n, "{op}: {calls:?}");
    }
    assert_eq!(calls.get("ListFunctionEventInvokeConfigs").copied().unwrap_or(0), functions, "{calls:?}");
    assert!(!calls.contains_key("GetFunctionEventInvokeConfig"), "{calls:?}");

    // Removing a route from the spec deletes it before the redeploy.
    edit(&spec, "      typing: typing\n", "");
    let run = emu.slx(&["deploy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    let order: Vec<&str> =
        run.stderr.lines().filter(|l| l.contains("route.chat.typing") || l.contains("deployment.chat")).collect();
    assert_eq!(order.len(), 2, "{run:?}");
    assert!(order[0].contains("route.chat.typing") && order[1].contains("deployment.chat"), "{order:?}");
    assert_eq!(emu.slx(&["plan", "-f", file, "--detailed-exitcode"]).code, 0);

    // outputs, as JSON.
    let out = emu.slx(&["outputs", "-f", file, "--format", "json"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["outputs"]["websockets"]["chat"]["url"],
        format!("wss://{id}.execute-api.us-east-1.amazonaws.com/live")
    );

    // Destroy leaves nothing owned.
    let run = emu.slx(&["destroy", "-f", file, "--yes"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(api.get_apis().send().await.unwrap().items().is_empty());
    assert!(
        dynamodb.list_tables().send().await.unwrap().table_names() == ["slx-state"],
        "only the deployment record table is left"
    );
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty());
}

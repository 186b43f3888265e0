//! API Gateway v2 WebSocket APIs: the API, integrations, routes (with the
//! function permission each needs), the stage and the deployment it serves.
//!
//! Integrations, routes and deployments cannot be tagged; they belong to
//! whoever owns their API, and carry its `slx:` tags in slx's view of them.
//! Listing reads everything under the stack's APIs at once, so reading one of
//! these children costs no further call.

use super::{Desired, Listed, aws_error, config_of, create_unique, created, deleted, lambda, tag_changes};
use crate::resource::{
    DeploymentConfig, IntegrationConfig, Kind, Live, Outputs, Owner, RouteConfig, StageAccessLog, StageConfig,
    StageThrottling, TAG_ADDRESS, Tags, WebSocketConfig,
};
use anyhow::{Context, Result};
use aws_sdk_apigatewayv2::Client;
use aws_sdk_apigatewayv2::types::{AccessLogSettings, Api, IntegrationType, ProtocolType, RouteSettings};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(super) fn update_calls(kind: Kind, changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    for f in changed {
        match (kind, f.as_str()) {
            (_, "tags") => calls.extend(["apigateway:TagResource", "apigateway:UntagResource"]),
            (Kind::WebSocket, _) => calls.push("apigateway:UpdateApi"),
            (Kind::Integration, _) => calls.push("apigateway:UpdateIntegration"),
            (Kind::Route, "permission") => calls.extend(["lambda:RemovePermission", "lambda:AddPermission"]),
            (Kind::Route, _) => calls.extend(["apigateway:GetIntegrations", "apigateway:UpdateRoute"]),
            (Kind::Stage, _) => calls.push("apigateway:UpdateStage"),
            (Kind::Deployment, _) => calls.push("apigateway:CreateDeployment"),
            _ => {}
        }
    }
    calls.dedup();
    calls
}

fn api_arn(region: &str, id: &str) -> String {
    format!("arn:aws:apigateway:{region}::/apis/{id}")
}

/// A per-call override for creates that [`create_unique`] retries itself.
fn no_retries() -> aws_sdk_apigatewayv2::config::Builder {
    aws_sdk_apigatewayv2::config::Builder::default().retry_config(aws_config::retry::RetryConfig::disabled())
}

/// WebSocket APIs whose names start with `prefix`.
async fn apis(c: &Client, prefix: &str) -> Result<Vec<Api>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c.get_apis().set_next_token(token).send().await.map_err(|e| aws_error("apigateway:GetApis", &e))?;
        out.extend(
            page.items()
                .iter()
                .filter(|a| {
                    a.name().is_some_and(|n| n.starts_with(prefix))
                        && a.protocol_type() == Some(&ProtocolType::Websocket)
                })
                .cloned(),
        );
        token = page.next_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

fn api_tags(a: &Api) -> Tags {
    a.tags().cloned().unwrap_or_default().into_iter().collect()
}

/// The ownership tags a child of `api` carries, under its own address.
fn inherited(api: &Api, address: String) -> Option<Tags> {
    let owner = Owner::from_tags(&api_tags(api))?;
    Some(Owner { address, ..owner }.tags())
}

/// `websocket.chat` → `chat`.
fn ws_name(api: &Api) -> Option<String> {
    api_tags(api).get(TAG_ADDRESS)?.strip_prefix("websocket.").map(String::from)
}

/// The function (and alias) an integration URI invokes (`.../functions/{arn}/invocations`).
fn uri_function(uri: &str) -> (String, Option<String>) {
    let arn = uri.split("/functions/").nth(1).and_then(|r| r.split("/invocations").next()).unwrap_or_default();
    let invoked = lambda::invoked(arn);
    match invoked.split_once(':') {
        Some((f, q)) => (f.to_string(), Some(q.to_string())),
        None => (invoked.to_string(), None),
    }
}

/// The listings of `kinds` (API Gateway kinds), walking the APIs once:
/// one GetIntegrations serves integrations and routes, one GetStages serves
/// stages and deployments.
pub(super) async fn list(
    c: &Client,
    lambda_client: &aws_sdk_lambda::Client,
    kinds: &[Kind],
    prefix: &str,
) -> Result<Vec<(Kind, Listed)>> {
    let mut out = Vec::new();
    let wants = |k: Kind| kinds.contains(&k);
    for api in apis(c, prefix).await? {
        let (id, name) = (api.api_id().unwrap_or_default().to_string(), api.name().unwrap_or_default().to_string());
        if wants(Kind::WebSocket) {
            let extra = json!({
                "route_selection": api.route_selection_expression(),
                "description": api.description().unwrap_or_default(),
                "tags": api_tags(&api),
                "endpoint": api.api_endpoint(),
            });
            out.push((Kind::WebSocket, Listed { name: name.clone(), id: id.clone(), extra }));
        }
        // Children are only read under APIs this stack owns.
        let Some(ws) = ws_name(&api) else { continue };
        if wants(Kind::Integration) || wants(Kind::Route) {
            let integrations = c
                .get_integrations()
                .api_id(&id)
                .send()
                .await
                .map_err(|e| aws_error("apigateway:GetIntegrations", &e))?;
            let uris: HashMap<String, String> = integrations
                .items()
                .iter()
                .filter_map(|i| Some((i.integration_id()?.to_string(), i.integration_uri()?.to_string())))
                .collect();
            if wants(Kind::Integration) {
                for (iid, uri) in &uris {
                    let (function, _) = uri_function(uri);
                    let short = function.strip_prefix(prefix).unwrap_or(&function);
                    let tags = inherited(&api, format!("integration.{ws}.{short}"));
                    let config = json!({ "api_id": id, "uri": uri, "tags": tags });
                    let listed = Listed { name: format!("{name}|{function}"), id: iid.clone(), extra: config };
                    out.push((Kind::Integration, listed));
                }
            }
            if wants(Kind::Route) {
                let routes =
                    c.get_routes().api_id(&id).send().await.map_err(|e| aws_error("apigateway:GetRoutes", &e))?;
                for r in routes.items() {
                    let (Some(rid), Some(key)) = (r.route_id(), r.route_key()) else { continue };
                    let uri = r
                        .target()
                        .and_then(|t| t.strip_prefix("integrations/"))
                        .and_then(|i| uris.get(i))
                        .cloned()
                        .unwrap_or_default();
                    let (function, qualifier) = uri_function(&uri);
                    let sid: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                    let sid = format!("slx-{name}-{sid}");
                    let permission = if function.is_empty() {
                        None
                    } else {
                        lambda::read_permission(lambda_client, &function, qualifier.as_deref(), &sid)
                            .await?
                            .map(|p| serde_json::to_value(p).unwrap())
                    };
                    let config = json!({
                        "api_id": id,
                        "route_key": key,
                        "integration_uri": uri,
                        "permission": permission,
                        "tags": inherited(&api, format!("route.{ws}.{key}")),
                    });
                    out.push((
                        Kind::Route,
                        Listed { name: format!("{name}|{key}"), id: rid.to_string(), extra: config },
                    ));
                }
            }
        }
        if wants(Kind::Stage) || wants(Kind::Deployment) {
            let stages = c.get_stages().api_id(&id).send().await.map_err(|e| aws_error("apigateway:GetStages", &e))?;
            for s in stages.items() {
                let Some(stage_name) = s.stage_name() else { continue };
                let listed_name = format!("{name}|{stage_name}");
                if wants(Kind::Stage) {
                    let settings = s.default_route_settings();
                    let throttling = settings.and_then(|r| {
                        Some(StageThrottling {
                            burst: r.throttling_burst_limit()? as u32,
                            rate: r.throttling_rate_limit()?,
                        })
                    });
                    let access_log = s.access_log_settings().and_then(|a| {
                        Some(StageAccessLog {
                            destination_arn: a.destination_arn()?.to_string(),
                            format: a.format()?.to_string(),
                        })
                    });
                    let config = StageConfig {
                        api_id: id.clone(),
                        stage_name: stage_name.to_string(),
                        throttling,
                        access_log,
                        tags: s.tags().cloned().unwrap_or_default().into_iter().collect(),
                    };
                    let extra = serde_json::to_value(config)?;
                    out.push((Kind::Stage, Listed { name: listed_name.clone(), id: id.clone(), extra }));
                }
                if let Some(did) = s.deployment_id().filter(|_| wants(Kind::Deployment)) {
                    let d = c
                        .get_deployment()
                        .api_id(&id)
                        .deployment_id(did)
                        .send()
                        .await
                        .map_err(|e| aws_error("apigateway:GetDeployment", &e))?;
                    let config = json!({
                        "api_id": id,
                        "stage_name": stage_name,
                        "fingerprint": d.description().unwrap_or_default(),
                        "tags": inherited(&api, format!("deployment.{ws}")),
                    });
                    out.push((Kind::Deployment, Listed { name: listed_name, id: did.to_string(), extra: config }));
                }
            }
        }
    }
    Ok(out)
}

/// Everything was read while listing.
pub(super) fn read(kind: Kind, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let mut config = listed.extra.clone();
    let mut outputs = Outputs::from([("id".to_string(), listed.id.clone())]);
    if kind == Kind::WebSocket {
        let endpoint = config.as_object_mut().and_then(|m| m.remove("endpoint"));
        if let Some(e) = endpoint.as_ref().and_then(Value::as_str) {
            outputs.insert("endpoint".to_string(), e.to_string());
        }
    }
    Ok(Some(Live { kind, name: name.to_string(), config, outputs, data: None, alias_async: Default::default() }))
}

fn route_settings(s: &StageConfig) -> Option<RouteSettings> {
    s.throttling
        .as_ref()
        .map(|t| RouteSettings::builder().throttling_burst_limit(t.burst as i32).throttling_rate_limit(t.rate).build())
}

fn access_log(s: &StageConfig) -> Option<AccessLogSettings> {
    s.access_log
        .as_ref()
        .map(|a| AccessLogSettings::builder().destination_arn(&a.destination_arn).format(&a.format).build())
}

/// The integration of `api_id` that invokes `uri`, if there is one.
async fn find_integration(c: &Client, api_id: &str, uri: &str) -> Result<Option<String>> {
    let integrations =
        c.get_integrations().api_id(api_id).send().await.map_err(|e| aws_error("apigateway:GetIntegrations", &e))?;
    Ok(integrations
        .items()
        .iter()
        .find(|i| i.integration_uri() == Some(uri))
        .and_then(|i| i.integration_id())
        .map(String::from))
}

async fn integration_id(c: &Client, api_id: &str, uri: &str) -> Result<String> {
    find_integration(c, api_id, uri).await?.with_context(|| format!("no integration for {uri} on API {api_id}"))
}

pub(super) async fn create(c: &Client, lambda_client: &aws_sdk_lambda::Client, r: Desired<'_>) -> Result<Outputs> {
    match r.kind {
        Kind::WebSocket => {
            let w: WebSocketConfig = config_of(&r)?;
            let outputs = |id: Option<&str>, endpoint: Option<&str>| {
                let mut outputs = Outputs::from([("id".to_string(), id.unwrap_or_default().to_string())]);
                if let Some(e) = endpoint {
                    outputs.insert("endpoint".to_string(), e.to_string());
                }
                outputs
            };
            let send = || async {
                c.create_api()
                    .name(r.name)
                    .protocol_type(ProtocolType::Websocket)
                    .route_selection_expression(&w.route_selection)
                    .description(&w.description)
                    .set_tags(Some(w.tags.clone().into_iter().collect()))
                    .customize()
                    .config_override(no_retries())
                    .send()
                    .await
                    .map(|o| outputs(o.api_id(), o.api_endpoint()))
            };
            // API names are not unique: a lost response must not leave two APIs.
            let find = || async {
                let tagged = |a: &Api| w.tags.iter().all(|(k, v)| a.tags().and_then(|t| t.get(k)) == Some(v));
                let ours = apis(c, r.name).await?.into_iter().find(|a| a.name() == Some(r.name) && tagged(a));
                Ok(ours.map(|a| outputs(a.api_id(), a.api_endpoint())))
            };
            create_unique("apigateway:CreateApi", send, find).await
        }
        Kind::Integration => {
            let i: IntegrationConfig = config_of(&r)?;
            let id = |id: Option<&str>| Outputs::from([("id".to_string(), id.unwrap_or_default().to_string())]);
            let send = || async {
                c.create_integration()
                    .api_id(&i.api_id)
                    .integration_type(IntegrationType::AwsProxy)
                    .integration_method("POST")
                    .integration_uri(&i.uri)
                    .customize()
                    .config_override(no_retries())
                    .send()
                    .await
                    .map(|o| id(o.integration_id()))
            };
            // A failed lookup is an error, not "absent": absent means send again.
            let find = || async { Ok(find_integration(c, &i.api_id, &i.uri).await?.map(|found| id(Some(&found)))) };
            create_unique("apigateway:CreateIntegration", send, find).await
        }
        Kind::Route => {
            let route: RouteConfig = config_of(&r)?;
            let target = integration_id(c, &route.api_id, &route.integration_uri).await?;
            let id = |id: Option<&str>| Outputs::from([("id".to_string(), id.unwrap_or_default().to_string())]);
            let send = || async {
                c.create_route()
                    .api_id(&route.api_id)
                    .route_key(&route.route_key)
                    .target(format!("integrations/{target}"))
                    .customize()
                    .config_override(no_retries())
                    .send()
                    .await
                    .map(|o| id(o.route_id()))
            };
            let find = || async {
                let routes = c
                    .get_routes()
                    .api_id(&route.api_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("apigateway:GetRoutes", &e))?;
                Ok(routes
                    .items()
                    .iter()
                    .find(|x| x.route_key() == Some(route.route_key.as_str()))
                    .map(|x| id(x.route_id())))
            };
            let outputs = create_unique("apigateway:CreateRoute", send, find).await?;
            lambda::add_permission(lambda_client, &route.permission).await?;
            Ok(outputs)
        }
        Kind::Stage => {
            let s: StageConfig = config_of(&r)?;
            let out = c
                .create_stage()
                .api_id(&s.api_id)
                .stage_name(&s.stage_name)
                .set_default_route_settings(route_settings(&s))
                .set_access_log_settings(access_log(&s))
                .set_tags(Some(s.tags.into_iter().collect()))
                .send()
                .await;
            created(out, "ConflictException", "apigateway:CreateStage")?;
            Ok(Outputs::new())
        }
        Kind::Deployment => deploy(c, r).await,
        other => anyhow::bail!("internal: {other} is not an API Gateway resource"),
    }
}

/// Creates a deployment and attaches it to the stage in one call.
async fn deploy(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let d: DeploymentConfig = config_of(&r)?;
    let out = c
        .create_deployment()
        .api_id(&d.api_id)
        .stage_name(&d.stage_name)
        .description(&d.fingerprint)
        .send()
        .await
        .map_err(|e| aws_error("apigateway:CreateDeployment", &e))?;
    Ok(Outputs::from([("id".to_string(), out.deployment_id().unwrap_or_default().to_string())]))
}

pub(super) async fn update(
    c: &Client,
    lambda_client: &aws_sdk_lambda::Client,
    region: &str,
    r: Desired<'_>,
    prior: &Live,
    changed: &[String],
) -> Result<Outputs> {
    let has = |f: &str| changed.iter().any(|c| c == f);
    let id = prior.outputs.get("id").cloned().unwrap_or_default();
    match r.kind {
        Kind::WebSocket => {
            let w: WebSocketConfig = config_of(&r)?;
            if has("route_selection") || has("description") {
                c.update_api()
                    .api_id(&id)
                    .route_selection_expression(&w.route_selection)
                    .description(&w.description)
                    .send()
                    .await
                    .map_err(|e| aws_error("apigateway:UpdateApi", &e))?;
            }
            if has("tags") {
                let arn = api_arn(region, &id);
                let (add, remove) = tag_changes(&w.tags, &prior.tags());
                if !add.is_empty() {
                    c.tag_resource()
                        .resource_arn(&arn)
                        .set_tags(Some(add.into_iter().collect()))
                        .send()
                        .await
                        .map_err(|e| aws_error("apigateway:TagResource", &e))?;
                }
                if !remove.is_empty() {
                    c.untag_resource()
                        .resource_arn(&arn)
                        .set_tag_keys(Some(remove))
                        .send()
                        .await
                        .map_err(|e| aws_error("apigateway:UntagResource", &e))?;
                }
            }
        }
        Kind::Integration => {
            let i: IntegrationConfig = config_of(&r)?;
            if has("uri") {
                c.update_integration()
                    .api_id(&i.api_id)
                    .integration_id(&id)
                    .integration_uri(&i.uri)
                    .send()
                    .await
                    .map_err(|e| aws_error("apigateway:UpdateIntegration", &e))?;
            }
        }
        Kind::Route => {
            let route: RouteConfig = config_of(&r)?;
            if has("integration_uri") {
                let target = integration_id(c, &route.api_id, &route.integration_uri).await?;
                c.update_route()
                    .api_id(&route.api_id)
                    .route_id(&id)
                    .target(format!("integrations/{target}"))
                    .send()
                    .await
                    .map_err(|e| aws_error("apigateway:UpdateRoute", &e))?;
            }
            if has("permission") {
                if let Some(old) = prior.config["permission"]["function"].as_str() {
                    let qualifier = prior.config["permission"]["qualifier"].as_str();
                    lambda::remove_permission(lambda_client, old, qualifier, &route.permission.statement_id).await?;
                }
                lambda::add_permission(lambda_client, &route.permission).await?;
            }
        }
        Kind::Stage => {
            let s: StageConfig = config_of(&r)?;
            c.update_stage()
                .api_id(&s.api_id)
                .stage_name(&s.stage_name)
                .default_route_settings(route_settings(&s).unwrap_or_else(|| RouteSettings::builder().build()))
                .set_access_log_settings(access_log(&s))
                .send()
                .await
                .map_err(|e| aws_error("apigateway:UpdateStage", &e))?;
        }
        Kind::Deployment => return deploy(c, r).await,
        other => anyhow::bail!("internal: {other} is not an API Gateway resource"),
    }
    Ok(prior.outputs.clone())
}

pub(super) async fn delete(c: &Client, lambda_client: &aws_sdk_lambda::Client, prior: &Live) -> Result<()> {
    const GONE: &str = "NotFoundException";
    let id = prior.outputs.get("id").cloned().unwrap_or_default();
    let api_id = prior.config["api_id"].as_str().unwrap_or_default().to_string();
    match prior.kind {
        Kind::WebSocket => deleted(c.delete_api().api_id(&id).send().await, GONE, "apigateway:DeleteApi"),
        Kind::Integration => deleted(
            c.delete_integration().api_id(&api_id).integration_id(&id).send().await,
            GONE,
            "apigateway:DeleteIntegration",
        ),
        Kind::Route => {
            let permission = &prior.config["permission"];
            if let (Some(f), Some(sid)) = (permission["function"].as_str(), permission["statement_id"].as_str()) {
                lambda::remove_permission(lambda_client, f, permission["qualifier"].as_str(), sid).await?;
            }
            deleted(c.delete_route().api_id(&api_id).route_id(&id).send().await, GONE, "apigateway:DeleteRoute")
        }
        Kind::Stage => {
            let stage = prior.config["stage_name"].as_str().unwrap_or_default();
            deleted(c.delete_stage().api_id(&api_id).stage_name(stage).send().await, GONE, "apigateway:DeleteStage")
        }
        // A deployment goes with its API; an old one is harmless once the stage moved on.
        _ => Ok(()),
    }
}

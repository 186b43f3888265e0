//! Lambda functions.
//!
//! Lambda accepts one mutation at a time: after each update slx waits until
//! `State` leaves `Pending` and `LastUpdateStatus` leaves `InProgress`, and a
//! `ResourceConflictException` (someone else's update) waits and retries.
//! A freshly created role takes seconds to become assumable, so
//! `CreateFunction` retries on "cannot be assumed".

use super::{Desired, Listed, aws_error, config_of, create_unique, created, deleted, error_code, tag_changes};
use crate::resource::{AsyncConfig, EventSourceConfig, FunctionConfig, Kind, Live, Outputs, Permission};
use anyhow::{Context, Result, bail};
use aws_config::retry::RetryConfig;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    AliasRoutingConfiguration, Architecture, DeadLetterConfig, DestinationConfig, Environment, EphemeralStorage,
    EventSourcePosition, Filter, FilterCriteria, FunctionCode, FunctionResponseType, LastUpdateStatus, OnFailure,
    Runtime, ScalingConfig, State,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Fields applied with UpdateFunctionConfiguration.
const CONFIG_FIELDS: &[&str] = &[
    "role",
    "handler",
    "runtime",
    "memory",
    "timeout",
    "ephemeral_storage",
    "description",
    "environment",
    "layers",
    "dead_letter_target",
];

/// How long to wait for a function to settle before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long to keep retrying a role that is not assumable yet.
const ROLE_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The [`FunctionConfig`] settings found in anything shaped like Lambda's
/// `FunctionConfiguration` (GetFunction's, PublishVersion's answer): the
/// SDK gives each operation its own type. Reserved concurrency, async
/// settings and tags are read elsewhere and left empty.
macro_rules! function_config {
    ($f:expr) => {{
        let f = $f;
        FunctionConfig {
            role: f.role().unwrap_or_default().to_string(),
            handler: f.handler().unwrap_or_default().to_string(),
            runtime: f.runtime().map(|r| r.as_str().to_string()).unwrap_or_default(),
            code_sha256: f.code_sha256().unwrap_or_default().to_string(),
            memory: f.memory_size().unwrap_or(128) as u32,
            timeout: f.timeout().unwrap_or(3) as u64,
            ephemeral_storage: f.ephemeral_storage().map_or(512, |e| e.size()) as u32,
            architecture: f.architectures().first().map_or("x86_64", |a| a.as_str()).to_string(),
            description: f.description().unwrap_or_default().to_string(),
            environment: f.environment().and_then(|e| e.variables()).cloned().unwrap_or_default().into_iter().collect(),
            layers: f.layers().iter().filter_map(|l| l.arn().map(String::from)).collect(),
            dead_letter_target: f
                .dead_letter_config()
                .and_then(|d| d.target_arn())
                .filter(|a| !a.is_empty())
                .map(String::from),
            reserved_concurrency: None,
            async_config: None,
            tags: crate::resource::Tags::new(),
        }
    }};
}

pub(super) fn update_calls(changed: &[String]) -> Vec<&'static str> {
    let has = |f: &str| changed.iter().any(|c| c == f);
    let mut calls = Vec::new();
    if has("code_sha256") || has("architecture") {
        calls.push("lambda:UpdateFunctionCode");
    }
    if CONFIG_FIELDS.iter().any(|f| has(f)) {
        calls.push("lambda:UpdateFunctionConfiguration");
    }
    if has("reserved_concurrency") {
        calls.push("lambda:PutFunctionConcurrency");
    }
    if has("async") {
        calls.push("lambda:PutFunctionEventInvokeConfig");
    }
    if has("tags") {
        calls.extend(["lambda:TagResource", "lambda:UntagResource"]);
    }
    calls
}

pub(super) async fn list(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = c
            .list_functions()
            .set_marker(marker)
            .max_items(50)
            .send()
            .await
            .map_err(|e| aws_error("lambda:ListFunctions", &e))?;
        for f in page.functions() {
            let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) else { continue };
            if name.starts_with(prefix) {
                out.push(Listed { name: name.to_string(), id: arn.to_string(), extra: serde_json::Value::Null });
            }
        }
        marker = page.next_marker().map(String::from);
        if marker.is_none() {
            return Ok(out);
        }
    }
}

pub(super) async fn read(c: &Client, name: &str) -> Result<Option<Live>> {
    let (out, async_configs) = tokio::join!(c.get_function().function_name(name).send(), read_async(c, name));
    let out = match out {
        Ok(o) => o,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("lambda:GetFunction", &e)),
    };
    let f = out.configuration().context("lambda:GetFunction returned no configuration")?;
    // None: deleted between the two calls, as absent as GetFunction would have said.
    let Some(mut async_configs) = async_configs? else { return Ok(None) };
    let config = FunctionConfig {
        reserved_concurrency: out.concurrency().and_then(|c| c.reserved_concurrent_executions()).map(|n| n as u32),
        async_config: async_configs.remove(""),
        tags: out.tags().cloned().unwrap_or_default().into_iter().collect(),
        ..function_config!(f)
    };
    Ok(Some(Live {
        kind: Kind::Function,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs: Outputs::from([("arn".to_string(), f.function_arn().unwrap_or_default().to_string())]),
        data: None,
        alias_async: async_configs,
    }))
}

/// The async invocation settings of a function and of each of its aliases,
/// by qualifier ("" for the function itself), in one call per 50: reading
/// them per alias would cost a call each. None when the function is gone.
async fn read_async(c: &Client, function: &str) -> Result<Option<BTreeMap<String, AsyncConfig>>> {
    let pages = c.list_function_event_invoke_configs().function_name(function).into_paginator().page_size(50);
    let configs: Vec<_> = match pages.items().send().collect::<Result<_, _>>().await {
        Ok(configs) => configs,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("lambda:ListFunctionEventInvokeConfigs", &e)),
    };
    let by_qualifier = configs.iter().map(|a| {
        // `arn:…:function:NAME`, `…:NAME:$LATEST` or `…:NAME:QUALIFIER`.
        let arn = a.function_arn().unwrap_or_default();
        let qualifier = arn.split(':').nth(7).filter(|q| *q != "$LATEST").unwrap_or_default();
        let config = AsyncConfig {
            max_retries: a.maximum_retry_attempts().unwrap_or(2) as u32,
            max_event_age: a.maximum_event_age_in_seconds().unwrap_or(21_600) as u64,
            on_failure: a
                .destination_config()
                .and_then(|d| d.on_failure())
                .and_then(|o| o.destination())
                .map(String::from),
        };
        (qualifier.to_string(), config)
    });
    Ok(Some(by_qualifier.collect()))
}

fn environment(f: &FunctionConfig) -> Environment {
    Environment::builder().set_variables(Some(f.environment.clone().into_iter().collect())).build()
}

fn ephemeral(f: &FunctionConfig) -> EphemeralStorage {
    EphemeralStorage::builder().size(f.ephemeral_storage as i32).build().expect("size set")
}

fn dead_letter(f: &FunctionConfig) -> DeadLetterConfig {
    DeadLetterConfig::builder().target_arn(f.dead_letter_target.clone().unwrap_or_default()).build()
}

pub(super) async fn create(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let f: FunctionConfig = config_of(&r)?;
    let package = r.package.context("no deployment package")?;
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    let out = loop {
        let result = c
            .create_function()
            .function_name(r.name)
            .role(&f.role)
            .runtime(Runtime::from(f.runtime.as_str()))
            .handler(&f.handler)
            .code(FunctionCode::builder().zip_file(Blob::new(package.bytes.clone())).build())
            .memory_size(f.memory as i32)
            .timeout(f.timeout as i32)
            .ephemeral_storage(ephemeral(&f))
            .architectures(Architecture::from(f.architecture.as_str()))
            .description(&f.description)
            .environment(environment(&f))
            .set_layers(Some(f.layers.clone()))
            .set_dead_letter_config(f.dead_letter_target.as_ref().map(|_| dead_letter(&f)))
            .set_tags(Some(f.tags.clone().into_iter().collect()))
            .send()
            .await;
        match result {
            Ok(o) => break o,
            Err(e) if role_not_ready(&e) && started.elapsed() < ROLE_PROPAGATION_TIMEOUT => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return created(Err(e), "ResourceConflictException", "lambda:CreateFunction"),
        }
    };
    let arn = out.function_arn().unwrap_or_default().to_string();
    if out.state() != Some(&State::Active) {
        wait_settled(c, r.name).await?;
    }
    if let Some(n) = f.reserved_concurrency {
        put_concurrency(c, r.name, n).await?;
    }
    if let Some(a) = &f.async_config {
        put_async(c, r.name, None, a).await?;
    }
    Ok(Outputs::from([("arn".to_string(), arn)]))
}

fn role_not_ready<E: aws_smithy_types::error::metadata::ProvideErrorMetadata, R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    e.code() == Some("InvalidParameterValueException") && e.message().is_some_and(|m| m.contains("cannot be assumed"))
}

pub(super) async fn update(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let f: FunctionConfig = config_of(&r)?;
    let has = |name: &str| changed.iter().any(|c| c == name);
    let name = r.name;
    if has("code_sha256") || has("architecture") {
        let package = r.package.context("no deployment package")?;
        let out = mutate(c, name, || {
            c.update_function_code()
                .function_name(name)
                .zip_file(Blob::new(package.bytes.clone()))
                .architectures(Architecture::from(f.architecture.as_str()))
                .send()
        })
        .await
        .map_err(|e| aws_error("lambda:UpdateFunctionCode", &e))?;
        if out.last_update_status() != Some(&LastUpdateStatus::Successful) {
            wait_settled(c, name).await?;
        }
    }
    if CONFIG_FIELDS.iter().any(|field| has(field)) {
        let out = mutate(c, name, || {
            c.update_function_configuration()
                .function_name(name)
                .role(&f.role)
                .handler(&f.handler)
                .runtime(Runtime::from(f.runtime.as_str()))
                .memory_size(f.memory as i32)
                .timeout(f.timeout as i32)
                .ephemeral_storage(ephemeral(&f))
                .description(&f.description)
                .environment(environment(&f))
                .set_layers(Some(f.layers.clone()))
                .dead_letter_config(dead_letter(&f))
                .send()
        })
        .await
        .map_err(|e| aws_error("lambda:UpdateFunctionConfiguration", &e))?;
        if out.last_update_status() != Some(&LastUpdateStatus::Successful) {
            wait_settled(c, name).await?;
        }
    }
    if has("reserved_concurrency") {
        match f.reserved_concurrency {
            Some(n) => put_concurrency(c, name, n).await?,
            None => {
                c.delete_function_concurrency()
                    .function_name(name)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda:DeleteFunctionConcurrency", &e))?;
            }
        }
    }
    if has("async") {
        match &f.async_config {
            Some(a) => put_async(c, name, None, a).await?,
            None => {
                c.delete_function_event_invoke_config()
                    .function_name(name)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda:DeleteFunctionEventInvokeConfig", &e))?;
            }
        }
    }
    if has("tags") {
        retag(c, prior, &f.tags).await?;
    }
    Ok(prior.outputs.clone())
}

/// Brings the tags of a function or mapping (its `arn` output) to `desired`.
async fn retag(c: &Client, prior: &Live, desired: &crate::resource::Tags) -> Result<()> {
    let arn = prior.outputs.get("arn").cloned().unwrap_or_default();
    let (add, remove) = tag_changes(desired, &prior.tags());
    if !add.is_empty() {
        let tags = Some(add.into_iter().collect());
        c.tag_resource().resource(&arn).set_tags(tags).send().await.map_err(|e| aws_error("lambda:TagResource", &e))?;
    }
    if !remove.is_empty() {
        let keys = Some(remove);
        c.untag_resource()
            .resource(&arn)
            .set_tag_keys(keys)
            .send()
            .await
            .map_err(|e| aws_error("lambda:UntagResource", &e))?;
    }
    Ok(())
}

/// Runs a mutation; on ResourceConflictException waits for the function to settle and retries.
async fn mutate<T, E, R, F, Fut>(
    c: &Client,
    name: &str,
    call: F,
) -> Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>>,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    let mut attempts = 0;
    loop {
        match call().await {
            Err(e) if error_code(&e) == Some("ResourceConflictException") && attempts < 10 => {
                attempts += 1;
                if wait_settled(c, name).await.is_err() {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

/// Polls until the function can take its next mutation.
async fn wait_settled(c: &Client, name: &str) -> Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let f = c
            .get_function_configuration()
            .function_name(name)
            .send()
            .await
            .map_err(|e| aws_error("lambda:GetFunctionConfiguration", &e))?;
        match (f.state(), f.last_update_status()) {
            (Some(State::Failed), _) => {
                bail!("function {name} failed: {}", f.state_reason().unwrap_or("no reason given"))
            }
            (_, Some(LastUpdateStatus::Failed)) => {
                bail!(
                    "update of function {name} failed: {}",
                    f.last_update_status_reason().unwrap_or("no reason given")
                )
            }
            (Some(State::Pending), _) | (_, Some(LastUpdateStatus::InProgress)) => {}
            _ => return Ok(()),
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            bail!("function {name} did not finish updating within {} s", SETTLE_TIMEOUT.as_secs());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(2));
    }
}

async fn put_concurrency(c: &Client, name: &str, n: u32) -> Result<()> {
    c.put_function_concurrency()
        .function_name(name)
        .reserved_concurrent_executions(n as i32)
        .send()
        .await
        .map_err(|e| aws_error("lambda:PutFunctionConcurrency", &e))?;
    Ok(())
}

async fn put_async(c: &Client, name: &str, qualifier: Option<&str>, a: &AsyncConfig) -> Result<()> {
    let destinations = a
        .on_failure
        .as_ref()
        .map(|d| DestinationConfig::builder().on_failure(OnFailure::builder().destination(d).build()).build());
    c.put_function_event_invoke_config()
        .function_name(name)
        .set_qualifier(qualifier.map(String::from))
        .maximum_retry_attempts(a.max_retries as i32)
        .maximum_event_age_in_seconds(a.max_event_age as i32)
        .set_destination_config(destinations)
        .send()
        .await
        .map_err(|e| aws_error("lambda:PutFunctionEventInvokeConfig", &e))?;
    Ok(())
}

pub(super) async fn delete(c: &Client, prior: &Live) -> Result<()> {
    deleted(
        c.delete_function().function_name(&prior.name).send().await,
        "ResourceNotFoundException",
        "lambda:DeleteFunction",
    )
}

/// Event source mappings are named `{function}|{source}` by slx, where the
/// source is `sqs:{queue}`, `dynamodb:{table}` or `kinesis:{stream arn}`:
/// a live mapping is identified by its function and source, so tuning changes
/// update it in place.
fn mapping_name(function_arn: &str, source_arn: &str) -> String {
    let function = invoked(function_arn).split(':').next().unwrap_or_default().to_string();
    let source = if source_arn.contains(":sqs:") {
        format!("sqs:{}", source_arn.rsplit(':').next().unwrap_or_default())
    } else if let Some(rest) = source_arn.split(":table/").nth(1) {
        format!("dynamodb:{}", rest.split('/').next().unwrap_or_default())
    } else {
        format!("kinesis:{source_arn}")
    };
    format!("{function}|{source}")
}

pub(super) fn mapping_update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    if changed.iter().any(|c| c != "tags") {
        calls.push("lambda:UpdateEventSourceMapping");
    }
    if changed.iter().any(|c| c == "tags") {
        calls.extend(["lambda:TagResource", "lambda:UntagResource"]);
    }
    calls
}

pub(super) async fn list_mappings(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = c
            .list_event_source_mappings()
            .set_marker(marker)
            .max_items(100)
            .send()
            .await
            .map_err(|e| aws_error("lambda:ListEventSourceMappings", &e))?;
        for m in page.event_source_mappings() {
            let (Some(function), Some(source), Some(uuid)) = (m.function_arn(), m.event_source_arn(), m.uuid()) else {
                continue;
            };
            let fn_name = invoked(function);
            if !fn_name.starts_with(prefix) {
                continue;
            }
            let sqs = source.contains(":sqs:");
            let stream = |v| if sqs { serde_json::Value::Null } else { v };
            let extra = serde_json::json!({
                "function": fn_name,
                "source_arn": source,
                "enabled": !matches!(m.state(), Some("Disabled" | "Disabling")),
                "batch_size": m.batch_size().unwrap_or(if sqs { 10 } else { 100 }),
                "batching_window": m.maximum_batching_window_in_seconds().unwrap_or(0),
                "starting_position": m.starting_position().map(|p| p.as_str().to_string()),
                "bisect_on_error": stream(serde_json::json!(m.bisect_batch_on_function_error().unwrap_or(false))),
                "max_retries": stream(serde_json::json!(m.maximum_retry_attempts().unwrap_or(-1))),
                "maximum_record_age": stream(serde_json::json!(m.maximum_record_age_in_seconds().unwrap_or(-1))),
                "parallelization_factor": stream(serde_json::json!(m.parallelization_factor().unwrap_or(1))),
                "tumbling_window": m.tumbling_window_in_seconds().filter(|w| *w > 0),
                "on_failure": m.destination_config().and_then(|d| d.on_failure()).and_then(|o| o.destination()),
                "report_batch_item_failures": m.function_response_types().iter().any(|t| t.as_str() == "ReportBatchItemFailures"),
                "max_concurrency": m.scaling_config().and_then(|s| s.maximum_concurrency()),
                "filters": m.filter_criteria().map(|f| f.filters().iter().filter_map(|x| x.pattern()).filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok()).collect::<Vec<_>>()).unwrap_or_default(),
                "arn": m.event_source_mapping_arn(),
            });
            out.push(Listed { name: mapping_name(function, source), id: uuid.to_string(), extra });
        }
        marker = page.next_marker().map(String::from);
        if marker.is_none() {
            return Ok(out);
        }
    }
}

/// A mapping found by listing; only its tags need another call.
pub(super) async fn read_mapping(c: &Client, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let mut config = listed.extra.clone();
    let arn = config["arn"].as_str().unwrap_or_default().to_string();
    let tags = c.list_tags().resource(&arn).send().await.map_err(|e| aws_error("lambda:ListTags", &e))?;
    config["tags"] =
        serde_json::to_value(tags.tags().cloned().unwrap_or_default().into_iter().collect::<crate::resource::Tags>())?;
    config.as_object_mut().map(|m| m.remove("arn"));
    let outputs = Outputs::from([("uuid".to_string(), listed.id.clone()), ("arn".to_string(), arn)]);
    Ok(Some(Live {
        kind: Kind::EventSource,
        name: name.to_string(),
        config,
        outputs,
        data: None,
        alias_async: BTreeMap::new(),
    }))
}

fn filters(m: &EventSourceConfig) -> Option<FilterCriteria> {
    let filters = m.filters.iter().map(|p| Filter::builder().pattern(p.to_string()).build()).collect();
    Some(FilterCriteria::builder().set_filters(Some(filters)).build())
}

fn response_types(m: &EventSourceConfig) -> Vec<FunctionResponseType> {
    if m.report_batch_item_failures { vec![FunctionResponseType::ReportBatchItemFailures] } else { Vec::new() }
}

fn destination(m: &EventSourceConfig) -> Option<DestinationConfig> {
    m.on_failure
        .as_ref()
        .map(|d| DestinationConfig::builder().on_failure(OnFailure::builder().destination(d).build()).build())
}

pub(super) async fn create_mapping(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let m: EventSourceConfig = config_of(&r)?;
    let send = || {
        c.create_event_source_mapping()
            .function_name(&m.function)
            .event_source_arn(&m.source_arn)
            .enabled(m.enabled)
            .batch_size(m.batch_size as i32)
            .maximum_batching_window_in_seconds(m.batching_window as i32)
            .set_starting_position(m.starting_position.as_deref().map(EventSourcePosition::from))
            .set_bisect_batch_on_function_error(m.bisect_on_error)
            .set_maximum_retry_attempts(m.max_retries.map(|n| n as i32))
            .set_maximum_record_age_in_seconds(m.maximum_record_age.map(|n| n as i32))
            .set_parallelization_factor(m.parallelization_factor.map(|n| n as i32))
            .set_tumbling_window_in_seconds(m.tumbling_window.map(|n| n as i32))
            .set_destination_config(destination(&m))
            .set_function_response_types(Some(response_types(&m)))
            .set_scaling_config(
                m.max_concurrency.map(|n| ScalingConfig::builder().maximum_concurrency(n as i32).build()),
            )
            .set_filter_criteria(if m.filters.is_empty() { None } else { filters(&m) })
            .set_tags(Some(m.tags.clone().into_iter().collect()))
            .customize()
            .config_override(aws_sdk_lambda::config::Builder::default().retry_config(RetryConfig::disabled()))
            .send()
    };
    let outputs = |uuid: Option<&str>, arn: Option<&str>| {
        Outputs::from([
            ("uuid".to_string(), uuid.unwrap_or_default().to_string()),
            ("arn".to_string(), arn.unwrap_or_default().to_string()),
        ])
    };
    // AWS keeps no client token for mappings, and stream sources accept
    // duplicates: after an attempt that may have landed, look for it first.
    let find = || async {
        let page = c
            .list_event_source_mappings()
            .function_name(&m.function)
            .event_source_arn(&m.source_arn)
            .send()
            .await
            .map_err(|e| aws_error("lambda:ListEventSourceMappings", &e))?;
        Ok(page.event_source_mappings().first().map(|f| outputs(f.uuid(), f.event_source_mapping_arn())))
    };
    create_unique(
        "lambda:CreateEventSourceMapping",
        || async { send().await.map(|o| outputs(o.uuid(), o.event_source_mapping_arn())) },
        find,
    )
    .await
}

pub(super) async fn update_mapping(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let m: EventSourceConfig = config_of(&r)?;
    let uuid = prior.outputs.get("uuid").context("mapping UUID unknown")?;
    if changed.iter().any(|c| c != "tags") {
        c.update_event_source_mapping()
            .uuid(uuid)
            .function_name(&m.function)
            .enabled(m.enabled)
            .batch_size(m.batch_size as i32)
            .maximum_batching_window_in_seconds(m.batching_window as i32)
            .set_bisect_batch_on_function_error(m.bisect_on_error)
            .set_maximum_retry_attempts(m.max_retries.map(|n| n as i32))
            .set_maximum_record_age_in_seconds(m.maximum_record_age.map(|n| n as i32))
            .set_parallelization_factor(m.parallelization_factor.map(|n| n as i32))
            .set_tumbling_window_in_seconds(
                m.tumbling_window.map(|n| n as i32).or(m.starting_position.as_ref().map(|_| 0)),
            )
            .destination_config(
                destination(&m)
                    .unwrap_or_else(|| DestinationConfig::builder().on_failure(OnFailure::builder().build()).build()),
            )
            .set_function_response_types(Some(response_types(&m)))
            .set_scaling_config(
                m.max_concurrency.map(|n| ScalingConfig::builder().maximum_concurrency(n as i32).build()),
            )
            .set_filter_criteria(filters(&m))
            .send()
            .await
            .map_err(|e| aws_error("lambda:UpdateEventSourceMapping", &e))?;
    }
    if changed.iter().any(|c| c == "tags") {
        retag(c, prior, &m.tags).await?;
    }
    Ok(prior.outputs.clone())
}

pub(super) async fn delete_mapping(c: &Client, prior: &Live) -> Result<()> {
    let uuid = prior.outputs.get("uuid").context("mapping UUID unknown")?;
    deleted(
        c.delete_event_source_mapping().uuid(uuid).send().await,
        "ResourceNotFoundException",
        "lambda:DeleteEventSourceMapping",
    )
}

/// The statement `sid` of the function's resource policy, if present.
pub(super) async fn read_permission(
    lambda: &Client,
    function: &str,
    qualifier: Option<&str>,
    sid: &str,
) -> Result<Option<Permission>> {
    let policy =
        match lambda.get_policy().function_name(function).set_qualifier(qualifier.map(String::from)).send().await {
            Ok(p) => p.policy().unwrap_or_default().to_string(),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(aws_error("lambda:GetPolicy", &e)),
        };
    let doc: serde_json::Value = serde_json::from_str(&policy).unwrap_or_default();
    let statement = doc["Statement"].as_array().and_then(|s| s.iter().find(|st| st["Sid"] == sid).cloned());
    Ok(statement.map(|st| Permission {
        function: function.to_string(),
        qualifier: qualifier.map(String::from),
        statement_id: sid.to_string(),
        principal: st["Principal"]["Service"].as_str().unwrap_or_default().to_string(),
        source_arn: st["Condition"]["ArnLike"]["AWS:SourceArn"].as_str().unwrap_or_default().to_string(),
    }))
}

pub(super) async fn add_permission(lambda: &Client, p: &Permission) -> Result<()> {
    let out = lambda
        .add_permission()
        .function_name(&p.function)
        .statement_id(&p.statement_id)
        .action("lambda:InvokeFunction")
        .principal(&p.principal)
        .source_arn(&p.source_arn)
        .set_qualifier(p.qualifier.clone())
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        // Statement ids are ours and deterministic: a retry whose first attempt
        // landed finds its own statement.
        Err(e) if error_code(&e) == Some("ResourceConflictException") && same_statement(lambda, p).await => Ok(()),
        Err(e) => Err(aws_error("lambda:AddPermission", &e)),
    }
}

/// Whether the function's policy already holds exactly this statement.
async fn same_statement(lambda: &Client, p: &Permission) -> bool {
    let found = read_permission(lambda, &p.function, p.qualifier.as_deref(), &p.statement_id).await;
    found.ok().flatten().is_some_and(|live| live.principal == p.principal && live.source_arn == p.source_arn)
}

pub(super) async fn remove_permission(
    lambda: &Client,
    function: &str,
    qualifier: Option<&str>,
    sid: &str,
) -> Result<()> {
    let call = lambda.remove_permission().function_name(function).statement_id(sid);
    deleted(
        call.set_qualifier(qualifier.map(String::from)).send().await,
        "ResourceNotFoundException",
        "lambda:RemovePermission",
    )
}

/// What a function ARN invokes: `name`, or `name:alias` for a qualified ARN.
pub(super) fn invoked(function_arn: &str) -> &str {
    function_arn.split(":function:").nth(1).unwrap_or(function_arn)
}

pub(super) fn alias_update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = vec!["lambda:PublishVersion", "lambda:UpdateAlias"];
    if changed.iter().any(|c| c == "provisioned_concurrency") {
        calls.push("lambda:PutProvisionedConcurrencyConfig");
    }
    if changed.iter().any(|c| c == "async") {
        calls.push("lambda:PutFunctionEventInvokeConfig");
    }
    calls.extend(["cloudwatch:DescribeAlarms", "lambda:ListVersionsByFunction", "lambda:DeleteFunction"]);
    calls
}

/// `function:alias` → (`function`, `alias`).
fn split_alias(name: &str) -> (&str, &str) {
    name.rsplit_once(':').unwrap_or((name, ""))
}

type Configuration = aws_sdk_lambda::types::FunctionConfiguration;

/// Every version's configuration, `$LATEST` included, in one call per 50.
async fn versions(c: &Client, function: &str) -> Result<Vec<Configuration>> {
    let pages = c.list_versions_by_function().function_name(function).into_paginator().page_size(50);
    pages.items().send().collect::<Result<_, _>>().await.map_err(|e| aws_error("lambda:ListVersionsByFunction", &e))
}

/// The release ([`FunctionConfig::release`]) of one version of `function`.
async fn release_of(c: &Client, function: &str, version: &str) -> Result<String> {
    let v = c
        .get_function_configuration()
        .function_name(function)
        .qualifier(version)
        .send()
        .await
        .map_err(|e| aws_error("lambda:GetFunctionConfiguration", &e))?;
    Ok(function_config!(&v).release())
}

/// Reads an alias. Which release its version serves comes from `recalled`
/// (what slx recorded when it last applied the alias) while the alias's
/// revision and version are still the recorded ones: a version never
/// changes, and any update of the alias changes its revision. Otherwise it
/// is read from the version. `current` is left for `live::read` to set from
/// the function's release.
pub(super) async fn read_alias(c: &Client, name: &str, recalled: Option<&Outputs>) -> Result<Option<Live>> {
    let (function, alias) = split_alias(name);
    let get_alias = || c.get_alias().function_name(function).name(alias).send();
    let get_pc = || c.get_provisioned_concurrency_config().function_name(function).qualifier(alias).send();
    // A recorded alias exists unless deleted by hand: ask for all of it at
    // once. One never recorded is likely absent: ask whether it is first.
    let (a, pc) = match recalled {
        Some(_) => {
            let (a, pc) = tokio::join!(get_alias(), get_pc());
            (a, Some(pc))
        }
        None => (get_alias().await, None),
    };
    let a = match a {
        Ok(a) => a,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("lambda:GetAlias", &e)),
    };
    let primary = a.function_version().unwrap_or_default().to_string();
    let revision = a.revision_id().unwrap_or_default().to_string();
    let still = |key: &str, value: &str| recalled.and_then(|o| o.get(key)).is_some_and(|v| v == value);
    let recalled =
        recalled.and_then(|o| o.get("release")).filter(|_| still("revision", &revision) && still("version", &primary));
    let (release, pc) = match (recalled, pc) {
        (Some(release), Some(pc)) => (release.clone(), pc),
        (_, pc) => {
            let (release, pc) = tokio::join!(release_of(c, function, &primary), async {
                match pc {
                    Some(pc) => pc,
                    None => get_pc().await,
                }
            });
            (release?, pc)
        }
    };
    let routing = a
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .filter(|m| !m.is_empty())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect::<std::collections::BTreeMap<_, _>>());
    let pc = match pc {
        Ok(p) => p.requested_provisioned_concurrent_executions().map(|n| n as u32),
        Err(e) if error_code(&e).is_some_and(|c| c.contains("NotFound")) => None,
        Err(e) => return Err(aws_error("lambda:GetProvisionedConcurrencyConfig", &e)),
    };
    // Aliases carry no tags: they belong to whoever owns their function. Tags
    // and async config come from the function's read (`live::read` hands
    // them over), which lists every qualifier's async config in one call.
    let config = crate::resource::AliasConfig {
        function: function.to_string(),
        name: alias.to_string(),
        description: a.description().unwrap_or_default().to_string(),
        current: false,
        routing,
        provisioned_concurrency: pc,
        async_config: None,
        tags: crate::resource::Tags::new(),
        rollout: None,
    };
    let outputs = Outputs::from([
        ("arn".to_string(), a.alias_arn().unwrap_or_default().to_string()),
        ("version".to_string(), primary),
        ("revision".to_string(), revision),
        ("release".to_string(), release),
    ]);
    Ok(Some(Live {
        kind: Kind::Alias,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs,
        data: None,
        alias_async: BTreeMap::new(),
    }))
}

/// Publishes `$LATEST`; Lambda returns the newest version when nothing changed.
/// Returns the version and its release.
async fn publish(c: &Client, function: &str) -> Result<(String, String)> {
    let out = mutate(c, function, || c.publish_version().function_name(function).send())
        .await
        .map_err(|e| aws_error("lambda:PublishVersion", &e))?;
    let version = out.version().map(String::from).context("lambda:PublishVersion returned no version")?;
    Ok((version, function_config!(&out).release()))
}

/// Points the alias at `version`, with `weight` of traffic on a second
/// version; returns the alias's new revision.
pub(super) async fn route_alias(
    c: &Client,
    function: &str,
    alias: &str,
    version: &str,
    second: Option<(&str, f64)>,
) -> Result<String> {
    let routing = AliasRoutingConfiguration::builder()
        .set_additional_version_weights(Some(second.map(|(v, w)| [(v.to_string(), w)].into()).unwrap_or_default()))
        .build();
    c.update_alias()
        .function_name(function)
        .name(alias)
        .function_version(version)
        .routing_config(routing)
        .send()
        .await
        .map_err(|e| aws_error("lambda:UpdateAlias", &e))
        .map(|out| out.revision_id().unwrap_or_default().to_string())
}

/// The first of `alarms` in ALARM, if any; all must exist.
async fn firing(cw: &aws_sdk_cloudwatch::Client, alarms: &[String]) -> Result<Option<String>> {
    let out = cw
        .describe_alarms()
        .set_alarm_names(Some(alarms.to_vec()))
        .send()
        .await
        .map_err(|e| aws_error("cloudwatch:DescribeAlarms", &e))?;
    let found: Vec<&aws_sdk_cloudwatch::types::MetricAlarm> = out.metric_alarms().iter().collect();
    if let Some(missing) = alarms.iter().find(|a| !found.iter().any(|f| f.alarm_name() == Some(a.as_str()))) {
        bail!(
            "alarm `{missing}` does not exist\nhint: create it in CloudWatch, or fix the name under alias.deployment.alarms"
        );
    }
    Ok(found
        .iter()
        .find(|a| a.state_value() == Some(&aws_sdk_cloudwatch::types::StateValue::Alarm))
        .and_then(|a| a.alarm_name())
        .map(String::from))
}

/// How a rollout step ended.
enum Held {
    Passed,
    Alarm(String),
    Interrupted,
}

/// Holds a step for `seconds`, watching the alarms and Ctrl-C.
async fn hold(cw: &aws_sdk_cloudwatch::Client, alarms: &[String], seconds: u64) -> Result<Held> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let poll = if seconds <= 60 { Duration::from_secs(1) } else { Duration::from_secs(10) };
    // The listener exists from its first poll on, so it is polled before
    // anything else: a Ctrl-C during the first alarm check is not missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let check = async { if alarms.is_empty() { Ok(None) } else { firing(cw, alarms).await } };
        tokio::select! {
            biased;
            _ = &mut ctrl_c => return Ok(Held::Interrupted),
            firing = check => {
                if let Some(a) = firing? {
                    return Ok(Held::Alarm(a));
                }
            }
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Held::Passed);
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(poll)) => {}
            _ = &mut ctrl_c => return Ok(Held::Interrupted),
        }
    }
}

async fn set_provisioned(c: &Client, function: &str, alias: &str, n: Option<u32>) -> Result<()> {
    match n {
        Some(n) => {
            c.put_provisioned_concurrency_config()
                .function_name(function)
                .qualifier(alias)
                .provisioned_concurrent_executions(n as i32)
                .send()
                .await
                .map_err(|e| aws_error("lambda:PutProvisionedConcurrencyConfig", &e))?;
        }
        None => {
            c.delete_provisioned_concurrency_config()
                .function_name(function)
                .qualifier(alias)
                .send()
                .await
                .map_err(|e| aws_error("lambda:DeleteProvisionedConcurrencyConfig", &e))?;
        }
    }
    Ok(())
}

/// Deletes old published versions no alias uses, keeping the newest `keep`.
/// Versions are numbered from 1, so up to version `keep` there is nothing to delete.
async fn prune_versions(c: &Client, function: &str, newest: &str, keep: u32) -> Result<()> {
    if newest.parse::<u64>().is_ok_and(|n| n <= u64::from(keep)) {
        return Ok(());
    }
    let (versions, aliases) = tokio::join!(versions(c, function), c.list_aliases().function_name(function).send());
    let published: Vec<u64> = versions?.iter().filter_map(|v| v.version()?.parse::<u64>().ok()).collect();
    let aliases = aliases.map_err(|e| aws_error("lambda:ListAliases", &e))?;
    let mut used = std::collections::BTreeSet::new();
    for a in aliases.aliases() {
        used.extend(a.function_version().and_then(|v| v.parse::<u64>().ok()));
        let weights = a.routing_config().and_then(|r| r.additional_version_weights());
        used.extend(weights.into_iter().flat_map(|m| m.keys()).filter_map(|v| v.parse::<u64>().ok()));
    }
    for v in crate::rollout::prune(&published, keep as usize, &used) {
        c.delete_function()
            .function_name(function)
            .qualifier(v.to_string())
            .send()
            .await
            .map_err(|e| aws_error("lambda:DeleteFunction", &e))?;
    }
    Ok(())
}

pub(super) async fn create_alias(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let a: crate::resource::AliasConfig = config_of(&r)?;
    let (version, release) = publish(c, &a.function).await?;
    let out = c
        .create_alias()
        .function_name(&a.function)
        .name(&a.name)
        .function_version(&version)
        .description(&a.description)
        .send()
        .await;
    let out = created(out, "ResourceConflictException", "lambda:CreateAlias")?;
    if a.provisioned_concurrency.is_some() {
        set_provisioned(c, &a.function, &a.name, a.provisioned_concurrency).await?;
    }
    if let Some(config) = &a.async_config {
        put_async(c, &a.function, Some(&a.name), config).await?;
    }
    if let Some(rollout) = &a.rollout {
        prune_versions(c, &a.function, &version, rollout.keep_versions).await?;
    }
    Ok(Outputs::from([
        ("arn".to_string(), out.alias_arn().unwrap_or_default().to_string()),
        ("version".to_string(), version),
        ("revision".to_string(), out.revision_id().unwrap_or_default().to_string()),
        ("release".to_string(), release),
    ]))
}

/// Releases `$LATEST` through the alias: publish, then shift traffic step by
/// step while watching the alarms; an alarm puts all traffic back on the
/// previous version and fails the step, naming the alarm.
pub(super) async fn update_alias(
    c: &Client,
    cw: &aws_sdk_cloudwatch::Client,
    r: Desired<'_>,
    prior: &Live,
    changed: &[String],
) -> Result<Outputs> {
    let a: crate::resource::AliasConfig = config_of(&r)?;
    let rollout = a.rollout.clone().unwrap_or(crate::resource::RolloutConfig {
        steps: crate::rollout::schedule(crate::rollout::Strategy::AllAtOnce, &[], 0),
        alarms: Vec::new(),
        keep_versions: 5,
        wait: true,
    });
    // What the plan read (under the lock since): the version traffic returns to on a rollback.
    let previous = match prior.outputs.get("version") {
        Some(v) => v.clone(),
        None => {
            let live = c.get_alias().function_name(&a.function).name(&a.name).send().await;
            live.map_err(|e| aws_error("lambda:GetAlias", &e))?.function_version().unwrap_or_default().to_string()
        }
    };
    let (new, release) = publish(c, &a.function).await?;
    if new != previous && !rollout.alarms.is_empty() {
        // Fails early when an alarm is missing, before any traffic moves.
        firing(cw, &rollout.alarms).await?;
    }
    if new != previous {
        for step in rollout.steps.iter().filter(|s| s.weight < 100) {
            let weight = f64::from(step.weight) / 100.0;
            let revision = route_alias(c, &a.function, &a.name, &previous, Some((&new, weight))).await?;
            eprintln!("{}: {}% on version {new} for {}s", r.address, step.weight, step.hold);
            if !rollout.wait {
                eprintln!(
                    "{}: left at {}% on version {new}; finish with `slx promote` or `slx rollback`",
                    r.address, step.weight
                );
                // The primary (and so its release, as read) is still `previous`.
                let mut outputs = prior.outputs.clone();
                outputs.insert("canary".to_string(), new);
                outputs.insert("revision".to_string(), revision);
                return Ok(outputs);
            }
            match hold(cw, &rollout.alarms, step.hold).await? {
                Held::Passed => {}
                Held::Alarm(alarm) => {
                    route_alias(c, &a.function, &a.name, &previous, None).await?;
                    bail!("rolled back {} to version {previous}: alarm `{alarm}` is in ALARM", r.address);
                }
                Held::Interrupted => {
                    route_alias(c, &a.function, &a.name, &previous, None).await?;
                    bail!("rolled back {} to version {previous}: interrupted", r.address);
                }
            }
        }
    }
    let mut revision = route_alias(c, &a.function, &a.name, &new, None).await?;
    if changed.iter().any(|f| f == "description") {
        let out = c
            .update_alias()
            .function_name(&a.function)
            .name(&a.name)
            .description(&a.description)
            .send()
            .await
            .map_err(|e| aws_error("lambda:UpdateAlias", &e))?;
        revision = out.revision_id().unwrap_or_default().to_string();
    }
    if changed.iter().any(|f| f == "provisioned_concurrency") {
        set_provisioned(c, &a.function, &a.name, a.provisioned_concurrency).await?;
    }
    if changed.iter().any(|f| f == "async") {
        match &a.async_config {
            Some(config) => put_async(c, &a.function, Some(&a.name), config).await?,
            None => {
                c.delete_function_event_invoke_config()
                    .function_name(&a.function)
                    .qualifier(&a.name)
                    .send()
                    .await
                    .map_err(|e| aws_error("lambda:DeleteFunctionEventInvokeConfig", &e))?;
            }
        }
    }
    prune_versions(c, &a.function, &new, rollout.keep_versions).await?;
    let mut outputs = prior.outputs.clone();
    outputs.extend([
        ("version".to_string(), new),
        ("revision".to_string(), revision),
        ("release".to_string(), release),
    ]);
    Ok(outputs)
}

pub(super) async fn delete_alias(c: &Client, prior: &Live) -> Result<()> {
    let (function, alias) = split_alias(&prior.name);
    deleted(
        c.delete_alias().function_name(function).name(alias).send().await,
        "ResourceNotFoundException",
        "lambda:DeleteAlias",
    )
}

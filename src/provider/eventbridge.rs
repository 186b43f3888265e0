//! EventBridge buses and rules. A rule owns its one target (the function) and
//! the function permission that lets exactly this rule invoke it, so the
//! permission is created and removed with the rule.

use super::{Desired, Listed, aws_error, config_of, created, lambda, tag_changes};
use crate::resource::{BusConfig, InputTransformer, Kind, Live, Outputs, RuleConfig, RuleTarget, Tags};
use anyhow::{Context, Result};
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::{
    DeadLetterConfig, InputTransformer as AwsTransformer, RetryPolicy, RuleState, Tag, Target,
};
use serde_json::{Value, json};

/// The id of the one target slx puts on each rule.
const TARGET_ID: &str = "slx";

pub(super) fn update_calls(kind: Kind, changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    for f in changed {
        match (kind, f.as_str()) {
            (Kind::Rule, "schedule" | "pattern" | "enabled") => calls.push("events:PutRule"),
            (Kind::Rule, "target") => calls.push("events:PutTargets"),
            (Kind::Rule, "permission") => calls.extend(["lambda:RemovePermission", "lambda:AddPermission"]),
            (_, "tags") => calls.extend(["events:TagResource", "events:UntagResource"]),
            _ => {}
        }
    }
    calls.dedup();
    calls
}

fn tags(t: &Tags) -> Vec<Tag> {
    t.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value")).collect()
}

async fn read_tags(c: &Client, arn: &str) -> Result<Tags> {
    let out = c
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("events:ListTagsForResource", &e))?;
    Ok(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
}

async fn retag(c: &Client, arn: &str, desired: &Tags, prior: &Live) -> Result<()> {
    let (add, remove) = tag_changes(desired, &prior.tags());
    if !add.is_empty() {
        c.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags(&add)))
            .send()
            .await
            .map_err(|e| aws_error("events:TagResource", &e))?;
    }
    if !remove.is_empty() {
        c.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(remove))
            .send()
            .await
            .map_err(|e| aws_error("events:UntagResource", &e))?;
    }
    Ok(())
}

pub(super) async fn list_buses(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_event_buses()
            .name_prefix(prefix)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("events:ListEventBuses", &e))?;
        for b in page.event_buses() {
            if let (Some(name), Some(arn)) = (b.name(), b.arn()) {
                out.push(Listed { name: name.to_string(), id: arn.to_string(), extra: Value::Null });
            }
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

pub(super) async fn read_bus(c: &Client, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let config = BusConfig { tags: read_tags(c, &listed.id).await? };
    let outputs = Outputs::from([("arn".to_string(), listed.id.clone()), ("name".to_string(), name.to_string())]);
    Ok(Some(Live {
        kind: Kind::Bus,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs,
        data: None,
        alias_async: Default::default(),
    }))
}

pub(super) async fn create_bus(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let b: BusConfig = config_of(&r)?;
    let out = c.create_event_bus().name(r.name).set_tags(Some(tags(&b.tags))).send().await;
    let out = created(out, "ResourceAlreadyExistsException", "events:CreateEventBus")?;
    Ok(Outputs::from([("arn".to_string(), out.event_bus_arn().unwrap_or_default().to_string())]))
}

pub(super) async fn update_bus(c: &Client, r: Desired<'_>, prior: &Live) -> Result<Outputs> {
    let b: BusConfig = config_of(&r)?;
    retag(c, prior.outputs.get("arn").map_or("", String::as_str), &b.tags, prior).await?;
    Ok(prior.outputs.clone())
}

pub(super) async fn delete_bus(c: &Client, prior: &Live) -> Result<()> {
    c.delete_event_bus().name(&prior.name).send().await.map_err(|e| aws_error("events:DeleteEventBus", &e))?;
    Ok(())
}

/// The stack's buses, and its rules on the default bus and on those buses:
/// one bus listing serves both kinds.
pub(super) async fn list_buses_and_rules(c: &Client, prefix: &str) -> Result<(Vec<Listed>, Vec<Listed>)> {
    let (rules, buses) = tokio::join!(rules_on(c, prefix, "default"), list_buses(c, prefix));
    let (mut rules, buses) = (rules?, buses?);
    for bus in buses.iter().filter(|b| b.name != "default") {
        rules.extend(rules_on(c, prefix, &bus.name).await?);
    }
    Ok((buses, rules))
}

async fn rules_on(c: &Client, prefix: &str, bus: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_rules()
            .name_prefix(prefix)
            .event_bus_name(bus)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("events:ListRules", &e))?;
        for r in page.rules() {
            let (Some(name), Some(arn)) = (r.name(), r.arn()) else { continue };
            let extra = json!({
                "bus": bus,
                "schedule": r.schedule_expression(),
                "pattern": r.event_pattern().and_then(|p| serde_json::from_str::<Value>(p).ok()),
                "enabled": r.state() == Some(&RuleState::Enabled),
            });
            out.push(Listed { name: name.to_string(), id: arn.to_string(), extra });
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

pub(super) async fn read_rule(
    c: &Client,
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    listed: Option<&Listed>,
) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let bus = listed.extra["bus"].as_str().unwrap_or("default").to_string();
    let (targets, tags) =
        tokio::join!(c.list_targets_by_rule().rule(name).event_bus_name(&bus).send(), read_tags(c, &listed.id));
    let targets = targets.map_err(|e| aws_error("events:ListTargetsByRule", &e))?;
    let target = targets.targets().iter().find(|t| t.id() == TARGET_ID);
    let target_config = target.map(|t| RuleTarget {
        arn: t.arn().to_string(),
        input: t.input().map(String::from),
        input_path: t.input_path().map(String::from),
        input_transformer: t.input_transformer().map(|x| InputTransformer {
            paths: x.input_paths_map().cloned().unwrap_or_default().into_iter().collect(),
            template: x.input_template().to_string(),
        }),
        max_retries: t.retry_policy().and_then(|r| r.maximum_retry_attempts()).map(|n| n as u32),
        max_event_age: t.retry_policy().and_then(|r| r.maximum_event_age_in_seconds()).map(|n| n as u64),
        dead_letter: t.dead_letter_config().and_then(|d| d.arn()).map(String::from),
    });
    let invoked = target.map(|t| lambda::invoked(t.arn()).to_string());
    let permission = match invoked.as_deref().map(|i| i.split_once(':').map_or((i, None), |(f, q)| (f, Some(q)))) {
        Some((function, qualifier)) => {
            lambda::read_permission(lambda, function, qualifier, &format!("slx-{name}")).await?
        }
        None => None,
    };
    let mut config = json!({
        "bus": bus,
        "schedule": listed.extra["schedule"],
        "pattern": listed.extra["pattern"],
        "enabled": listed.extra["enabled"],
        "target": target_config,
        "permission": permission,
        "tags": tags?,
    });
    if config["target"].is_null() {
        config["target"] = Value::Null;
    }
    let outputs = Outputs::from([("arn".to_string(), listed.id.clone())]);
    Ok(Some(Live {
        kind: Kind::Rule,
        name: name.to_string(),
        config,
        outputs,
        data: None,
        alias_async: Default::default(),
    }))
}

async fn put_rule(c: &Client, name: &str, r: &RuleConfig, with_tags: bool) -> Result<String> {
    let state = if r.enabled { RuleState::Enabled } else { RuleState::Disabled };
    let out = c
        .put_rule()
        .name(name)
        .event_bus_name(&r.bus)
        .set_schedule_expression(r.schedule.clone())
        .set_event_pattern(r.pattern.as_ref().map(Value::to_string))
        .state(state)
        .set_tags(with_tags.then(|| tags(&r.tags)))
        .send()
        .await
        .map_err(|e| aws_error("events:PutRule", &e))?;
    Ok(out.rule_arn().unwrap_or_default().to_string())
}

async fn put_target(c: &Client, name: &str, r: &RuleConfig) -> Result<()> {
    let t = &r.target;
    let retry = (t.max_retries.is_some() || t.max_event_age.is_some()).then(|| {
        RetryPolicy::builder()
            .set_maximum_retry_attempts(t.max_retries.map(|n| n as i32))
            .set_maximum_event_age_in_seconds(t.max_event_age.map(|n| n as i32))
            .build()
    });
    let transformer = t.input_transformer.as_ref().map(|x| {
        AwsTransformer::builder()
            .set_input_paths_map(Some(x.paths.clone().into_iter().collect()))
            .input_template(&x.template)
            .build()
            .expect("template set")
    });
    let target = Target::builder()
        .id(TARGET_ID)
        .arn(&t.arn)
        .set_input(t.input.clone())
        .set_input_path(t.input_path.clone())
        .set_input_transformer(transformer)
        .set_retry_policy(retry)
        .set_dead_letter_config(t.dead_letter.as_ref().map(|a| DeadLetterConfig::builder().arn(a).build()))
        .build()
        .expect("id and arn set");
    let out = c
        .put_targets()
        .rule(name)
        .event_bus_name(&r.bus)
        .targets(target)
        .send()
        .await
        .map_err(|e| aws_error("events:PutTargets", &e))?;
    if out.failed_entry_count() > 0 {
        let why = out.failed_entries().first().and_then(|f| f.error_message()).unwrap_or("unknown reason");
        anyhow::bail!("events:PutTargets failed for rule {name}: {why}");
    }
    Ok(())
}

pub(super) async fn create_rule(c: &Client, lambda: &aws_sdk_lambda::Client, r: Desired<'_>) -> Result<Outputs> {
    let rule: RuleConfig = config_of(&r)?;
    let arn = put_rule(c, r.name, &rule, true).await?;
    put_target(c, r.name, &rule).await?;
    lambda::add_permission(lambda, &rule.permission).await?;
    Ok(Outputs::from([("arn".to_string(), arn)]))
}

pub(super) async fn update_rule(
    c: &Client,
    lambda: &aws_sdk_lambda::Client,
    r: Desired<'_>,
    prior: &Live,
    changed: &[String],
) -> Result<Outputs> {
    let rule: RuleConfig = config_of(&r)?;
    let has = |f: &str| changed.iter().any(|c| c == f);
    if has("schedule") || has("pattern") || has("enabled") {
        put_rule(c, r.name, &rule, false).await?;
    }
    if has("target") {
        put_target(c, r.name, &rule).await?;
    }
    if has("permission") {
        if let Some(old) = prior.config["permission"]["function"].as_str() {
            let qualifier = prior.config["permission"]["qualifier"].as_str();
            lambda::remove_permission(lambda, old, qualifier, &rule.permission.statement_id).await?;
        }
        lambda::add_permission(lambda, &rule.permission).await?;
    }
    if has("tags") {
        retag(c, prior.outputs.get("arn").map_or("", String::as_str), &rule.tags, prior).await?;
    }
    Ok(prior.outputs.clone())
}

/// Removes the permission and the target first: a rule with targets cannot be deleted.
pub(super) async fn delete_rule(c: &Client, lambda: &aws_sdk_lambda::Client, prior: &Live) -> Result<()> {
    let bus = prior.config["bus"].as_str().unwrap_or("default");
    if let Some(function) = prior.config["permission"]["function"].as_str() {
        let qualifier = prior.config["permission"]["qualifier"].as_str();
        lambda::remove_permission(lambda, function, qualifier, &format!("slx-{}", prior.name)).await?;
    }
    c.remove_targets()
        .rule(&prior.name)
        .event_bus_name(bus)
        .ids(TARGET_ID)
        .send()
        .await
        .map_err(|e| aws_error("events:RemoveTargets", &e))?;
    c.delete_rule()
        .name(&prior.name)
        .event_bus_name(bus)
        .send()
        .await
        .map_err(|e| aws_error("events:DeleteRule", &e))
        .context("deleting the rule")?;
    Ok(())
}

//! CloudWatch Logs groups, created before their function so Lambda never
//! creates an untagged, never-expiring one on first invocation.

use super::{Desired, Listed, aws_error, config_of, created, deleted, error_code, tag_changes};
use crate::resource::{Kind, Live, LogGroupConfig, Outputs};
use anyhow::Result;
use aws_sdk_cloudwatchlogs::Client;
use serde_json::json;

pub(super) fn update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    for f in changed {
        match f.as_str() {
            "retention_days" => calls.push("logs:PutRetentionPolicy"),
            "tags" => calls.extend(["logs:TagResource", "logs:UntagResource"]),
            _ => {}
        }
    }
    calls
}

/// Log groups of functions named `{prefix}*`; `prefix` is a function-name prefix.
pub(super) async fn list(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token = None;
    let group_prefix = format!("/aws/lambda/{prefix}");
    loop {
        let page = c
            .describe_log_groups()
            .log_group_name_prefix(&group_prefix)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("logs:DescribeLogGroups", &e))?;
        for g in page.log_groups() {
            let Some(name) = g.log_group_name() else { continue };
            let arn = g
                .log_group_arn()
                .map(String::from)
                .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()))
                .unwrap_or_default();
            out.push(Listed {
                name: name.to_string(),
                id: arn,
                extra: json!({ "retention_days": g.retention_in_days() }),
            });
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Only groups found by listing exist; retention comes from the listing.
pub(super) async fn read(c: &Client, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let tags = match c.list_tags_for_resource().resource_arn(&listed.id).send().await {
        Ok(o) => o.tags().cloned().unwrap_or_default(),
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("logs:ListTagsForResource", &e)),
    };
    let config = LogGroupConfig {
        retention_days: listed.extra["retention_days"].as_u64().map(|d| d as u32),
        tags: tags.into_iter().collect(),
    };
    Ok(Some(Live {
        kind: Kind::LogGroup,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs: Outputs::from([("arn".to_string(), listed.id.clone())]),
        data: None,
        alias_async: Default::default(),
    }))
}

async fn set_retention(c: &Client, name: &str, days: Option<u32>) -> Result<()> {
    match days {
        Some(d) => {
            c.put_retention_policy()
                .log_group_name(name)
                .retention_in_days(d as i32)
                .send()
                .await
                .map_err(|e| aws_error("logs:PutRetentionPolicy", &e))?;
        }
        None => {
            c.delete_retention_policy()
                .log_group_name(name)
                .send()
                .await
                .map_err(|e| aws_error("logs:DeleteRetentionPolicy", &e))?;
        }
    }
    Ok(())
}

pub(super) async fn create(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let g: LogGroupConfig = config_of(&r)?;
    let out =
        c.create_log_group().log_group_name(r.name).set_tags(Some(g.tags.clone().into_iter().collect())).send().await;
    created(out, "ResourceAlreadyExistsException", "logs:CreateLogGroup")?;
    if g.retention_days.is_some() {
        set_retention(c, r.name, g.retention_days).await?;
    }
    Ok(Outputs::new())
}

pub(super) async fn update(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let g: LogGroupConfig = config_of(&r)?;
    let arn = prior.outputs.get("arn").cloned().unwrap_or_default();
    for f in changed {
        match f.as_str() {
            "retention_days" => set_retention(c, r.name, g.retention_days).await?,
            "tags" => {
                let (add, remove) = tag_changes(&g.tags, &prior.tags());
                if !add.is_empty() {
                    c.tag_resource()
                        .resource_arn(&arn)
                        .set_tags(Some(add.into_iter().collect()))
                        .send()
                        .await
                        .map_err(|e| aws_error("logs:TagResource", &e))?;
                }
                if !remove.is_empty() {
                    c.untag_resource()
                        .resource_arn(&arn)
                        .set_tag_keys(Some(remove))
                        .send()
                        .await
                        .map_err(|e| aws_error("logs:UntagResource", &e))?;
                }
            }
            _ => {}
        }
    }
    Ok(prior.outputs.clone())
}

pub(super) async fn delete(c: &Client, prior: &Live) -> Result<()> {
    deleted(
        c.delete_log_group().log_group_name(&prior.name).send().await,
        "ResourceNotFoundException",
        "logs:DeleteLogGroup",
    )
}

//! DynamoDB tables: on-demand, keys, TTL, stream, point-in-time recovery, deletion protection.

use super::{Desired, Listed, aws_error, config_of, deleted, error_code, tag_changes};
use crate::resource::{KeyAttr, Kind, Live, Outputs, TableConfig};
use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, ScalarAttributeType,
    Select, StreamSpecification, StreamViewType, TableStatus, Tag, TimeToLiveSpecification,
};
use std::time::{Duration, Instant};

pub(super) fn update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    for f in changed {
        match f.as_str() {
            "stream" | "deletion_protection" => calls.push("dynamodb:UpdateTable"),
            "ttl" => calls.push("dynamodb:UpdateTimeToLive"),
            "point_in_time_recovery" => calls.push("dynamodb:UpdateContinuousBackups"),
            "tags" => calls.extend(["dynamodb:TagResource", "dynamodb:UntagResource"]),
            _ => {}
        }
    }
    calls.dedup();
    calls
}

pub(super) async fn list(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = c
            .list_tables()
            .set_exclusive_start_table_name(start)
            .send()
            .await
            .map_err(|e| aws_error("dynamodb:ListTables", &e))?;
        for name in page.table_names().iter().filter(|n| n.starts_with(prefix)) {
            out.push(Listed { name: name.clone(), id: name.clone(), extra: serde_json::Value::Null });
        }
        start = page.last_evaluated_table_name().map(String::from);
        if start.is_none() {
            return Ok(out);
        }
    }
}

/// Whether the table holds at least one item; a Scan of one item is exact, unlike ItemCount.
async fn has_items(c: &Client, name: &str) -> Result<bool> {
    let out = c
        .scan()
        .table_name(name)
        .limit(1)
        .select(Select::Count)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:Scan", &e))?;
    Ok(out.count() > 0)
}

pub(super) async fn read(c: &Client, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    if listed.is_none() {
        return Ok(None);
    }
    let table = match c.describe_table().table_name(name).send().await {
        Ok(o) => o.table().cloned().context("dynamodb:DescribeTable returned no table")?,
        Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
        Err(e) => return Err(aws_error("dynamodb:DescribeTable", &e)),
    };
    let arn = table.table_arn().unwrap_or_default().to_string();
    let ttl = c
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:DescribeTimeToLive", &e))?;
    let backups = c
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:DescribeContinuousBackups", &e))?;
    let tags = c
        .list_tags_of_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:ListTagsOfResource", &e))?;
    let attr_type = |attr: &str| {
        table
            .attribute_definitions()
            .iter()
            .find(|a| a.attribute_name() == attr)
            .map(|a| a.attribute_type().as_str().to_string())
            .unwrap_or_default()
    };
    let key = |kt: KeyType| {
        table
            .key_schema()
            .iter()
            .find(|k| *k.key_type() == kt)
            .map(|k| KeyAttr { name: k.attribute_name().to_string(), key_type: attr_type(k.attribute_name()) })
    };
    let ttl_attr = ttl
        .time_to_live_description()
        .filter(|d| d.time_to_live_status().is_some_and(|s| s.as_str() == "ENABLED" || s.as_str() == "ENABLING"))
        .and_then(|d| d.attribute_name())
        .map(String::from);
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| s.as_str() == "ENABLED");
    let stream = table
        .stream_specification()
        .filter(|s| s.stream_enabled())
        .and_then(|s| s.stream_view_type())
        .map(|v| v.as_str().to_string());
    let config = TableConfig {
        partition_key: key(KeyType::Hash).context("table has no partition key")?,
        sort_key: key(KeyType::Range),
        ttl: ttl_attr,
        stream,
        point_in_time_recovery: pitr,
        deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
        tags: tags.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect(),
    };
    let mut outputs = Outputs::from([("name".to_string(), name.to_string()), ("arn".to_string(), arn)]);
    if let Some(s) = table.latest_stream_arn().filter(|_| config.stream.is_some()) {
        outputs.insert("stream_arn".to_string(), s.to_string());
    }
    let data = has_items(c, name).await?.then(|| "holds items".to_string());
    Ok(Some(Live { kind: Kind::Table, name: name.to_string(), config: serde_json::to_value(config)?, outputs, data }))
}

fn stream_spec(view: Option<&str>) -> StreamSpecification {
    match view {
        Some(v) => {
            StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::from(v)).build()
        }
        None => StreamSpecification::builder().stream_enabled(false).build(),
    }
    .expect("stream_enabled set")
}

pub(super) async fn create(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let t: TableConfig = config_of(&r)?;
    let mut keys = vec![(&t.partition_key, KeyType::Hash)];
    if let Some(sk) = &t.sort_key {
        keys.push((sk, KeyType::Range));
    }
    let mut req = c
        .create_table()
        .table_name(r.name)
        .billing_mode(BillingMode::PayPerRequest)
        .deletion_protection_enabled(t.deletion_protection)
        .set_tags(Some(
            t.tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value")).collect(),
        ));
    for (k, kt) in keys {
        req = req
            .key_schema(KeySchemaElement::builder().attribute_name(&k.name).key_type(kt).build().expect("fields set"))
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&k.name)
                    .attribute_type(ScalarAttributeType::from(k.key_type.as_str()))
                    .build()
                    .expect("fields set"),
            );
    }
    if t.stream.is_some() {
        req = req.stream_specification(stream_spec(t.stream.as_deref()));
    }
    req.send().await.map_err(|e| aws_error("dynamodb:CreateTable", &e))?;
    wait_active(c, r.name).await?;
    if let Some(attr) = &t.ttl {
        set_ttl(c, r.name, attr, true).await?;
    }
    if t.point_in_time_recovery {
        set_pitr(c, r.name, true).await?;
    }
    outputs(c, r.name).await
}

async fn outputs(c: &Client, name: &str) -> Result<Outputs> {
    let t = c.describe_table().table_name(name).send().await.map_err(|e| aws_error("dynamodb:DescribeTable", &e))?;
    let t = t.table().context("no table")?;
    let mut out = Outputs::from([
        ("name".to_string(), name.to_string()),
        ("arn".to_string(), t.table_arn().unwrap_or_default().to_string()),
    ]);
    if let Some(s) = t.latest_stream_arn().filter(|_| t.stream_specification().is_some_and(|s| s.stream_enabled())) {
        out.insert("stream_arn".to_string(), s.to_string());
    }
    Ok(out)
}

/// Tables are not usable (nor updatable) until ACTIVE.
async fn wait_active(c: &Client, name: &str) -> Result<()> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let t =
            c.describe_table().table_name(name).send().await.map_err(|e| aws_error("dynamodb:DescribeTable", &e))?;
        if t.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("table {name} did not become ACTIVE within 600 s");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 3 / 2).min(Duration::from_secs(3));
    }
}

async fn set_ttl(c: &Client, name: &str, attr: &str, enabled: bool) -> Result<()> {
    let spec = TimeToLiveSpecification::builder().attribute_name(attr).enabled(enabled).build().expect("fields set");
    c.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:UpdateTimeToLive", &e))?;
    Ok(())
}

async fn set_pitr(c: &Client, name: &str, enabled: bool) -> Result<()> {
    let spec =
        PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(enabled).build().expect("set");
    c.update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(spec)
        .send()
        .await
        .map_err(|e| aws_error("dynamodb:UpdateContinuousBackups", &e))?;
    Ok(())
}

pub(super) async fn update(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let t: TableConfig = config_of(&r)?;
    let before: TableConfig = serde_json::from_value(prior.config.clone())?;
    let has = |f: &str| changed.iter().any(|c| c == f);
    if has("stream") {
        // A stream's view type cannot change in place: turn it off first.
        if before.stream.is_some() {
            c.update_table()
                .table_name(r.name)
                .stream_specification(stream_spec(None))
                .send()
                .await
                .map_err(|e| aws_error("dynamodb:UpdateTable", &e))?;
            wait_active(c, r.name).await?;
        }
        if t.stream.is_some() {
            c.update_table()
                .table_name(r.name)
                .stream_specification(stream_spec(t.stream.as_deref()))
                .send()
                .await
                .map_err(|e| aws_error("dynamodb:UpdateTable", &e))?;
            wait_active(c, r.name).await?;
        }
    }
    if has("deletion_protection") {
        c.update_table()
            .table_name(r.name)
            .deletion_protection_enabled(t.deletion_protection)
            .send()
            .await
            .map_err(|e| aws_error("dynamodb:UpdateTable", &e))?;
    }
    if has("ttl") {
        match (&before.ttl, &t.ttl) {
            (Some(old), None) => set_ttl(c, r.name, old, false).await?,
            (_, Some(new)) => set_ttl(c, r.name, new, true).await?,
            (None, None) => {}
        }
    }
    if has("point_in_time_recovery") {
        set_pitr(c, r.name, t.point_in_time_recovery).await?;
    }
    if has("tags") {
        let arn = prior.outputs.get("arn").cloned().unwrap_or_default();
        let (add, remove) = tag_changes(&t.tags, &prior.tags());
        if !add.is_empty() {
            let tags = add.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("set")).collect();
            c.tag_resource()
                .resource_arn(&arn)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| aws_error("dynamodb:TagResource", &e))?;
        }
        if !remove.is_empty() {
            c.untag_resource()
                .resource_arn(&arn)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(|e| aws_error("dynamodb:UntagResource", &e))?;
        }
    }
    outputs(c, r.name).await
}

/// Refuses to delete a table with items unless forced, and explains deletion protection.
pub(super) async fn delete(c: &Client, prior: &Live, force: bool) -> Result<()> {
    let name = &prior.name;
    if prior.config["deletion_protection"] == serde_json::Value::Bool(true) {
        bail!(
            "refusing to delete table {name}: it has deletion protection\nhint: set `deletion_protection: false` on the table and deploy, then remove it"
        );
    }
    if !force && has_items(c, name).await? {
        bail!(
            "refusing to delete table {name}: it holds items\nhint: export or empty it first, or pass --force to delete the items with it"
        );
    }
    deleted(c.delete_table().table_name(name).send().await, "ResourceNotFoundException", "dynamodb:DeleteTable")
}

//! DynamoDB tables: on-demand, keys, TTL, stream, point-in-time recovery,
//! deletion protection; and the table holding slx's deployment record.

use super::{Desired, Listed, aws_error, config_of, created, deleted, error_code, tag_changes};
use crate::record::{Attempt, Deployment, Entry, Key, Lease, Store};
use crate::resource::{KeyAttr, Kind, Live, Outputs, TableConfig};
use anyhow::{Context, Result, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Put,
    ScalarAttributeType, Select, StreamSpecification, StreamViewType, TableStatus, Tag, TimeToLiveSpecification,
    TransactWriteItem,
};
use std::collections::HashMap;
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
    Ok(Some(Live {
        kind: Kind::Table,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs,
        data,
        alias_async: Default::default(),
    }))
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
    created(req.send().await, "ResourceInUseException", "dynamodb:CreateTable")?;
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

// The deployment record (see `crate::record`): items keyed by `pk` = stack#stage
// and `sk` = `applied#{address}`, `deploy#{id}` or `lock`.

/// The record table, on DynamoDB.
pub struct RecordTable {
    pub(super) client: Client,
    pub(super) table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> u64 {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or_default()
}

fn keyed(key: &Key, sk: String) -> Item {
    HashMap::from([("pk".to_string(), s(key.partition())), ("sk".to_string(), s(sk))])
}

/// A JSON document stored as one string attribute.
fn doc<T: serde::Serialize>(v: &T) -> Result<AttributeValue> {
    Ok(s(serde_json::to_string(v)?))
}

fn from_doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T> {
    let text = get_s(item, "doc").context("record item has no `doc`")?;
    serde_json::from_str(&text).context("unreadable record item")
}

fn lease_of(item: &Item) -> Lease {
    Lease {
        holder: get_s(item, "holder").unwrap_or_default(),
        operation: get_s(item, "operation").unwrap_or_default(),
        token: get_s(item, "token").unwrap_or_default(),
        acquired: get_n(item, "acquired"),
        expires: get_n(item, "expires"),
        generation: get_n(item, "generation"),
    }
}

impl RecordTable {
    /// Writes one item holding a JSON document.
    async fn put_doc<T: serde::Serialize>(&self, key: &Key, sk: String, value: &T) -> Result<()> {
        let mut item = keyed(key, sk);
        item.insert("doc".to_string(), doc(value)?);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("dynamodb:PutItem", &e))?;
        Ok(())
    }

    /// The documents of a partition whose sort keys start with `prefix`, in key order.
    async fn query(
        &self,
        key: &Key,
        prefix: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Option<Vec<Item>>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                // Only the document: the keys are in it.
                .projection_expression("doc")
                .expression_attribute_values(":pk", s(key.partition()))
                .expression_attribute_values(":prefix", s(prefix))
                .scan_index_forward(!newest_first)
                .consistent_read(true)
                .set_limit(limit.map(|l| l as i32))
                .set_exclusive_start_key(start)
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) if error_code(&e) == Some("ResourceNotFoundException") => return Ok(None),
                Err(e) => return Err(aws_error("dynamodb:Query", &e)),
            };
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() || limit.is_some_and(|l| out.len() >= l) {
                return Ok(Some(out));
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for RecordTable {
    fn table(&self) -> &str {
        &self.table
    }

    async fn ensure(&self) -> Result<()> {
        let c = &self.client;
        match c.describe_table().table_name(&self.table).send().await {
            Ok(t) if t.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => return Ok(()),
            Ok(_) => return wait_active(c, &self.table).await,
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(aws_error("dynamodb:DescribeTable", &e)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        let key = |name: &str, t: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(t).build();
        let created = c
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .tags(Tag::builder().key("slx:record").value("true").build()?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another run created it first.
            Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
            Err(e) => {
                return Err(aws_error("dynamodb:CreateTable", &e))
                    .with_context(|| format!("cannot create the deployment record table {}", self.table));
            }
        }
        wait_active(c, &self.table).await?;
        set_pitr(c, &self.table, true).await
    }

    async fn entries(&self, key: &Key) -> Result<Option<Vec<Entry>>> {
        let Some(items) = self.query(key, "applied#", false, None).await? else { return Ok(None) };
        items.iter().map(from_doc).collect::<Result<Vec<Entry>>>().map(Some)
    }

    async fn put_entry(&self, key: &Key, entry: &Entry) -> Result<()> {
        self.put_doc(key, format!("applied#{}", entry.address), entry).await
    }

    async fn remove_entry(&self, key: &Key, address: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keyed(key, format!("applied#{address}"))))
            .send()
            .await
            .map_err(|e| aws_error("dynamodb:DeleteItem", &e))?;
        Ok(())
    }

    async fn put_deployment(&self, key: &Key, d: &Deployment) -> Result<()> {
        self.put_doc(key, format!("deploy#{}", d.id), d).await
    }

    async fn deployments(&self, key: &Key, limit: usize) -> Result<Vec<Deployment>> {
        let items = self.query(key, "deploy#", true, Some(limit)).await?.unwrap_or_default();
        items.iter().take(limit).map(from_doc).collect()
    }

    async fn lease(&self, key: &Key) -> Result<Option<Lease>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(keyed(key, "lock".to_string())))
            .consistent_read(true)
            .send()
            .await;
        match out {
            Ok(o) => Ok(o.item().map(lease_of)),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(aws_error("dynamodb:GetItem", &e)),
        }
    }

    async fn try_lock(&self, key: &Key, lease: &Lease, seen: u64, now: u64, opening: &Deployment) -> Result<Attempt> {
        let mut item = keyed(key, "lock".to_string());
        item.insert("holder".to_string(), s(&lease.holder));
        item.insert("operation".to_string(), s(&lease.operation));
        item.insert("token".to_string(), s(&lease.token));
        item.insert("acquired".to_string(), n(lease.acquired));
        item.insert("expires".to_string(), n(lease.expires));
        item.insert("generation".to_string(), n(lease.generation));
        let mut lock = Put::builder().table_name(&self.table).set_item(Some(item));
        lock = if seen == 0 {
            lock.condition_expression("attribute_not_exists(sk)")
        } else {
            lock.condition_expression("expires < :now AND generation = :seen")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":seen", n(seen))
        };
        let mut history = keyed(key, format!("deploy#{}", opening.id));
        history.insert("doc".to_string(), doc(opening)?);
        let history = Put::builder().table_name(&self.table).set_item(Some(history));
        // The lock and the run's history item land together or not at all.
        let taken = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(lock.build()?).build())
            .transact_items(TransactWriteItem::builder().put(history.build()?).build())
            .send()
            .await;
        match taken {
            Ok(_) => return Ok(Attempt::Taken),
            // The lock's condition failed (or another write raced it): look at the lease.
            Err(e) if error_code(&e) == Some("TransactionCanceledException") => {}
            Err(e) => {
                return Err(aws_error("dynamodb:TransactWriteItems", &e)).context("cannot take the deployment lock");
            }
        }
        Ok(match self.lease(key).await? {
            // Our own transaction, retried after its response was lost.
            Some(l) if l.token == lease.token => Attempt::Taken,
            Some(l) if l.held(now) => Attempt::Held(l),
            _ => Attempt::Moved,
        })
    }

    async fn renew(&self, key: &Key, token: &str, expires: u64) -> Result<bool> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keyed(key, "lock".to_string())))
            .update_expression("SET expires = :expires")
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(aws_error("dynamodb:UpdateItem", &e)),
        }
    }

    async fn unlock(&self, key: &Key, token: Option<&str>) -> Result<Option<Lease>> {
        // The item stays (expired) so its generation keeps counting.
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keyed(key, "lock".to_string())))
            .update_expression("SET expires = :zero")
            .expression_attribute_values(":zero", n(0))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld);
        req = match token {
            Some(t) => req
                .condition_expression("#token = :token")
                .expression_attribute_names("#token", "token")
                .expression_attribute_values(":token", s(t)),
            None => req.condition_expression("attribute_exists(sk)"),
        };
        match req.send().await {
            Ok(out) => Ok(out.attributes().map(lease_of)),
            // Broken by `slx unlock --force`, or there was no lock.
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) if error_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(aws_error("dynamodb:UpdateItem", &e)),
        }
    }
}

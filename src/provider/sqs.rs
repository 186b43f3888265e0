//! SQS queues.

use super::{Desired, Listed, aws_error, config_of, error_code, tag_changes};
use crate::resource::{Kind, Live, Outputs, QueueConfig, Redrive};
use anyhow::{Context, Result, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName as A;
use std::collections::HashMap;

pub(super) fn update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    if changed.iter().any(|c| c != "tags") {
        calls.push("sqs:SetQueueAttributes");
    }
    if changed.iter().any(|c| c == "tags") {
        calls.extend(["sqs:TagQueue", "sqs:UntagQueue"]);
    }
    calls
}

pub(super) async fn list(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .list_queues()
            .queue_name_prefix(prefix)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("sqs:ListQueues", &e))?;
        for url in page.queue_urls() {
            let name = url.rsplit('/').next().unwrap_or_default().to_string();
            out.push(Listed { name, id: url.clone(), extra: serde_json::Value::Null });
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Only queues found by listing exist; the URL comes from there.
pub(super) async fn read(c: &Client, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
    let Some(listed) = listed else { return Ok(None) };
    let url = &listed.id;
    // Both at once: a read is as slow as its longest chain of calls.
    let (attrs, tags) = tokio::join!(
        c.get_queue_attributes().queue_url(url).attribute_names(A::All).send(),
        c.list_queue_tags().queue_url(url).send()
    );
    let gone =
        |code: Option<&str>| code.is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist"));
    let attrs = match attrs {
        Ok(o) => o.attributes().cloned().unwrap_or_default(),
        Err(e) if gone(error_code(&e)) => return Ok(None),
        Err(e) => return Err(aws_error("sqs:GetQueueAttributes", &e)),
    };
    let tags = match tags {
        Ok(t) => t,
        Err(e) if gone(error_code(&e)) => return Ok(None),
        Err(e) => return Err(aws_error("sqs:ListQueueTags", &e)),
    };
    let num = |k: A| attrs.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let redrive = attrs
        .get(&A::RedrivePolicy)
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
    let dead_letter = redrive.map(|r| Redrive {
        queue_arn: r["deadLetterTargetArn"].as_str().unwrap_or_default().to_string(),
        max_receives: match &r["maxReceiveCount"] {
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            v => v.as_u64().unwrap_or(0) as u32,
        },
    });
    let fifo = attrs.get(&A::FifoQueue).is_some_and(|v| v == "true");
    let config = QueueConfig {
        fifo,
        visibility_timeout: num(A::VisibilityTimeout),
        retention: num(A::MessageRetentionPeriod),
        delay: num(A::DelaySeconds),
        receive_wait_time: num(A::ReceiveMessageWaitTimeSeconds),
        max_message_size: num(A::MaximumMessageSize),
        content_based_deduplication: attrs.get(&A::ContentBasedDeduplication).is_some_and(|v| v == "true"),
        dead_letter,
        policy: attrs.get(&A::Policy).filter(|p| !p.is_empty()).and_then(|p| serde_json::from_str(p).ok()),
        tags: tags.tags().cloned().unwrap_or_default().into_iter().collect(),
    };
    let messages = num(A::ApproximateNumberOfMessages)
        + num(A::ApproximateNumberOfMessagesNotVisible)
        + num(A::ApproximateNumberOfMessagesDelayed);
    let arn = attrs.get(&A::QueueArn).cloned().unwrap_or_default();
    Ok(Some(Live {
        kind: Kind::Queue,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs: Outputs::from([("url".to_string(), url.clone()), ("arn".to_string(), arn)]),
        data: (messages > 0).then(|| format!("holds {messages} message{}", if messages == 1 { "" } else { "s" })),
        alias_async: Default::default(),
    }))
}

fn attributes(q: &QueueConfig, creating: bool) -> HashMap<A, String> {
    let mut a = HashMap::from([
        (A::VisibilityTimeout, q.visibility_timeout.to_string()),
        (A::MessageRetentionPeriod, q.retention.to_string()),
        (A::DelaySeconds, q.delay.to_string()),
        (A::ReceiveMessageWaitTimeSeconds, q.receive_wait_time.to_string()),
        (A::MaximumMessageSize, q.max_message_size.to_string()),
    ]);
    if q.fifo {
        if creating {
            a.insert(A::FifoQueue, "true".into());
        }
        a.insert(A::ContentBasedDeduplication, q.content_based_deduplication.to_string());
    }
    match &q.policy {
        Some(p) => {
            a.insert(A::Policy, p.to_string());
        }
        None if !creating => {
            a.insert(A::Policy, String::new());
        }
        None => {}
    }
    match &q.dead_letter {
        Some(r) => {
            let policy = serde_json::json!({ "deadLetterTargetArn": r.queue_arn, "maxReceiveCount": r.max_receives });
            a.insert(A::RedrivePolicy, policy.to_string());
        }
        None if !creating => {
            a.insert(A::RedrivePolicy, String::new());
        }
        None => {}
    }
    a
}

pub(super) async fn create(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let q: QueueConfig = config_of(&r)?;
    let out = c
        .create_queue()
        .queue_name(r.name)
        .set_attributes(Some(attributes(&q, true)))
        .set_tags(Some(q.tags.clone().into_iter().collect()))
        .send()
        .await
        .map_err(|e| aws_error("sqs:CreateQueue", &e))?;
    let url = out.queue_url().context("sqs:CreateQueue returned no URL")?.to_string();
    Ok(Outputs::from([("url".to_string(), url)]))
}

pub(super) async fn update(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let q: QueueConfig = config_of(&r)?;
    let url = prior.outputs.get("url").context("queue URL unknown")?.clone();
    if changed.iter().any(|f| f != "tags") {
        c.set_queue_attributes()
            .queue_url(&url)
            .set_attributes(Some(attributes(&q, false)))
            .send()
            .await
            .map_err(|e| aws_error("sqs:SetQueueAttributes", &e))?;
    }
    if changed.iter().any(|f| f == "tags") {
        let (add, remove) = tag_changes(&q.tags, &prior.tags());
        if !add.is_empty() {
            c.tag_queue()
                .queue_url(&url)
                .set_tags(Some(add.into_iter().collect()))
                .send()
                .await
                .map_err(|e| aws_error("sqs:TagQueue", &e))?;
        }
        if !remove.is_empty() {
            c.untag_queue()
                .queue_url(&url)
                .set_tag_keys(Some(remove))
                .send()
                .await
                .map_err(|e| aws_error("sqs:UntagQueue", &e))?;
        }
    }
    Ok(prior.outputs.clone())
}

/// Checks for messages right before deleting: the plan's count may be stale.
pub(super) async fn delete(c: &Client, prior: &Live, force: bool) -> Result<()> {
    let url = prior.outputs.get("url").context("queue URL unknown")?;
    if !force {
        let attrs = c
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| aws_error("sqs:GetQueueAttributes", &e))?;
        let n: u64 = attrs.attributes().map(|m| m.values().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0);
        if n > 0 {
            bail!(
                "refusing to delete queue {}: it holds {n} message{}\nhint: drain it first, or pass --force to delete the messages with it",
                prior.name,
                if n == 1 { "" } else { "s" }
            );
        }
    }
    c.delete_queue().queue_url(url).send().await.map_err(|e| aws_error("sqs:DeleteQueue", &e))?;
    Ok(())
}

//! Facts about spec fields the types cannot carry (defaults, limits, AWS
//! counterparts, examples), merged into the JSON Schema, and the reference
//! (`docs/spec.md`) generated from that schema so the two never disagree.

use serde_json::{Value, json};
use std::fmt::Write;

/// `Definition.field`, its AWS counterpart, default, limits and an example.
struct Fact {
    path: &'static str,
    aws: &'static str,
    default: Option<Value>,
    min: Option<i64>,
    max: Option<i64>,
    example: Option<Value>,
}

fn fact(path: &'static str, aws: &'static str) -> Fact {
    Fact { path, aws, default: None, min: None, max: None, example: None }
}

impl Fact {
    fn default(mut self, v: Value) -> Fact {
        self.default = Some(v);
        self
    }
    fn range(mut self, min: i64, max: i64) -> Fact {
        (self.min, self.max) = (Some(min), Some(max));
        self
    }
    fn example(mut self, v: Value) -> Fact {
        self.example = Some(v);
        self
    }
}

fn facts() -> Vec<Fact> {
    vec![
        fact("Spec.stack", "prefix of every physical name; tag `slx:stack`").example(json!("orders")),
        fact("Spec.region", "the AWS region").example(json!("us-east-1")),
        fact("FunctionSpec.description", "Lambda `Description`"),
        fact("FunctionSpec.handler", "Lambda `Handler`").example(json!("app.handler")),
        fact("FunctionSpec.runtime", "Lambda `Runtime`").example(json!("python3.12")),
        fact("FunctionSpec.code", "Lambda `Code.ZipFile` (≤ 50 MB zipped)").example(json!("./src/worker")),
        fact("FunctionSpec.memory", "Lambda `MemorySize` (MB)")
            .default(json!(128))
            .range(128, 10240)
            .example(json!(512)),
        fact("FunctionSpec.timeout", "Lambda `Timeout`").default(json!("3s")).example(json!("30s")),
        fact("FunctionSpec.ephemeral_storage", "Lambda `EphemeralStorage.Size` (MB)")
            .default(json!(512))
            .range(512, 10240),
        fact("FunctionSpec.architecture", "Lambda `Architectures`").default(json!("x86_64")),
        fact("FunctionSpec.log_retention_days", "CloudWatch Logs `retentionInDays` of `/aws/lambda/{name}`")
            .example(json!(14)),
        fact("FunctionSpec.environment", "Lambda `Environment.Variables` (4 KB in total)"),
        fact("FunctionSpec.layers", "Lambda `Layers` (at most 5)"),
        fact("FunctionSpec.reserved_concurrency", "Lambda `PutFunctionConcurrency`").range(0, 1000),
        fact("FunctionSpec.dead_letter_queue", "Lambda `DeadLetterConfig.TargetArn`"),
        fact("FunctionSpec.async", "Lambda `PutFunctionEventInvokeConfig`"),
        fact("FunctionSpec.permissions", "statements of the function role's inline policy"),
        fact("FunctionSpec.access", "statements of the function role's inline policy"),
        fact("FunctionSpec.tags", "Lambda tags"),
        fact("FunctionSpec.events", "event source mappings and EventBridge rules"),
        fact("FunctionSpec.alias", "Lambda `CreateAlias` / `UpdateAlias`"),
        fact("AsyncSpec.max_retries", "`MaximumRetryAttempts`").default(json!(2)).range(0, 2),
        fact("AsyncSpec.max_event_age", "`MaximumEventAgeInSeconds`").default(json!("6h")),
        fact("AliasSpec.name", "Lambda alias `Name`").example(json!("live")),
        fact("AliasSpec.provisioned_concurrency", "`PutProvisionedConcurrencyConfig` on the alias"),
        fact("AliasSpec.keep_versions", "published versions kept (`DeleteFunction` with a qualifier)")
            .default(json!(5))
            .range(1, 100),
        fact("RolloutSpec.interval", "hold between weight changes").default(json!("5m")),
        fact("RolloutSpec.alarms", "CloudWatch `DescribeAlarms` names watched during a rollout"),
        fact("QueueSpec.fifo", "SQS `FifoQueue`").default(json!(false)),
        fact("QueueSpec.visibility_timeout", "SQS `VisibilityTimeout`").default(json!("30s")),
        fact("QueueSpec.retention", "SQS `MessageRetentionPeriod`").default(json!("4d")),
        fact("QueueSpec.delay", "SQS `DelaySeconds`").default(json!("0s")),
        fact("QueueSpec.receive_wait_time", "SQS `ReceiveMessageWaitTimeSeconds`").default(json!("0s")),
        fact("QueueSpec.max_message_size", "SQS `MaximumMessageSize` (bytes)")
            .default(json!(1_048_576))
            .range(1024, 1_048_576),
        fact("QueueSpec.content_based_deduplication", "SQS `ContentBasedDeduplication`").default(json!(false)),
        fact("QueueSpec.dead_letter", "SQS `RedrivePolicy`"),
        fact("QueueSpec.tags", "SQS queue tags"),
        fact("QueueDeadLetter.max_receives", "`RedrivePolicy.maxReceiveCount`").range(1, 1000).example(json!(5)),
        fact("SqsEvent.batch_size", "`BatchSize`").default(json!(10)).range(1, 10000),
        fact("SqsEvent.batching_window", "`MaximumBatchingWindowInSeconds`").default(json!("0s")),
        fact("SqsEvent.max_concurrency", "`ScalingConfig.MaximumConcurrency`").range(2, 1000),
        fact("SqsEvent.enabled", "mapping `Enabled`").default(json!(true)),
        fact("StreamSource.batch_size", "`BatchSize`").default(json!(100)).range(1, 10000),
        fact("StreamSource.starting_position", "`StartingPosition`"),
        fact("StreamSource.parallelization_factor", "`ParallelizationFactor`").default(json!(1)).range(1, 10),
        fact("StreamSource.enabled", "mapping `Enabled`").default(json!(true)),
        fact("TableSpec.partition_key", "DynamoDB `KeySchema` HASH"),
        fact("TableSpec.sort_key", "DynamoDB `KeySchema` RANGE"),
        fact("TableSpec.ttl", "DynamoDB `UpdateTimeToLive`").example(json!("expiresAt")),
        fact("TableSpec.stream", "DynamoDB `StreamSpecification`"),
        fact("TableSpec.point_in_time_recovery", "DynamoDB `UpdateContinuousBackups`").default(json!(true)),
        fact("TableSpec.deletion_protection", "DynamoDB `DeletionProtectionEnabled`").default(json!(false)),
        fact("TableSpec.tags", "DynamoDB tags"),
        fact("BusSpec.tags", "EventBridge bus tags"),
        fact("WebsocketSpec.route_selection", "API Gateway `RouteSelectionExpression`")
            .default(json!("$request.body.action")),
        fact("WebsocketSpec.stage", "API Gateway stage name"),
        fact("WebsocketSpec.tags", "API Gateway API and stage tags"),
        fact("Throttling.burst", "stage `DefaultRouteSettings.ThrottlingBurstLimit`"),
        fact("Throttling.rate", "stage `DefaultRouteSettings.ThrottlingRateLimit`"),
        fact("BusEvent.max_retries", "target `RetryPolicy.MaximumRetryAttempts`").default(json!(185)).range(0, 185),
        fact("BusEvent.max_event_age", "target `RetryPolicy.MaximumEventAgeInSeconds`").default(json!("24h")),
        fact("ScheduleRule.max_retries", "target `RetryPolicy.MaximumRetryAttempts`").default(json!(185)).range(0, 185),
        fact("ScheduleRule.max_event_age", "target `RetryPolicy.MaximumEventAgeInSeconds`").default(json!("24h")),
    ]
}

/// The property schema at `Definition.field`.
fn property<'a>(schema: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let (def, field) = path.split_once('.')?;
    let holder = if def == "Spec" { schema } else { schema.get_mut("$defs")?.get_mut(def)? };
    holder.get_mut("properties")?.get_mut(field)
}

/// Adds each fact to its property: limits on the number itself (not on the
/// `${...}` alternative), the rest where editors look for it.
pub(super) fn annotate(schema: &mut Value) {
    for f in facts() {
        let Some(p) = property(schema, f.path) else { panic!("a fact names {}, which the schema lacks", f.path) };
        p["x-aws"] = json!(f.aws);
        if let Some(d) = f.default {
            p["default"] = d;
        }
        if let Some(e) = f.example {
            p["examples"] = json!([e]);
        }
        let number = match p.get_mut("anyOf").and_then(|a| a.get_mut(0)) {
            Some(inner) if inner.get("type").is_some() => inner,
            _ => p,
        };
        if let Some(min) = f.min {
            number["minimum"] = json!(min);
        }
        if let Some(max) = f.max {
            number["maximum"] = json!(max);
        }
    }
}

/// A property's type as a reader wants it.
fn type_of(p: &Value) -> String {
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return if name == "Reference" {
            "`${...}`".to_string()
        } else {
            format!("[{name}](#{})", name.to_lowercase())
        };
    }
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = p.get(key).and_then(Value::as_array) {
            let parts: Vec<String> =
                options.iter().filter(|o| o.get("type") != Some(&json!("null"))).map(type_of).collect();
            return parts.join(" or ");
        }
    }
    let t = match p.get("type") {
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("any").to_string()
        }
        Some(Value::String(t)) => t.clone(),
        _ => "any".to_string(),
    };
    match t.as_str() {
        "array" => format!("list of {}", p.get("items").map(type_of).unwrap_or_else(|| "any".into())),
        "object" => match p.get("additionalProperties") {
            Some(v) if v.is_object() => format!("map of {}", type_of(v)),
            _ => "map".to_string(),
        },
        _ => t,
    }
}

/// Limits from the schema, wherever `annotate` or the types put them.
fn limits(p: &Value) -> String {
    let inner = p.get("anyOf").and_then(|a| a.get(0)).unwrap_or(p);
    match (inner.get("minimum"), inner.get("maximum")) {
        (Some(min), Some(max)) => format!("{min} .. {max}"),
        (Some(min), None) if min != &json!(0) => format!("≥ {min}"),
        _ => String::new(),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `docs/spec.md`: every definition of the schema with every field.
pub fn markdown(schema: &Value) -> String {
    let mut out = String::from(
        "# Spec reference\n\nGenerated from `schemas/slx.schema.json` (`slx schema`); a test fails when they disagree.\n\
         Durations take seconds or a unit (`30`, `30s`, `5m`, `1h`, `14d`). Wherever a number,\n\
         boolean or enum is expected, a `${...}` reference may stand instead. Omitted settings\n\
         take AWS's defaults, so a hand edit of any of them shows in `slx plan` as drift.\n",
    );
    let mut sections: Vec<(String, &Value)> = vec![("Spec".to_string(), schema)];
    if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
        sections.extend(defs.iter().map(|(k, v)| (k.clone(), v)));
    }
    for (name, def) in sections {
        let _ = write!(out, "\n## {name}\n\n");
        if let Some(d) = def.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", d.replace('\n', " "));
        }
        let Some(props) = def.get("properties").and_then(Value::as_object) else {
            let _ = writeln!(out, "Type: {}", type_of(def));
            continue;
        };
        let required: Vec<&str> = def
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "| field | type | default | limits | AWS | description |\n|---|---|---|---|---|---|");
        for (field, p) in props {
            let default = match p.get("default") {
                Some(Value::Null) | None if required.contains(&field.as_str()) => "required".to_string(),
                // A struct's own defaults are documented in its section.
                Some(Value::Null) | None | Some(Value::Object(_)) => String::new(),
                Some(d) => format!("`{d}`"),
            };
            let mut description = p.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(e) = p.get("examples").and_then(|e| e.get(0)) {
                let _ = write!(description, " Example: `{e}`.");
            }
            let aws = p.get("x-aws").and_then(Value::as_str).unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{field}` | {} | {} | {} | {} | {} |",
                cell(&type_of(p)),
                cell(&default),
                cell(&limits(p)),
                cell(aws),
                cell(&description)
            );
        }
    }
    out
}

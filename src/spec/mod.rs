//! The stack spec: YAML → typed [`Spec`], with `${...}` interpolation and
//! client-side validation. Field names here are slx's public contract.
//!
//! Loading runs in four steps, each able to point at `file:line:col`:
//! parse into a span-aware tree ([`yaml`]), expand static references
//! ([`interp`]), deserialize through serde ([`de`]), then validate
//! ([`validate`]). Resource references (`${queues.x.url}`) survive as text and
//! are resolved by the planner once their values exist.

pub mod de;
pub mod interp;
mod reference;
pub mod rules;
pub mod validate;
pub mod yaml;

use crate::diag::{Diagnostic, Diagnostics, Mark};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A slx stack: everything `slx deploy` creates, updates and destroys together.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Stack name, `[a-z][a-z0-9-]*`. Physical names default to `{stack}-{stage}-{name}`.
    pub stack: String,
    /// AWS region; when absent, the AWS config chain (`AWS_REGION`, profile) decides.
    #[serde(default)]
    pub region: Option<String>,
    /// Values for `${vars.NAME}`; stages may override them.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Per-stage overrides, selected with `--stage`.
    #[serde(default)]
    pub stages: BTreeMap<String, StageSpec>,
    /// Settings merged into every function; a function's own settings win.
    #[serde(default)]
    pub defaults: FunctionSpec,
    /// SQS queues by name.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSpec>,
    /// DynamoDB tables (on-demand) by name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
    /// Custom EventBridge buses by name.
    #[serde(default)]
    pub buses: BTreeMap<String, BusSpec>,
    /// API Gateway WebSocket APIs by name.
    #[serde(default)]
    pub websockets: BTreeMap<String, WebsocketSpec>,
    /// Lambda functions by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Overrides of top-level `vars` for this stage.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Region for this stage, overriding the top-level `region`.
    #[serde(default)]
    pub region: Option<String>,
}

/// An SQS queue. Omitted settings take AWS's defaults, so hand edits show as drift.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// A FIFO queue; its physical name gets the `.fifo` suffix. Changing it replaces the queue.
    #[serde(default)]
    pub fifo: bool,
    /// How long a received message stays hidden (0 s .. 12 h, default 30 s).
    #[serde(default)]
    pub visibility_timeout: Option<Duration>,
    /// How long messages are kept (60 s .. 14 d, default 4 d).
    #[serde(default)]
    pub retention: Option<Duration>,
    /// Delivery delay for new messages (0 .. 900 s, default 0).
    #[serde(default)]
    pub delay: Option<Duration>,
    /// Long-poll wait for ReceiveMessage (0 .. 20 s, default 0).
    #[serde(default)]
    pub receive_wait_time: Option<Duration>,
    /// Largest message in bytes (1024 .. 1048576, default 1048576).
    #[serde(default)]
    pub max_message_size: Option<u32>,
    /// FIFO only: deduplicate by a hash of the body.
    #[serde(default)]
    pub content_based_deduplication: Option<bool>,
    /// Redrive: after `max_receives` failed receives a message moves to `queue`.
    #[serde(default)]
    pub dead_letter: Option<QueueDeadLetter>,
    /// Extra tags; `slx:` keys are reserved.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueDeadLetter {
    /// Name of a queue in this stack.
    pub queue: String,
    /// Receives before a message is moved (1 .. 1000).
    pub max_receives: u32,
}

/// A Lambda function. Every field is optional here because `defaults` may supply it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Free text shown in the Lambda console (Lambda `Description`, up to 256 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Entry point, e.g. `app.handler`.
    #[serde(default)]
    pub handler: Option<String>,
    /// Lambda runtime identifier, e.g. `python3.12`, `nodejs22.x`.
    #[serde(default)]
    pub runtime: Option<String>,
    /// A directory (zipped deterministically) or a `.zip` file, relative to the spec file.
    #[serde(default)]
    pub code: Option<String>,
    /// Memory in MB (128 .. 10240).
    #[serde(default)]
    pub memory: Option<u32>,
    /// Timeout (1 .. 900 s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// /tmp size in MB (512 .. 10240).
    #[serde(default)]
    pub ephemeral_storage: Option<u32>,
    /// Instruction set (Lambda `Architectures`): `x86_64` (default) or `arm64`.
    #[serde(default)]
    pub architecture: Option<Architecture>,
    /// Retention of the function's log group, in days (a CloudWatch Logs value such as 7, 14, 30).
    #[serde(default)]
    pub log_retention_days: Option<u32>,
    /// Environment variables (4 KB in total); values may hold `${...}` references.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Layer version ARNs (at most 5).
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    /// Concurrency reserved for this function.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    /// Queue in this stack (or an SNS topic / SQS ARN) for failed async invocations. Never FIFO.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Async invocation settings.
    #[serde(default, rename = "async")]
    pub async_config: Option<AsyncSpec>,
    /// Extra IAM statements for the function's role.
    #[serde(default)]
    pub permissions: Vec<PermissionSpec>,
    /// Least-privilege grants to resources of this stack.
    #[serde(default)]
    pub access: AccessSpec,
    /// Extra tags; `slx:` keys are reserved.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// What invokes the function: queues, streams, schedules, event buses.
    #[serde(default)]
    pub events: Vec<EventSpec>,
    /// A stable name for the released version; event sources, rules and
    /// WebSocket routes invoke it, so moving it moves all traffic.
    #[serde(default)]
    pub alias: Option<AliasSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasSpec {
    /// e.g. `live`.
    pub name: String,
    /// Free text on the alias (Lambda alias `Description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Pre-initialised environments kept warm on the alias.
    #[serde(default)]
    pub provisioned_concurrency: Option<u32>,
    /// How each new version takes over traffic.
    #[serde(default)]
    pub deployment: Option<RolloutSpec>,
    /// Published versions kept (default 5); older ones no alias uses are deleted.
    #[serde(default)]
    pub keep_versions: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// `all_at_once`, `canary` (default steps [10]) or `linear` (default steps of 10 %).
    pub strategy: crate::rollout::Strategy,
    /// % of traffic on the new version at each step before 100 %.
    #[serde(default)]
    pub steps: Vec<u32>,
    /// How long each step holds (default 5m).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// CloudWatch alarm names; any in ALARM during the rollout rolls it back.
    #[serde(default)]
    pub alarms: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncSpec {
    /// Retries after a failed async invocation (0 .. 2, default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Oldest event still processed (60 s .. 6 h, default 6 h).
    #[serde(default)]
    pub max_event_age: Option<Duration>,
    /// Where failed events go.
    #[serde(default)]
    pub on_failure: Option<DestinationSpec>,
}

/// Exactly one destination.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    /// A standard queue in this stack.
    #[serde(default)]
    pub queue: Option<String>,
    /// An EventBridge bus in this stack.
    #[serde(default)]
    pub bus: Option<String>,
    /// A function in this stack.
    #[serde(default)]
    pub function: Option<String>,
    /// An SNS topic ARN.
    #[serde(default)]
    pub topic_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    /// IAM actions, e.g. `s3:GetObject`.
    pub allow: Vec<String>,
    /// Resource ARNs; may hold `${...}` references.
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// Queue name → `send`, `consume` or `send_consume`.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueAccess>,
    /// Table name → `read`, `write` or `read_write`.
    #[serde(default)]
    pub tables: BTreeMap<String, TableAccess>,
    /// WebSocket API name → `manage_connections` (post to and drop its connections).
    #[serde(default)]
    pub websockets: BTreeMap<String, WebsocketAccess>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebsocketAccess {
    ManageConnections,
}

/// An API Gateway WebSocket API whose routes invoke functions of this stack.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebsocketSpec {
    /// How a message picks its route (default `$request.body.action`).
    #[serde(default)]
    pub route_selection: Option<String>,
    /// API Gateway stage name (default: the slx stage).
    #[serde(default)]
    pub stage: Option<String>,
    /// Route key → function: `$connect`, `$disconnect`, `$default` or a custom action.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// `true` for a `connectionId`-keyed table with TTL (`{name}-connections`), or the
    /// name of a table of this stack. Route functions get read/write access and
    /// its name as `CONNECTIONS_TABLE`.
    #[serde(default)]
    pub connections_table: Option<ConnectionsTable>,
    /// Stage-wide throttling.
    #[serde(default)]
    pub throttling: Option<Throttling>,
    /// Stage access logs.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
    /// Free text on the API (API Gateway `Description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Extra tags; `slx:` keys are reserved.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ConnectionsTable {
    Enabled(bool),
    Table(String),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttling {
    /// Burst limit (requests).
    pub burst: u32,
    /// Steady-state rate (requests per second).
    pub rate: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// CloudWatch Logs group (or Firehose) ARN.
    pub destination_arn: String,
    /// Log line format with `$context` variables.
    pub format: String,
}

/// The WebSocket conventions a newcomer should not have to spell out.
impl WebsocketSpec {
    pub fn route_selection(&self) -> String {
        self.route_selection.clone().unwrap_or_else(|| "$request.body.action".to_string())
    }

    /// The connections table this API uses, if any: `{api}-connections` for `true`.
    pub fn connections_table(&self, api: &str) -> Option<String> {
        match &self.connections_table {
            Some(ConnectionsTable::Enabled(true)) => Some(format!("{api}-connections")),
            Some(ConnectionsTable::Table(t)) => Some(t.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableAccess {
    Read,
    Write,
    ReadWrite,
}

/// An on-demand DynamoDB table. Changing a key replaces the table and its data.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The hash key (`KeySchema` HASH). Changing it replaces the table.
    pub partition_key: KeySpec,
    /// The range key (`KeySchema` RANGE). Changing it replaces the table.
    #[serde(default)]
    pub sort_key: Option<KeySpec>,
    /// Attribute holding the expiry time (epoch seconds); enables TTL.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Enables a DynamoDB stream with this view of changed items.
    #[serde(default)]
    pub stream: Option<StreamView>,
    /// Point-in-time recovery (default true).
    #[serde(default)]
    pub point_in_time_recovery: Option<bool>,
    /// Refuse DeleteTable at the AWS level too (default false).
    #[serde(default)]
    pub deletion_protection: bool,
    /// Extra tags; `slx:` keys are reserved.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Attribute name.
    pub name: String,
    /// S (string), N (number) or B (binary).
    #[serde(rename = "type")]
    pub key_type: KeyType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum KeyType {
    S,
    N,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamView {
    KeysOnly,
    NewImage,
    OldImage,
    NewAndOldImages,
}

impl StreamView {
    /// The `StreamViewType` DynamoDB uses.
    pub fn aws(self) -> &'static str {
        match self {
            StreamView::KeysOnly => "KEYS_ONLY",
            StreamView::NewImage => "NEW_IMAGE",
            StreamView::OldImage => "OLD_IMAGE",
            StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
        }
    }
}

/// A custom EventBridge bus.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusSpec {
    /// Extra tags; `slx:` keys are reserved.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// One trigger of a function; a single-key mapping naming the kind.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventSpec {
    /// Poll an SQS queue of this stack.
    Sqs(SqsEvent),
    /// Read a DynamoDB stream of a table of this stack (`table:`).
    Stream(StreamSource),
    /// Read a Kinesis stream (`arn:`).
    Kinesis(StreamSource),
    /// Run on a schedule: `rate(5 minutes)`, `cron(0 8 * * ? *)`, or a mapping with `expression`.
    Schedule(ScheduleEvent),
    /// Subscribe to events on a bus (default: the account's default bus).
    Eventbridge(BusEvent),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqsEvent {
    /// Name of a queue in this stack.
    pub queue: String,
    /// Records per invocation (1 .. 10000; FIFO at most 10; above 10 needs `batching_window`). Default 10.
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Wait up to this long to fill a batch (0 .. 300 s).
    #[serde(default)]
    pub batching_window: Option<Duration>,
    /// Let the function report partial batch failures.
    #[serde(default)]
    pub report_batch_item_failures: bool,
    /// Not for SQS sources (use the queue's `dead_letter`); accepted only to explain that.
    #[serde(default)]
    #[schemars(skip)]
    pub on_failure: Option<FailureDestination>,
    /// Most concurrent invocations this source drives (2 .. 1000).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Lambda event filters (at most 5 patterns).
    #[serde(default)]
    pub filter: Vec<serde_json::Value>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartingPosition {
    Latest,
    TrimHorizon,
}

/// Where records that keep failing go: a standard queue of this stack or an SNS topic.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureDestination {
    /// Name of a standard queue in this stack.
    #[serde(default)]
    pub queue: Option<String>,
    /// An SNS topic ARN outside this stack.
    #[serde(default)]
    pub topic_arn: Option<String>,
}

/// A DynamoDB stream (`table`) or Kinesis stream (`arn`) source and its tuning.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSource {
    /// `stream` events: a table of this stack with `stream:` set.
    #[serde(default)]
    pub table: Option<String>,
    /// `kinesis` events: the Kinesis stream ARN.
    #[serde(default)]
    pub arn: Option<String>,
    /// Required: where to start reading.
    #[serde(default)]
    pub starting_position: Option<StartingPosition>,
    /// Records per invocation (1 .. 10000, default 100).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// How long to gather records before invoking (`MaximumBatchingWindowInSeconds`, 0 .. 300 s).
    #[serde(default)]
    pub batching_window: Option<Duration>,
    /// Split a failing batch in two and retry each half.
    #[serde(default)]
    pub bisect_on_error: bool,
    /// Retries of a failing batch (0 .. 10000; default: until the record expires).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Skip records older than this (60 s .. 7 d; default: never).
    #[serde(default)]
    pub maximum_record_age: Option<Duration>,
    /// Concurrent batches per shard (1 .. 10).
    #[serde(default)]
    pub parallelization_factor: Option<u32>,
    /// Aggregation window (0 .. 900 s).
    #[serde(default)]
    pub tumbling_window: Option<Duration>,
    /// The handler returns `batchItemFailures`, so only failed records are retried (`FunctionResponseTypes`).
    #[serde(default)]
    pub report_batch_item_failures: bool,
    /// Where a description of a batch that failed every retry is sent (`DestinationConfig.OnFailure`).
    #[serde(default)]
    pub on_failure: Option<FailureDestination>,
    /// Event patterns; only matching records invoke the function (`FilterCriteria`, at most 5).
    #[serde(default)]
    pub filter: Vec<serde_json::Value>,
    /// Whether the mapping polls (default true); `false` pauses it without deleting it.
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ScheduleEvent {
    Expression(String),
    Full(ScheduleRule),
}

impl ScheduleEvent {
    pub fn rule(&self) -> ScheduleRule {
        match self {
            ScheduleEvent::Expression(e) => ScheduleRule { expression: e.clone(), ..Default::default() },
            ScheduleEvent::Full(r) => r.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    /// `rate(5 minutes)` or `cron(0 8 * * ? *)`.
    pub expression: String,
    /// Distinguishes several schedules of one function (part of the address).
    #[serde(default)]
    pub name: Option<String>,
    /// Constant JSON passed as the event.
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// Whether the rule fires (default true; EventBridge `State`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Queue for events EventBridge could not deliver after its retries (target `DeadLetterConfig`).
    #[serde(default)]
    pub dead_letter: Option<RuleDeadLetter>,
    /// Delivery retries (0 .. 185).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Give up delivering after this long (60 s .. 24 h).
    #[serde(default)]
    pub max_event_age: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusEvent {
    /// A bus of this stack; default: the account's default bus.
    #[serde(default)]
    pub bus: Option<String>,
    /// The event pattern to match.
    pub pattern: serde_json::Value,
    /// Distinguishes several subscriptions of one function to one bus (part of the address).
    #[serde(default)]
    pub name: Option<String>,
    /// Constant JSON passed instead of the event (target `Input`).
    #[serde(default)]
    pub input: Option<serde_json::Value>,
    /// JSONPath selecting the part of the event to pass (target `InputPath`), e.g. `$.detail`.
    #[serde(default)]
    pub input_path: Option<String>,
    /// Builds the input from parts of the event (target `InputTransformer`).
    #[serde(default)]
    pub input_transformer: Option<InputTransformer>,
    /// Whether the rule matches events (default true; EventBridge `State`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Queue for events EventBridge could not deliver after its retries (target `DeadLetterConfig`).
    #[serde(default)]
    pub dead_letter: Option<RuleDeadLetter>,
    /// Delivery retries (target `RetryPolicy.MaximumRetryAttempts`, 0 .. 185, default 185).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Give up delivering after this long (target `RetryPolicy.MaximumEventAgeInSeconds`, 60 s .. 24 h, default 24 h).
    #[serde(default)]
    pub max_event_age: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputTransformer {
    /// Name → JSON path into the event.
    #[serde(default)]
    pub paths: BTreeMap<String, String>,
    /// The text sent, with `<name>` placeholders.
    pub template: String,
}

/// A standard queue of this stack for events EventBridge could not deliver.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDeadLetter {
    /// Name of a standard queue in this stack; slx adds the queue policy EventBridge needs.
    pub queue: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueAccess {
    Send,
    Consume,
    SendConsume,
}

/// Seconds, written as a number (`30`) or with a unit (`500ms` is not allowed; `5s`, `5m`, `1h`, `2d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Duration(pub u64);

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration"))?;
        let mult = match unit.trim() {
            "" | "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(format!("`{text}` has an unknown unit; use s, m, h or d")),
        };
        n.checked_mul(mult).map(Duration).ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as 30, 30s, 5m or 1h")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!("a duration cannot be negative ({v})")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!("a duration is a whole number of seconds, not {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Seconds as a number, or a number with a unit: s, m, h, d (e.g. `30`, `5m`, `1h`).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+\\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)?$" }
            ]
        })
    }
}

/// A loaded, valid spec with what is needed to point back into its source.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub stage: String,
    /// The spec file as the user named it (used in messages).
    pub file: String,
    /// Directory that relative `code:` paths resolve against.
    pub dir: PathBuf,
    /// The expanded tree, for positions of later errors.
    pub root: yaml::Node,
}

impl Loaded {
    /// A diagnostic positioned at the spec path (`functions.api.memory`).
    pub fn diag_at(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let segs: Vec<&str> = path.split('.').collect();
        let mark = self.root.locate(&segs).unwrap_or(Mark { line: 1, col: 1 });
        let mut d = Diagnostic::new(message).at(&self.file, mark);
        if let Some(a) = address_of_path(path) {
            d = d.address(a);
        }
        d
    }

    /// The effective settings of one function: its own, over `defaults`.
    pub fn function(&self, name: &str) -> FunctionSpec {
        merge_function(&self.spec.defaults, &self.spec.functions[name])
    }

    /// The physical name of a resource of this stack and stage.
    pub fn physical_name(&self, name: &str) -> String {
        format!("{}-{}-{}", self.spec.stack, self.stage, name)
    }

    pub fn queue_physical_name(&self, name: &str) -> String {
        let base = self.physical_name(name);
        if self.spec.queues.get(name).is_some_and(|q| q.fifo) { format!("{base}.fifo") } else { base }
    }
}

impl EventSpec {
    /// For rules: the end of the physical name `{stack}-{stage}-{function}-{suffix}`.
    pub fn rule_suffix(&self) -> Option<String> {
        match self {
            EventSpec::Schedule(s) => Some(s.rule().name.map_or("schedule".to_string(), |n| format!("schedule-{n}"))),
            EventSpec::Eventbridge(b) => {
                let bus = b.bus.as_deref().unwrap_or("default");
                Some(b.name.as_ref().map_or(bus.to_string(), |n| format!("{bus}-{n}")))
            }
            _ => None,
        }
    }

    /// The address of the mapping or rule this event becomes: it comes from
    /// what the event is (its source), never from its position in the list.
    pub fn address(&self, function: &str) -> String {
        match self {
            EventSpec::Sqs(e) => format!("event_source.{function}.sqs.{}", e.queue),
            EventSpec::Stream(e) => {
                format!("event_source.{function}.stream.{}", e.table.as_deref().unwrap_or_default())
            }
            EventSpec::Kinesis(e) => {
                let arn = e.arn.as_deref().unwrap_or_default();
                format!("event_source.{function}.kinesis.{}", arn.rsplit('/').next().unwrap_or(arn))
            }
            EventSpec::Schedule(s) => match s.rule().name {
                Some(n) => format!("rule.{function}.schedule.{n}"),
                None => format!("rule.{function}.schedule"),
            },
            EventSpec::Eventbridge(b) => {
                let bus = b.bus.as_deref().unwrap_or("default");
                match &b.name {
                    Some(n) => format!("rule.{function}.eventbridge.{bus}.{n}"),
                    None => format!("rule.{function}.eventbridge.{bus}"),
                }
            }
        }
    }
}

/// The address a spec path belongs to: `functions.api.memory` → `function.api`.
pub fn address_of_path(path: &str) -> Option<String> {
    let mut segs = path.split('.');
    let section = segs.next()?;
    let name = segs.next();
    let kind = match section {
        "functions" => "function",
        "queues" => "queue",
        "tables" => "table",
        "websockets" => "websocket",
        "defaults" => return Some("defaults".to_string()),
        "buses" => "bus",
        _ => return None,
    };
    name.map(|n| format!("{kind}.{n}"))
}

pub fn merge_function(defaults: &FunctionSpec, f: &FunctionSpec) -> FunctionSpec {
    let mut environment = defaults.environment.clone();
    environment.extend(f.environment.clone());
    let mut tags = defaults.tags.clone();
    tags.extend(f.tags.clone());
    let mut access = defaults.access.clone();
    access.queues.extend(f.access.queues.clone());
    access.tables.extend(f.access.tables.clone());
    access.websockets.extend(f.access.websockets.clone());
    let mut permissions = defaults.permissions.clone();
    permissions.extend(f.permissions.clone());
    FunctionSpec {
        description: f.description.clone().or_else(|| defaults.description.clone()),
        handler: f.handler.clone().or_else(|| defaults.handler.clone()),
        runtime: f.runtime.clone().or_else(|| defaults.runtime.clone()),
        code: f.code.clone().or_else(|| defaults.code.clone()),
        memory: f.memory.or(defaults.memory),
        timeout: f.timeout.or(defaults.timeout),
        ephemeral_storage: f.ephemeral_storage.or(defaults.ephemeral_storage),
        architecture: f.architecture.or(defaults.architecture),
        log_retention_days: f.log_retention_days.or(defaults.log_retention_days),
        environment,
        layers: f.layers.clone().or_else(|| defaults.layers.clone()),
        reserved_concurrency: f.reserved_concurrency.or(defaults.reserved_concurrency),
        dead_letter_queue: f.dead_letter_queue.clone().or_else(|| defaults.dead_letter_queue.clone()),
        async_config: f.async_config.clone().or_else(|| defaults.async_config.clone()),
        permissions,
        access,
        tags,
        // Events belong to one function; validation rejects them under `defaults`.
        events: f.events.clone(),
        alias: f.alias.clone().or_else(|| defaults.alias.clone()),
    }
}

/// Reads and validates a spec file for one stage; the environment comes from the process.
pub fn load(path: &Path, stage: &str) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "pass the spec with -f FILE, or run `slx init` to create one"
        } else {
            "check the file's permissions"
        };
        Diagnostics::from(Diagnostic::new(format!("cannot read {file}: {e}")).hint(hint))
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    load_str(&text, &file, &dir, stage, &|k| std::env::var(k).ok())
}

/// Like [`load`], for text already in memory and an explicit environment.
pub fn load_str(
    text: &str,
    file: &str,
    dir: &Path,
    stage: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Diagnostics> {
    let locate = |d: Diagnostic| -> Diagnostics {
        let mut d = d;
        d.file = Some(file.to_string());
        Diagnostics::from(d)
    };
    validate::stage_name(stage).map_err(Diagnostics::from)?;
    let mut root = yaml::parse(text).map_err(locate)?;
    if !matches!(root.value, yaml::Value::Map(_)) {
        return Err(locate(
            Diagnostic::new("a spec must be a mapping with at least `stack:`")
                .hint("start the file with `stack: my-app`")
                .at_mark(root.mark),
        ));
    }
    interp::expand_static(&mut root, stage, env).map_err(|ds| {
        Diagnostics(
            ds.into_iter()
                .map(|mut d| {
                    d.file = Some(file.to_string());
                    d
                })
                .collect(),
        )
    })?;
    let spec: Spec = de::from_node(&root, "").map_err(|e| {
        let mut d = Diagnostic::new(e.message).at(file, e.mark.unwrap_or(root.mark));
        d.hint = e.hint;
        if let Some(a) = e.path.as_deref().and_then(address_of_path) {
            d = d.address(a);
        }
        Diagnostics::from(d)
    })?;
    let mut spec = spec;
    apply_conventions(&mut spec);
    let loaded = Loaded { spec, stage: stage.to_string(), file: file.to_string(), dir: dir.to_path_buf(), root };
    let problems = validate::check(&loaded);
    if problems.is_empty() { Ok(loaded) } else { Err(Diagnostics(problems)) }
}

/// Spells out shorthands: `connections_table` adds the table (when `true`) and
/// gives every route function read/write access and `CONNECTIONS_TABLE`.
fn apply_conventions(spec: &mut Spec) {
    for (api, ws) in spec.websockets.clone() {
        let Some(table) = ws.connections_table(&api) else { continue };
        if matches!(ws.connections_table, Some(ConnectionsTable::Enabled(true))) {
            spec.tables.entry(table.clone()).or_insert_with(|| TableSpec {
                partition_key: KeySpec { name: "connectionId".into(), key_type: KeyType::S },
                sort_key: None,
                ttl: Some("expiresAt".into()),
                stream: None,
                point_in_time_recovery: Some(false),
                deletion_protection: false,
                tags: BTreeMap::new(),
            });
        }
        for function in ws.routes.values() {
            if let Some(f) = spec.functions.get_mut(function) {
                f.access.tables.entry(table.clone()).or_insert(TableAccess::ReadWrite);
                f.environment.entry("CONNECTIONS_TABLE".into()).or_insert_with(|| format!("${{tables.{table}.name}}"));
            }
        }
    }
}

/// The JSON Schema of the spec format, as checked in at `schemas/slx.schema.json`.
///
/// References expand before values are typed, so wherever the format wants a
/// number, boolean or one of a set of names, a `${...}` reference is accepted too.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Spec);
    let mut v = serde_json::to_value(&schema).expect("schema serializes");
    allow_references(&mut v);
    v["$defs"]["Reference"] = serde_json::json!({
        "description": "A ${...} reference, expanded before the value is checked.",
        "type": "string",
        "pattern": "^\\$\\{[^}]+\\}$"
    });
    reference::annotate(&mut v);
    serde_json::to_string_pretty(&v).expect("schema serializes") + "\n"
}

/// The spec reference, `docs/spec.md`, generated from [`json_schema`].
pub fn reference_markdown() -> String {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).expect("the schema is JSON");
    reference::markdown(&schema)
}

fn allow_references(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                allow_references(child);
            }
            let types: Vec<&str> = match m.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let scalar = types.iter().any(|t| matches!(*t, "integer" | "number" | "boolean")) || m.contains_key("enum");
            if scalar {
                let description = m.remove("description");
                let default = m.remove("default");
                let inner = Value::Object(std::mem::take(m));
                m.insert("anyOf".into(), serde_json::json!([inner, { "$ref": "#/$defs/Reference" }]));
                if let Some(d) = description {
                    m.insert("description".into(), d);
                }
                if let Some(d) = default.filter(|d| !d.is_null()) {
                    m.insert("default".into(), d);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_references),
        _ => {}
    }
}

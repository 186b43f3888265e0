//! The resource model shared by graph, plan, provider and apply: kinds, the
//! desired/live configuration of each kind, and ownership tags.
//!
//! Configurations are plain serde structs. The planner diffs them as JSON, so
//! a field's name here is the name a plan shows; the provider converts them to
//! and from AWS API shapes. Omitted spec settings become AWS's defaults so a
//! hand edit of any field shows up as a difference.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TAG_STACK: &str = "slx:stack";
pub const TAG_STAGE: &str = "slx:stage";
pub const TAG_ADDRESS: &str = "slx:address";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Queue,
    Table,
    Bus,
    Role,
    LogGroup,
    Function,
    EventSource,
    Rule,
    WebSocket,
    Integration,
    Route,
    Stage,
    Deployment,
    Alias,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Queue,
        Kind::Table,
        Kind::Bus,
        Kind::Role,
        Kind::LogGroup,
        Kind::Function,
        Kind::EventSource,
        Kind::Rule,
        Kind::WebSocket,
        Kind::Integration,
        Kind::Route,
        Kind::Stage,
        Kind::Deployment,
        Kind::Alias,
    ];

    /// The first segment of this kind's addresses.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Table => "table",
            Kind::Bus => "bus",
            Kind::Role => "role",
            Kind::LogGroup => "log_group",
            Kind::Function => "function",
            Kind::EventSource => "event_source",
            Kind::Rule => "rule",
            Kind::WebSocket => "websocket",
            Kind::Integration => "integration",
            Kind::Route => "route",
            Kind::Stage => "stage",
            Kind::Deployment => "deployment",
            Kind::Alias => "alias",
        }
    }

    /// Deletion order: consumers before what they consume.
    pub fn delete_rank(self) -> u8 {
        match self {
            Kind::Rule | Kind::EventSource | Kind::Route | Kind::Deployment => 0,
            Kind::Alias => 1,
            Kind::Function | Kind::Integration | Kind::Stage => 1,
            Kind::LogGroup => 2,
            Kind::Role => 3,
            Kind::Queue | Kind::Table | Kind::Bus | Kind::WebSocket => 4,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.prefix())
    }
}

pub type Tags = BTreeMap<String, String>;

/// Who owns a live resource, per its `slx:` tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub stack: String,
    pub stage: String,
    pub address: String,
}

impl Owner {
    pub fn from_tags(tags: &Tags) -> Option<Owner> {
        Some(Owner {
            stack: tags.get(TAG_STACK)?.clone(),
            stage: tags.get(TAG_STAGE)?.clone(),
            address: tags.get(TAG_ADDRESS)?.clone(),
        })
    }

    pub fn tags(&self) -> Tags {
        Tags::from([
            (TAG_STACK.to_string(), self.stack.clone()),
            (TAG_STAGE.to_string(), self.stage.clone()),
            (TAG_ADDRESS.to_string(), self.address.clone()),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub fifo: bool,
    pub visibility_timeout: u64,
    pub retention: u64,
    pub delay: u64,
    pub receive_wait_time: u64,
    pub max_message_size: u64,
    pub content_based_deduplication: bool,
    pub dead_letter: Option<Redrive>,
    /// Resource policy: which rules may send to it (as a dead-letter queue).
    pub policy: Option<serde_json::Value>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redrive {
    pub queue_arn: String,
    pub max_receives: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleConfig {
    pub path: String,
    pub trust_policy: serde_json::Value,
    /// The role's one inline policy, named [`ROLE_POLICY_NAME`].
    pub policy: serde_json::Value,
    pub tags: Tags,
}

pub const ROLE_POLICY_NAME: &str = "slx";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogGroupConfig {
    pub retention_days: Option<u32>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub role: String,
    pub handler: String,
    pub runtime: String,
    /// Base64 SHA-256 of the deployment package, as Lambda reports `CodeSha256`.
    pub code_sha256: String,
    pub memory: u32,
    pub timeout: u64,
    pub ephemeral_storage: u32,
    pub architecture: String,
    pub description: String,
    pub environment: BTreeMap<String, String>,
    pub layers: Vec<String>,
    pub dead_letter_target: Option<String>,
    pub reserved_concurrency: Option<u32>,
    #[serde(rename = "async")]
    pub async_config: Option<AsyncConfig>,
    pub tags: Tags,
}

impl FunctionConfig {
    /// A fingerprint of what publishing a version freezes: the code and the
    /// settings a version keeps. An alias serves what `$LATEST` is exactly
    /// when its version's release is `$LATEST`'s.
    pub fn release(&self) -> String {
        use sha2::Digest;
        let frozen = serde_json::json!([
            self.code_sha256,
            self.handler,
            self.runtime,
            self.memory,
            self.timeout,
            self.role,
            self.environment,
            self.layers,
            self.ephemeral_storage,
            self.architecture,
        ]);
        sha2::Sha256::digest(frozen.to_string()).iter().take(12).map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsyncConfig {
    pub max_retries: u32,
    pub max_event_age: u64,
    pub on_failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableConfig {
    pub partition_key: KeyAttr,
    pub sort_key: Option<KeyAttr>,
    pub ttl: Option<String>,
    /// StreamViewType when the stream is on.
    pub stream: Option<String>,
    pub point_in_time_recovery: bool,
    pub deletion_protection: bool,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyAttr {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusConfig {
    pub tags: Tags,
}

/// A Lambda event source mapping. Fields a source kind does not have are None.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSourceConfig {
    pub function: String,
    pub source_arn: String,
    pub enabled: bool,
    pub batch_size: u32,
    pub batching_window: u64,
    pub starting_position: Option<String>,
    pub bisect_on_error: Option<bool>,
    pub max_retries: Option<i64>,
    pub maximum_record_age: Option<i64>,
    pub parallelization_factor: Option<u32>,
    pub tumbling_window: Option<u64>,
    pub on_failure: Option<String>,
    pub report_batch_item_failures: bool,
    pub max_concurrency: Option<u32>,
    pub filters: Vec<serde_json::Value>,
    pub tags: Tags,
}

/// An EventBridge rule with its one target (the function) and the function
/// permission that lets exactly this rule invoke it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleConfig {
    pub bus: String,
    pub schedule: Option<String>,
    pub pattern: Option<serde_json::Value>,
    pub enabled: bool,
    pub target: RuleTarget,
    pub permission: Permission,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTarget {
    pub arn: String,
    pub input: Option<String>,
    pub input_path: Option<String>,
    pub input_transformer: Option<InputTransformer>,
    pub max_retries: Option<u32>,
    pub max_event_age: Option<u64>,
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputTransformer {
    pub paths: BTreeMap<String, String>,
    pub template: String,
}

/// A statement in a function's resource policy: `principal` may invoke it from `source_arn` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Permission {
    pub function: String,
    /// The alias the statement is on, when the function has one.
    #[serde(default)]
    pub qualifier: Option<String>,
    pub statement_id: String,
    pub principal: String,
    pub source_arn: String,
}

/// An API Gateway WebSocket API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebSocketConfig {
    pub route_selection: String,
    pub description: String,
    pub tags: Tags,
}

/// The AWS_PROXY integration of one function. Integrations, routes and
/// deployments cannot be tagged: they carry their API's ownership tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationConfig {
    pub api_id: String,
    pub uri: String,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub api_id: String,
    pub route_key: String,
    /// The integration (by URI) the route targets.
    pub integration_uri: String,
    pub permission: Permission,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageConfig {
    pub api_id: String,
    pub stage_name: String,
    pub throttling: Option<StageThrottling>,
    pub access_log: Option<StageAccessLog>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageThrottling {
    pub burst: u32,
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageAccessLog {
    pub destination_arn: String,
    pub format: String,
}

/// The deployment a stage serves. `fingerprint` (stored as the deployment's
/// description) names the routes and integrations it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentConfig {
    pub api_id: String,
    pub stage_name: String,
    pub fingerprint: String,
    pub tags: Tags,
}

/// A function alias. `current` says whether the alias serves what the
/// function is now (its version matches `$LATEST`); keys starting with `_`
/// steer apply and are not compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasConfig {
    pub function: String,
    pub name: String,
    pub description: String,
    pub current: bool,
    /// Traffic on a second version (version → weight), mid-rollout only.
    pub routing: Option<BTreeMap<String, f64>>,
    pub provisioned_concurrency: Option<u32>,
    /// Async invocation settings, on the alias since invocations go through it.
    #[serde(rename = "async")]
    pub async_config: Option<AsyncConfig>,
    /// Aliases cannot be tagged: these are the function's ownership tags.
    pub tags: Tags,
    #[serde(rename = "_rollout", default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutConfig {
    pub steps: Vec<crate::rollout::Step>,
    pub alarms: Vec<String>,
    pub keep_versions: u32,
    /// False (`--no-wait`): stop at the first step; `promote` / `rollback` finish.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// Values other resources may reference once a resource exists (`url`, `arn`).
pub type Outputs = BTreeMap<String, String>;

/// A resource as it is in AWS now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Live {
    pub kind: Kind,
    pub name: String,
    /// Same shape as the desired config of this kind.
    pub config: serde_json::Value,
    pub outputs: Outputs,
    /// Why deleting it would lose data (e.g. "holds 3 messages"), if it would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// A function's aliases' async invocation configs (by alias name), read
    /// with the function in one call; `live::read` hands each to its alias.
    #[serde(skip)]
    #[schemars(skip)]
    pub alias_async: BTreeMap<String, AsyncConfig>,
}

/// The `tags` of a configuration (desired or live); none when absent.
pub fn tags_of(config: &serde_json::Value) -> Tags {
    config.get("tags").and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default()
}

impl Live {
    pub fn tags(&self) -> Tags {
        tags_of(&self.config)
    }

    pub fn owner(&self) -> Option<Owner> {
        Owner::from_tags(&self.tags())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_is_what_a_version_freezes() {
        let base = FunctionConfig {
            role: "arn:aws:iam::1:role/r".into(),
            handler: "app.handler".into(),
            runtime: "python3.12".into(),
            code_sha256: "abc=".into(),
            memory: 128,
            timeout: 3,
            ephemeral_storage: 512,
            architecture: "arm64".into(),
            description: String::new(),
            environment: BTreeMap::from([("A".into(), "1".into())]),
            layers: Vec::new(),
            dead_letter_target: None,
            reserved_concurrency: None,
            async_config: None,
            tags: Tags::new(),
        };
        let release = base.release();
        assert_eq!(release.len(), 24);
        let unfrozen = FunctionConfig {
            reserved_concurrency: Some(5),
            tags: Tags::from([("t".into(), "v".into())]),
            ..base.clone()
        };
        assert_eq!(unfrozen.release(), release, "concurrency and tags belong to the function, not a version");
        let changes = [
            FunctionConfig { code_sha256: "abd=".into(), ..base.clone() },
            FunctionConfig { memory: 256, ..base.clone() },
            FunctionConfig { environment: BTreeMap::from([("A".into(), "2".into())]), ..base.clone() },
            FunctionConfig { architecture: "x86_64".into(), ..base.clone() },
        ];
        for changed in changes {
            assert_ne!(changed.release(), release, "{changed:?}");
        }
    }
}

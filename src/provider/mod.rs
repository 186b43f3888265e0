//! The one seam between slx and AWS.
//!
//! Planning reads through [`Provider::list`] and [`Provider::read`]; applying
//! mutates through create / update / delete. Configurations cross the seam as
//! the JSON form of the structs in [`crate::resource`], so the planner and
//! the walker never see an SDK type. [`Aws`] implements it with one file per
//! service; tests can wrap it to add latency or faults.

mod apigateway;
mod dynamodb;
mod eventbridge;
mod iam;
mod lambda;
mod logs;
mod resilience;
mod sqs;

pub use dynamodb::RecordTable;
pub use resilience::{AlreadyExists, DEFAULT_MAX_ATTEMPTS};
pub(crate) use resilience::{create_unique, created};

use crate::package::Package;
use crate::resource::{Kind, Live, Outputs};
use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use serde_json::Value;
use std::collections::HashMap;

/// Who and where we are deploying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub region: String,
}

/// A resource found by listing: enough to read it, before knowing whose it is.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    /// The identifier the service wants for further calls (queue URL, ARN).
    pub id: String,
    /// Attributes the listing already returned, so reading needs fewer calls.
    pub extra: Value,
}

/// A resource to create or update, with its references resolved.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    pub address: &'a str,
    pub kind: Kind,
    pub name: &'a str,
    pub config: &'a Value,
    pub package: Option<&'a Package>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn identity(&self) -> Result<Identity>;

    /// Resources of `kind` whose physical names start with `prefix`.
    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Listed>>;

    /// Every kind's listing at once, by kind; kinds listed under the same
    /// parent (rules under buses, routes under APIs) share its calls.
    async fn list_all(&self, prefix: &str) -> Result<HashMap<Kind, Vec<Listed>>>;

    /// The live state of one resource, or None when it does not exist. An
    /// alias, never listed, may be given what the record recalls of it
    /// (`Listed::extra` holds its recorded outputs).
    async fn read(&self, kind: Kind, name: &str, listed: Option<&Listed>) -> Result<Option<Live>>;

    async fn create(&self, r: Desired<'_>) -> Result<Outputs>;

    /// Brings `prior` to `r`; `changed` names the top-level fields that differ.
    async fn update(&self, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs>;

    /// Deletes `prior`; refuses to destroy data (a queue holding messages) unless `force`.
    async fn delete(&self, prior: &Live, force: bool) -> Result<()>;

    /// Points a function alias at `version`, optionally with weight on a second one
    /// (`slx promote` / `slx rollback` finish a rollout with it).
    async fn route_alias(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        second: Option<(String, f64)>,
    ) -> Result<()>;
}

/// The API calls an action will make, for plans to name. `changed` as in [`Provider::update`].
pub fn planned_calls(kind: Kind, action: &str, changed: &[String]) -> Vec<String> {
    let calls: Vec<&str> = match (kind, action) {
        (Kind::Queue, "create") => vec!["sqs:CreateQueue"],
        (Kind::Queue, "delete") => vec!["sqs:GetQueueAttributes", "sqs:DeleteQueue"],
        (Kind::Queue, _) => sqs::update_calls(changed),
        (Kind::Role, "create") => vec!["iam:CreateRole", "iam:PutRolePolicy"],
        (Kind::Role, "delete") => {
            vec!["iam:ListRolePolicies", "iam:DeleteRolePolicy", "iam:ListAttachedRolePolicies", "iam:DeleteRole"]
        }
        (Kind::Role, _) => iam::update_calls(changed),
        (Kind::LogGroup, "create") => vec!["logs:CreateLogGroup", "logs:PutRetentionPolicy"],
        (Kind::LogGroup, "delete") => vec!["logs:DeleteLogGroup"],
        (Kind::LogGroup, _) => logs::update_calls(changed),
        (Kind::Function, "create") => {
            vec!["lambda:CreateFunction", "lambda:PutFunctionConcurrency", "lambda:PutFunctionEventInvokeConfig"]
        }
        (Kind::Function, "delete") => vec!["lambda:DeleteFunction"],
        (Kind::Function, _) => lambda::update_calls(changed),
        (Kind::Table, "create") => {
            vec!["dynamodb:CreateTable", "dynamodb:UpdateTimeToLive", "dynamodb:UpdateContinuousBackups"]
        }
        (Kind::Table, "delete") => vec!["dynamodb:Scan", "dynamodb:DeleteTable"],
        (Kind::Table, _) => dynamodb::update_calls(changed),
        (Kind::Bus, "create") => vec!["events:CreateEventBus"],
        (Kind::Bus, "delete") => vec!["events:DeleteEventBus"],
        (Kind::EventSource, "create") => vec!["lambda:CreateEventSourceMapping"],
        (Kind::EventSource, "delete") => vec!["lambda:DeleteEventSourceMapping"],
        (Kind::EventSource, _) => lambda::mapping_update_calls(changed),
        (Kind::Rule, "create") => vec!["events:PutRule", "events:PutTargets", "lambda:AddPermission"],
        (Kind::Rule, "delete") => vec!["lambda:RemovePermission", "events:RemoveTargets", "events:DeleteRule"],
        (k @ (Kind::Rule | Kind::Bus), _) => eventbridge::update_calls(k, changed),
        (Kind::WebSocket, "create") => vec!["apigateway:CreateApi"],
        (Kind::Integration, "create") => vec!["apigateway:CreateIntegration"],
        (Kind::Route, "create") => vec!["apigateway:GetIntegrations", "apigateway:CreateRoute", "lambda:AddPermission"],
        (Kind::Stage, "create") => vec!["apigateway:CreateStage"],
        (Kind::Deployment, "create") => vec!["apigateway:CreateDeployment"],
        (Kind::WebSocket, "delete") => vec!["apigateway:DeleteApi"],
        (Kind::Integration, "delete") => vec!["apigateway:DeleteIntegration"],
        (Kind::Route, "delete") => vec!["lambda:RemovePermission", "apigateway:DeleteRoute"],
        (Kind::Stage, "delete") => vec!["apigateway:DeleteStage"],
        (Kind::Deployment, "delete") => vec![],
        (Kind::Alias, "create") => {
            vec!["lambda:PublishVersion", "lambda:CreateAlias", "lambda:PutProvisionedConcurrencyConfig"]
        }
        (Kind::Alias, "delete") => vec!["lambda:DeleteAlias"],
        (Kind::Alias, _) => lambda::alias_update_calls(changed),
        (k @ (Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment), _) => {
            apigateway::update_calls(k, changed)
        }
    };
    calls.into_iter().map(String::from).collect()
}

/// Where to reach AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

impl Aws {
    /// The deployment record table of this account and region.
    pub fn record(&self, table: &str) -> RecordTable {
        RecordTable { client: self.dynamodb.clone(), table: table.to_string() }
    }
}

/// The AWS implementation of [`Provider`].
pub struct Aws {
    lambda: aws_sdk_lambda::Client,
    sqs: aws_sdk_sqs::Client,
    iam: aws_sdk_iam::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    apigateway: aws_sdk_apigatewayv2::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    events: aws_sdk_eventbridge::Client,
    sts: aws_sdk_sts::Client,
    region: String,
    /// The endpoint override (an emulator), for messages.
    endpoint: Option<String>,
}

impl Aws {
    pub async fn connect(opts: &AwsOptions) -> Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(resilience::retry_config()?);
        if let Some(r) = &opts.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(u) = &opts.endpoint_url {
            loader = loader.endpoint_url(u);
        }
        Aws::new(&loader.load().await)
    }

    /// Builds the provider from an SDK configuration the caller assembled;
    /// each service's client gets its own cap on calls in flight, around the
    /// configuration's HTTP client (usually none: then the SDK's default).
    pub fn new(config: &aws_config::SdkConfig) -> Result<Aws> {
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            anyhow!("no AWS region is configured\nhint: set `region:` in the spec, pass --region, or export AWS_REGION")
        })?;
        let http = config.http_client().unwrap_or_else(resilience::https_client);
        let limited = |service: &str| {
            let capped = resilience::Limited::new(http.clone(), resilience::concurrency(service));
            config.to_builder().http_client(capped).build()
        };
        Ok(Aws {
            lambda: aws_sdk_lambda::Client::new(&limited("lambda")),
            sqs: aws_sdk_sqs::Client::new(&limited("sqs")),
            iam: aws_sdk_iam::Client::new(&limited("iam")),
            logs: aws_sdk_cloudwatchlogs::Client::new(&limited("logs")),
            dynamodb: aws_sdk_dynamodb::Client::new(&limited("dynamodb")),
            apigateway: aws_sdk_apigatewayv2::Client::new(&limited("apigateway")),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&limited("cloudwatch")),
            events: aws_sdk_eventbridge::Client::new(&limited("events")),
            sts: aws_sdk_sts::Client::new(&limited("sts")),
            region,
            endpoint: config.endpoint_url().map(String::from),
        })
    }
}

#[async_trait]
impl Provider for Aws {
    async fn route_alias(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        second: Option<(String, f64)>,
    ) -> Result<()> {
        let second = second.as_ref().map(|(v, w)| (v.as_str(), *w));
        lambda::route_alias(&self.lambda, function, alias, version, second).await.map(|_revision| ())
    }

    async fn identity(&self) -> Result<Identity> {
        let out = self.sts.get_caller_identity().send().await.map_err(|e| {
            // The credentials chain reports through the dispatch error; its
            // type lives in a crate slx does not name, so match its name.
            if format!("{e:?}").contains("CredentialsNotLoaded") {
                return anyhow!(
                    "no AWS credentials found (environment, profile, web identity, container and instance metadata were tried)\nhint: run `aws sso login` or `aws configure`, set AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; for the local emulator any values work, e.g. `testing`"
                );
            }
            if is_dispatch_failure(&e) {
                let endpoint = self.endpoint.as_ref().map(|u| format!(" at {u}")).unwrap_or_default();
                return anyhow!(
                    "cannot reach AWS{endpoint}: {}\nhint: check the network and --endpoint-url / AWS_ENDPOINT_URL; for the local emulator, start it with `scripts/emulator --port 5000`",
                    short_dispatch_error(&e)
                );
            }
            aws_error("sts:GetCallerIdentity", &e).context(
                "cannot determine the AWS account\nhint: check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, or `aws sso login`)",
            )
        })?;
        let account = out.account().context("sts:GetCallerIdentity returned no account")?.to_string();
        Ok(Identity { account, region: self.region.clone() })
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Listed>> {
        match kind {
            Kind::Queue => sqs::list(&self.sqs, prefix).await,
            Kind::Role => iam::list(&self.iam, prefix).await,
            Kind::LogGroup => logs::list(&self.logs, prefix).await,
            Kind::Function => lambda::list(&self.lambda, prefix).await,
            Kind::Table => dynamodb::list(&self.dynamodb, prefix).await,
            Kind::Bus => eventbridge::list_buses(&self.events, prefix).await,
            Kind::EventSource => lambda::list_mappings(&self.lambda, prefix).await,
            Kind::Rule => Ok(eventbridge::list_buses_and_rules(&self.events, prefix).await?.1),
            k @ (Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment) => {
                let listed = apigateway::list(&self.apigateway, &self.lambda, &[k], prefix).await?;
                Ok(listed.into_iter().map(|(_, l)| l).collect())
            }
            // Read by name: listing would cost a call per function.
            Kind::Alias => Ok(Vec::new()),
        }
    }

    async fn list_all(&self, prefix: &str) -> Result<HashMap<Kind, Vec<Listed>>> {
        const API: [Kind; 5] = [Kind::WebSocket, Kind::Integration, Kind::Route, Kind::Stage, Kind::Deployment];
        let (queues, roles, log_groups, functions, tables, mappings, (buses, rules), apis) = tokio::try_join!(
            self.list(Kind::Queue, prefix),
            self.list(Kind::Role, prefix),
            self.list(Kind::LogGroup, prefix),
            self.list(Kind::Function, prefix),
            self.list(Kind::Table, prefix),
            self.list(Kind::EventSource, prefix),
            eventbridge::list_buses_and_rules(&self.events, prefix),
            apigateway::list(&self.apigateway, &self.lambda, &API, prefix),
        )?;
        let mut all = HashMap::from([
            (Kind::Queue, queues),
            (Kind::Role, roles),
            (Kind::LogGroup, log_groups),
            (Kind::Function, functions),
            (Kind::Table, tables),
            (Kind::EventSource, mappings),
            (Kind::Bus, buses),
            (Kind::Rule, rules),
            (Kind::Alias, Vec::new()),
        ]);
        all.extend(API.map(|k| (k, Vec::new())));
        for (k, listed) in apis {
            all.entry(k).or_default().push(listed);
        }
        debug_assert!(Kind::ALL.iter().all(|k| all.contains_key(k)), "every kind is listed");
        Ok(all)
    }

    async fn read(&self, kind: Kind, name: &str, listed: Option<&Listed>) -> Result<Option<Live>> {
        match kind {
            Kind::Queue => sqs::read(&self.sqs, name, listed).await,
            Kind::Role => iam::read(&self.iam, name).await,
            Kind::LogGroup => logs::read(&self.logs, name, listed).await,
            Kind::Function => lambda::read(&self.lambda, name).await,
            Kind::Table => dynamodb::read(&self.dynamodb, name, listed).await,
            Kind::Bus => eventbridge::read_bus(&self.events, name, listed).await,
            Kind::EventSource => lambda::read_mapping(&self.lambda, name, listed).await,
            Kind::Rule => eventbridge::read_rule(&self.events, &self.lambda, name, listed).await,
            k @ (Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment) => {
                apigateway::read(k, name, listed)
            }
            Kind::Alias => {
                let recalled: Option<Outputs> = listed.and_then(|l| serde_json::from_value(l.extra.clone()).ok());
                lambda::read_alias(&self.lambda, name, recalled.as_ref()).await
            }
        }
    }

    async fn create(&self, r: Desired<'_>) -> Result<Outputs> {
        let result = match r.kind {
            Kind::Queue => sqs::create(&self.sqs, r).await,
            Kind::Role => iam::create(&self.iam, r).await,
            Kind::LogGroup => logs::create(&self.logs, r).await,
            Kind::Function => lambda::create(&self.lambda, r).await,
            Kind::Table => dynamodb::create(&self.dynamodb, r).await,
            Kind::Bus => eventbridge::create_bus(&self.events, r).await,
            Kind::EventSource => lambda::create_mapping(&self.lambda, r).await,
            Kind::Rule => eventbridge::create_rule(&self.events, &self.lambda, r).await,
            Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment => {
                apigateway::create(&self.apigateway, &self.lambda, r).await
            }
            Kind::Alias => lambda::create_alias(&self.lambda, r).await,
        };
        result.with_context(|| format!("creating {}", r.address))
    }

    async fn update(&self, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
        let result = match r.kind {
            Kind::Queue => sqs::update(&self.sqs, r, prior, changed).await,
            Kind::Role => iam::update(&self.iam, r, prior, changed).await,
            Kind::LogGroup => logs::update(&self.logs, r, prior, changed).await,
            Kind::Function => lambda::update(&self.lambda, r, prior, changed).await,
            Kind::Table => dynamodb::update(&self.dynamodb, r, prior, changed).await,
            Kind::Bus => eventbridge::update_bus(&self.events, r, prior).await,
            Kind::EventSource => lambda::update_mapping(&self.lambda, r, prior, changed).await,
            Kind::Rule => eventbridge::update_rule(&self.events, &self.lambda, r, prior, changed).await,
            Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment => {
                apigateway::update(&self.apigateway, &self.lambda, &self.region, r, prior, changed).await
            }
            Kind::Alias => lambda::update_alias(&self.lambda, &self.cloudwatch, r, prior, changed).await,
        };
        result.with_context(|| format!("updating {}", r.address))
    }

    async fn delete(&self, prior: &Live, force: bool) -> Result<()> {
        match prior.kind {
            Kind::Queue => sqs::delete(&self.sqs, prior, force).await,
            Kind::Role => iam::delete(&self.iam, prior).await,
            Kind::LogGroup => logs::delete(&self.logs, prior).await,
            Kind::Function => lambda::delete(&self.lambda, prior).await,
            Kind::Table => dynamodb::delete(&self.dynamodb, prior, force).await,
            Kind::Bus => eventbridge::delete_bus(&self.events, prior).await,
            Kind::EventSource => lambda::delete_mapping(&self.lambda, prior).await,
            Kind::Rule => eventbridge::delete_rule(&self.events, &self.lambda, prior).await,
            Kind::WebSocket | Kind::Integration | Kind::Route | Kind::Stage | Kind::Deployment => {
                apigateway::delete(&self.apigateway, &self.lambda, prior).await
            }
            Kind::Alias => lambda::delete_alias(&self.lambda, prior).await,
        }
    }
}

/// An SDK error as one line: the operation, the AWS error code and message;
/// for an error the SDK retried, how many attempts it made and what to do.
pub(crate) fn aws_error<E, R>(op: &str, e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> anyhow::Error
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let what = match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        _ if is_dispatch_failure(e) => short_dispatch_error(e),
        _ => aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    };
    match resilience::gave_up(e) {
        Some(why) => anyhow!("{op} failed: {what}; {why}"),
        None => anyhow!("{op} failed: {what}"),
    }
}

/// The result of a delete, where `not_found` (already gone) counts as done.
pub(crate) fn deleted<T, E, R>(
    result: Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
    not_found: &str,
    op: &str,
) -> Result<()>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e) == Some(not_found) => Ok(()),
        Err(e) => Err(aws_error(op, &e)),
    }
}

pub(crate) fn error_code<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> Option<&str>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    e.code()
}

/// The innermost cause of a dispatch failure ("Connection refused"), without the SDK's debug dump.
fn short_dispatch_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn is_dispatch_failure<E, R>(e: &aws_smithy_runtime_api::client::result::SdkError<E, R>) -> bool {
    matches!(
        e,
        aws_smithy_runtime_api::client::result::SdkError::DispatchFailure(_)
            | aws_smithy_runtime_api::client::result::SdkError::TimeoutError(_)
    )
}

/// Tags to add or change, and keys to remove, to turn `live` into `desired`.
pub(crate) fn tag_changes(
    desired: &crate::resource::Tags,
    live: &crate::resource::Tags,
) -> (crate::resource::Tags, Vec<String>) {
    let add = desired.iter().filter(|(k, v)| live.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let remove = live.keys().filter(|k| !desired.contains_key(*k) && !k.starts_with("aws:")).cloned().collect();
    (add, remove)
}

pub(crate) fn config_of<T: serde::de::DeserializeOwned>(r: &Desired<'_>) -> Result<T> {
    serde_json::from_value(r.config.clone()).with_context(|| format!("internal: bad {} configuration", r.kind))
}

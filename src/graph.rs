//! Spec → resources with addresses, dependency edges and a topological order.
//!
//! Configurations are built as templates: any string may still hold
//! `${...}` references, and every reference is an edge. [`Graph::resolve`]
//! turns a template into concrete values once the referenced values are known.
//! Ordering is deterministic (ties broken by address) and a cycle is an error
//! naming the cycle.

use crate::diag::{Diagnostic, Diagnostics};
use crate::package::Package;
use crate::resource::*;
use crate::spec::interp::{self, Part, Ref};
use crate::spec::{EventSpec, Loaded, QueueAccess, StreamSource, TableAccess};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// Shown in place of a value that only exists after apply (a new queue's URL).
pub const UNKNOWN: &str = "(known after apply)";

#[derive(Debug, Clone)]
pub struct Resource {
    pub address: String,
    pub kind: Kind,
    /// Physical name in AWS.
    pub name: String,
    /// Desired configuration; strings may hold `${...}` references.
    pub config: Value,
    pub deps: BTreeSet<String>,
    /// The function's deployment package.
    pub package: Option<Arc<Package>>,
    /// Where in the spec this resource is declared, for errors.
    pub spec_path: String,
    /// Address prefixes: a change to any resource under them re-applies this
    /// one (a WebSocket deployment after its routes change).
    pub triggers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub stack: String,
    pub stage: String,
    /// In dependency order.
    pub resources: Vec<Resource>,
    /// What a targeted run was limited to ([`Graph::select`]); empty for the
    /// whole stack. A partial graph has no view of the rest of the stack, so
    /// nothing outside it is read, deleted or forgotten.
    pub targets: Vec<String>,
    index: HashMap<String, usize>,
}

/// Identity facts that references resolve against.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub account: String,
    pub region: String,
    /// Outputs of resources that exist (from live reads or from apply).
    pub outputs: HashMap<String, Outputs>,
}

impl Graph {
    /// A graph that wants nothing: planning against it deletes everything owned.
    pub fn empty(stack: &str, stage: &str) -> Graph {
        Graph::of(stack, stage, Vec::new())
    }

    /// A graph of `resources`, which are in dependency order.
    fn of(stack: &str, stage: &str, resources: Vec<Resource>) -> Graph {
        let index = resources.iter().enumerate().map(|(i, r)| (r.address.clone(), i)).collect();
        Graph { stack: stack.to_string(), stage: stage.to_string(), resources, targets: Vec::new(), index }
    }

    /// The part of the graph a targeted run works on. A target is a resource
    /// address (`function.api`) or a spec entry (`functions.api`: everything
    /// it declares). The selection also holds what re-applies after a
    /// selected resource changes (a function's aliases publish its new code)
    /// and everything those depend on, so references resolve and anything
    /// missing is created.
    pub fn select(&self, targets: &[String]) -> Result<Graph, Diagnostic> {
        let mut wanted: BTreeSet<&str> = BTreeSet::new();
        for t in targets {
            let hits: Vec<&str> = self
                .resources
                .iter()
                .filter(|r| r.address == *t || r.spec_path == *t)
                .map(|r| r.address.as_str())
                .collect();
            if hits.is_empty() {
                let names = self.resources.iter().flat_map(|r| [r.address.as_str(), r.spec_path.as_str()]);
                let hint = match crate::diag::did_you_mean(t, names) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "a target is an address as `slx plan` lists them (`function.api`) or a spec entry (`functions.api`)".to_string(),
                };
                return Err(Diagnostic::new(format!(
                    "--target `{t}` names nothing in stack {} stage {}",
                    self.stack, self.stage
                ))
                .hint(hint));
            }
            wanted.extend(hits);
        }
        // Each selected resource brings in what it needs and what re-applies after it.
        let mut open: Vec<&str> = wanted.iter().copied().collect();
        while let Some(a) = open.pop() {
            let needs =
                self.get(a).into_iter().flat_map(|r| &r.deps).map(String::as_str).filter(|d| self.get(d).is_some());
            let triggered = self
                .resources
                .iter()
                .filter(|r| r.triggers.iter().any(|t| trigger_matches(t, a)))
                .map(|r| r.address.as_str());
            for next in needs.chain(triggered) {
                if wanted.insert(next) {
                    open.push(next);
                }
            }
        }
        let resources = self.resources.iter().filter(|r| wanted.contains(r.address.as_str())).cloned().collect();
        let mut graph = Graph::of(&self.stack, &self.stage, resources);
        graph.targets = targets.to_vec();
        Ok(graph)
    }

    /// What users look up after a deploy: WebSocket URLs, queue URLs, function
    /// and table ARNs, resolved like any reference (unknown ones are left out).
    pub fn outputs(&self, facts: &Facts) -> Value {
        let mut out = serde_json::Map::new();
        for r in &self.resources {
            let (section, attrs): (&str, &[&str]) = match r.kind {
                Kind::WebSocket => ("websockets", &["url", "callback_url", "id"]),
                Kind::Queue => ("queues", &["url", "arn"]),
                Kind::Function => ("functions", &["arn"]),
                Kind::Table => ("tables", &["name", "arn", "stream_arn"]),
                _ => continue,
            };
            let name = r.address.split_once('.').map_or("", |(_, n)| n);
            let mut values = serde_json::Map::new();
            for attr in attrs {
                let reference = format!("${{{section}.{name}.{attr}}}");
                if let Some(v) = self.reference_str(&reference, facts) {
                    values.insert(attr.to_string(), Value::String(v));
                }
            }
            out.entry(section).or_insert_with(|| json!({}))[name] = Value::Object(values);
        }
        Value::Object(out)
    }

    fn reference_str(&self, template: &str, facts: &Facts) -> Option<String> {
        let mut unknown = false;
        let v = self.resolve_str(template, facts, &mut unknown);
        (!unknown).then_some(v)
    }

    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.index.get(address).map(|&i| &self.resources[i])
    }

    /// Replaces every reference in `template` by its value. Values that only
    /// exist after apply become [`UNKNOWN`]; the bool says whether any did.
    pub fn resolve(&self, template: &Value, facts: &Facts) -> (Value, bool) {
        let mut unknown = false;
        let v = self.resolve_value(template, facts, &mut unknown);
        (v, unknown)
    }

    fn resolve_value(&self, v: &Value, facts: &Facts, unknown: &mut bool) -> Value {
        match v {
            Value::String(s) => Value::String(self.resolve_str(s, facts, unknown)),
            Value::Array(items) => Value::Array(items.iter().map(|i| self.resolve_value(i, facts, unknown)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), self.resolve_value(v, facts, unknown))).collect())
            }
            other => other.clone(),
        }
    }

    fn resolve_str(&self, s: &str, facts: &Facts, unknown: &mut bool) -> String {
        if !s.contains('$') {
            return s.to_string();
        }
        let Ok(parts) = interp::parse(s) else { return s.to_string() };
        let mut out = String::new();
        for p in parts {
            match p {
                Part::Text(t) => out.push_str(&t),
                Part::Ref(r) => match self.reference(&r, facts) {
                    Some(v) => out.push_str(&v),
                    None => {
                        *unknown = true;
                        return UNKNOWN.to_string();
                    }
                },
            }
        }
        out
    }

    fn reference(&self, r: &Ref, facts: &Facts) -> Option<String> {
        match r {
            Ref::Aws(a) if a == "account_id" => Some(facts.account.clone()),
            Ref::Aws(_) => Some(facts.region.clone()),
            Ref::Resource { section, name, attr } => {
                let address = format!("{}.{name}", section_kind(section)?.prefix());
                let res = self.get(&address)?;
                match (res.kind, attr.as_str()) {
                    (_, "name") => Some(res.name.clone()),
                    (Kind::Queue, "arn") => {
                        Some(format!("arn:aws:sqs:{}:{}:{}", facts.region, facts.account, res.name))
                    }
                    (Kind::Function, "arn") => {
                        Some(format!("arn:aws:lambda:{}:{}:function:{}", facts.region, facts.account, res.name))
                    }
                    (Kind::Table, "arn") => {
                        Some(format!("arn:aws:dynamodb:{}:{}:table/{}", facts.region, facts.account, res.name))
                    }
                    (Kind::Bus, "arn") => {
                        Some(format!("arn:aws:events:{}:{}:event-bus/{}", facts.region, facts.account, res.name))
                    }
                    (Kind::WebSocket, "url" | "callback_url") => {
                        let id = facts.outputs.get(&address)?.get("id")?;
                        let stage = self.get(&format!("stage.{name}"))?.config["stage_name"].as_str()?.to_string();
                        let scheme = if attr == "url" { "wss" } else { "https" };
                        Some(format!("{scheme}://{id}.execute-api.{}.amazonaws.com/{stage}", facts.region))
                    }
                    _ => facts.outputs.get(&address)?.get(attr).cloned(),
                }
            }
            _ => None,
        }
    }
}

fn section_kind(section: &str) -> Option<Kind> {
    match section {
        "queues" => Some(Kind::Queue),
        "functions" => Some(Kind::Function),
        "tables" => Some(Kind::Table),
        "buses" => Some(Kind::Bus),
        "websockets" => Some(Kind::WebSocket),
        _ => None,
    }
}

/// Addresses a template refers to.
fn ref_deps(template: &Value, out: &mut BTreeSet<String>) {
    match template {
        Value::String(s) if s.contains("${") => {
            for r in interp::references(s) {
                if let Ref::Resource { section, name, .. } = r
                    && let Some(k) = section_kind(&section)
                {
                    out.insert(format!("{}.{name}", k.prefix()));
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| ref_deps(i, out)),
        Value::Object(m) => m.values().for_each(|v| ref_deps(v, out)),
        _ => {}
    }
}

struct Builder<'a> {
    l: &'a Loaded,
    resources: Vec<Resource>,
}

impl Builder<'_> {
    /// How callers invoke `function`: through its alias when it has one, so
    /// moving the alias moves all traffic. Returns the ARN template, the alias,
    /// and the address callers must wait for.
    fn invoke_target(&self, function: &str) -> (String, Option<String>, String) {
        let arn = format!("${{functions.{function}.arn}}");
        match self.l.function(function).alias {
            Some(a) => (format!("{arn}:{}", a.name), Some(a.name.clone()), format!("alias.{function}.{}", a.name)),
            None => (arn, None, format!("function.{function}")),
        }
    }

    fn tags(&self, address: &str, user: &Tags) -> Tags {
        let mut t = user.clone();
        t.extend(
            Owner { stack: self.l.spec.stack.clone(), stage: self.l.stage.clone(), address: address.to_string() }
                .tags(),
        );
        t
    }

    fn add(
        &mut self,
        kind: Kind,
        key: &str,
        name: String,
        config: Value,
        mut deps: BTreeSet<String>,
        spec_path: String,
    ) {
        let address = format!("{}.{key}", kind.prefix());
        ref_deps(&config, &mut deps);
        self.resources.push(Resource {
            address,
            kind,
            name,
            config,
            deps,
            package: None,
            spec_path,
            triggers: Vec::new(),
        });
    }
}

fn queue_arn(name: &str) -> String {
    format!("${{queues.{name}.arn}}")
}

const ACCOUNT_REGION: &str = "${aws:region}:${aws:account_id}";

/// The ARN of a rule; rules on custom buses carry the bus name.
fn rule_arn(bus: &str, rule: &str) -> String {
    if bus == "default" {
        format!("arn:aws:events:{ACCOUNT_REGION}:rule/{rule}")
    } else {
        format!("arn:aws:events:{ACCOUNT_REGION}:rule/{bus}/{rule}")
    }
}

/// What one function's events and grants add to the graph and to its role.
#[derive(Default)]
struct Grants {
    send: BTreeSet<String>,
    consume: BTreeSet<String>,
    publish: BTreeSet<String>,
    invoke: BTreeSet<String>,
    stream_read: BTreeSet<String>,
    kinesis_read: BTreeSet<String>,
    table_read: BTreeSet<String>,
    table_write: BTreeSet<String>,
    manage_connections: BTreeSet<String>,
}

impl Grants {
    fn statements(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut grant = |sid: &str, actions: &[&str], resources: &BTreeSet<String>| {
            if !resources.is_empty() {
                out.push(json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources }));
            }
        };
        grant("SendToQueues", &["sqs:SendMessage"], &self.send);
        grant(
            "ConsumeQueues",
            &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
            &self.consume,
        );
        grant("PublishToTopics", &["sns:Publish"], &self.publish);
        grant("InvokeFunctions", &["lambda:InvokeFunction"], &self.invoke);
        grant(
            "ReadTableStreams",
            &["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
            &self.stream_read,
        );
        grant(
            "ReadKinesisStreams",
            &[
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
                "kinesis:SubscribeToShard",
            ],
            &self.kinesis_read,
        );
        grant(
            "ReadTables",
            &[
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:Query",
                "dynamodb:Scan",
                "dynamodb:ConditionCheckItem",
            ],
            &self.table_read,
        );
        grant("ManageConnections", &["execute-api:ManageConnections"], &self.manage_connections);
        grant(
            "WriteTables",
            &["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"],
            &self.table_write,
        );
        out
    }
}

fn table_arn(physical: &str) -> String {
    format!("arn:aws:dynamodb:{ACCOUNT_REGION}:table/{physical}")
}

/// Builds the resource graph. `packages` maps each function's code path to its package.
pub fn build(l: &Loaded, packages: &HashMap<PathBuf, Arc<Package>>) -> Result<Graph, Diagnostics> {
    let mut b = Builder { l, resources: Vec::new() };
    let spec = &l.spec;
    for (name, q) in &spec.queues {
        let address = format!("queue.{name}");
        let config = QueueConfig {
            fifo: q.fifo,
            visibility_timeout: q.visibility_timeout.map_or(30, |d| d.0),
            retention: q.retention.map_or(345_600, |d| d.0),
            delay: q.delay.map_or(0, |d| d.0),
            receive_wait_time: q.receive_wait_time.map_or(0, |d| d.0),
            max_message_size: q.max_message_size.map_or(1_048_576, u64::from),
            content_based_deduplication: q.content_based_deduplication.unwrap_or(false),
            dead_letter: q
                .dead_letter
                .as_ref()
                .map(|d| Redrive { queue_arn: queue_arn(&d.queue), max_receives: d.max_receives }),
            policy: None,
            tags: b.tags(&address, &q.tags),
        };
        let deps = q.dead_letter.iter().map(|d| format!("queue.{}", d.queue)).collect();
        b.add(
            Kind::Queue,
            name,
            l.queue_physical_name(name),
            serde_json::to_value(config).unwrap(),
            deps,
            format!("queues.{name}"),
        );
    }
    for (name, t) in &spec.tables {
        let address = format!("table.{name}");
        let key = |k: &crate::spec::KeySpec| KeyAttr { name: k.name.clone(), key_type: format!("{:?}", k.key_type) };
        let config = TableConfig {
            partition_key: key(&t.partition_key),
            sort_key: t.sort_key.as_ref().map(key),
            ttl: t.ttl.clone(),
            stream: t.stream.map(|s| s.aws().to_string()),
            point_in_time_recovery: t.point_in_time_recovery.unwrap_or(true),
            deletion_protection: t.deletion_protection,
            tags: b.tags(&address, &t.tags),
        };
        let value = serde_json::to_value(config).unwrap();
        b.add(Kind::Table, name, l.physical_name(name), value, BTreeSet::new(), format!("tables.{name}"));
    }
    for (name, bus) in &spec.buses {
        let config = BusConfig { tags: b.tags(&format!("bus.{name}"), &bus.tags) };
        let value = serde_json::to_value(config).unwrap();
        b.add(Kind::Bus, name, l.physical_name(name), value, BTreeSet::new(), format!("buses.{name}"));
    }
    // Queue → rules that may send to it as their dead-letter queue.
    let mut queue_senders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in spec.functions.keys() {
        let f = l.function(name);
        let physical = l.physical_name(name);
        let address = format!("function.{name}");
        let tags = b.tags(&address, &f.tags);
        let spec_path = format!("functions.{name}");

        let log_group = format!("/aws/lambda/{physical}");
        let log_config = LogGroupConfig {
            retention_days: f.log_retention_days,
            tags: b.tags(&format!("log_group.{name}"), &f.tags),
        };
        b.add(
            Kind::LogGroup,
            name,
            log_group.clone(),
            serde_json::to_value(log_config).unwrap(),
            BTreeSet::new(),
            spec_path.clone(),
        );

        let async_target = |target: &str| -> (String, Option<String>) {
            if target.starts_with("arn:") {
                (target.to_string(), None)
            } else {
                (queue_arn(target), Some(format!("queue.{target}")))
            }
        };
        let mut fn_deps: BTreeSet<String> = [format!("role.{name}"), format!("log_group.{name}")].into();
        let mut statements = vec![json!({
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [format!("arn:aws:logs:${{aws:region}}:${{aws:account_id}}:log-group:{log_group}:*")],
        })];
        let mut g = Grants::default();
        let dead_letter_target = f.dead_letter_queue.as_deref().map(|t| {
            let (arn, dep) = async_target(t);
            fn_deps.extend(dep);
            if arn.contains(":sns:") {
                g.publish.insert(arn.clone())
            } else {
                g.send.insert(arn.clone())
            };
            arn
        });
        let async_config = f.async_config.as_ref().map(|a| {
            let on_failure = a.on_failure.as_ref().and_then(|d| {
                if let Some(q) = &d.queue {
                    let (arn, dep) = async_target(q);
                    fn_deps.extend(dep);
                    g.send.insert(arn.clone());
                    Some(arn)
                } else if let Some(target) = &d.function {
                    let arn = format!("${{functions.{target}.arn}}");
                    fn_deps.insert(format!("function.{target}"));
                    g.invoke.insert(arn.clone());
                    Some(arn)
                } else if let Some(t) = &d.topic_arn {
                    g.publish.insert(t.clone());
                    Some(t.clone())
                } else {
                    None
                }
            });
            AsyncConfig {
                max_retries: a.max_retries.unwrap_or(2),
                max_event_age: a.max_event_age.map_or(21_600, |d| d.0),
                on_failure,
            }
        });
        for (q, access) in &f.access.queues {
            if matches!(access, QueueAccess::Send | QueueAccess::SendConsume) {
                g.send.insert(queue_arn(q));
            }
            if matches!(access, QueueAccess::Consume | QueueAccess::SendConsume) {
                g.consume.insert(queue_arn(q));
            }
        }
        for (t, access) in &f.access.tables {
            let arn = table_arn(&l.physical_name(t));
            let targets = [arn.clone(), format!("{arn}/index/*")];
            if matches!(access, TableAccess::Read | TableAccess::ReadWrite) {
                g.table_read.extend(targets.clone());
            }
            if matches!(access, TableAccess::Write | TableAccess::ReadWrite) {
                g.table_write.extend(targets);
            }
        }
        for ws in f.access.websockets.keys() {
            let stage = spec.websockets[ws].stage.clone().unwrap_or_else(|| l.stage.clone());
            g.manage_connections.insert(format!(
                "arn:aws:execute-api:{ACCOUNT_REGION}:${{websockets.{ws}.id}}/{stage}/POST/@connections/*"
            ));
        }
        for event in &f.events {
            add_event(&mut b, name, event, &mut g, &mut queue_senders);
        }
        statements.extend(g.statements());
        for (i, p) in f.permissions.iter().enumerate() {
            statements.push(
                json!({ "Sid": format!("Custom{i}"), "Effect": "Allow", "Action": p.allow, "Resource": p.resources }),
            );
        }
        let role = RoleConfig {
            path: format!("/slx/{}/{}/", spec.stack, l.stage),
            trust_policy: json!({
                "Version": "2012-10-17",
                "Statement": [{ "Effect": "Allow", "Principal": { "Service": "lambda.amazonaws.com" }, "Action": "sts:AssumeRole" }],
            }),
            policy: json!({ "Version": "2012-10-17", "Statement": statements }),
            tags: b.tags(&format!("role.{name}"), &f.tags),
        };
        b.add(
            Kind::Role,
            name,
            physical.clone(),
            serde_json::to_value(&role).unwrap(),
            BTreeSet::new(),
            spec_path.clone(),
        );

        let code = l.dir.join(f.code.as_deref().unwrap_or_default());
        let package = packages.get(&code).cloned();
        let config = FunctionConfig {
            role: format!("arn:aws:iam::${{aws:account_id}}:role{}{physical}", role.path),
            handler: f.handler.clone().unwrap_or_default(),
            runtime: f.runtime.clone().unwrap_or_default(),
            code_sha256: package.as_ref().map(|p| p.sha256.clone()).unwrap_or_default(),
            memory: f.memory.unwrap_or(128),
            timeout: f.timeout.map_or(3, |d| d.0),
            ephemeral_storage: f.ephemeral_storage.unwrap_or(512),
            architecture: f.architecture.map_or("x86_64", |a| a.as_str()).to_string(),
            description: f.description.clone().unwrap_or_default(),
            environment: f.environment.clone(),
            layers: f.layers.clone().unwrap_or_default(),
            dead_letter_target,
            reserved_concurrency: f.reserved_concurrency,
            // With an alias, async settings live on the alias (invocations go through it).
            async_config: if f.alias.is_some() { None } else { async_config.clone() },
            tags,
        };
        b.add(
            Kind::Function,
            name,
            physical.clone(),
            serde_json::to_value(config).unwrap(),
            fn_deps,
            spec_path.clone(),
        );
        b.resources.last_mut().unwrap().package = package;
        if let Some(a) = &f.alias {
            let rollout = a.deployment.as_ref();
            let strategy = rollout.map_or(crate::rollout::Strategy::AllAtOnce, |d| d.strategy);
            let steps = crate::rollout::schedule(
                strategy,
                rollout.map_or(&[][..], |d| &d.steps),
                rollout.and_then(|d| d.interval).map_or(300, |i| i.0),
            );
            let config = AliasConfig {
                function: physical.clone(),
                name: a.name.clone(),
                description: a.description.clone().unwrap_or_default(),
                current: true,
                routing: None,
                provisioned_concurrency: a.provisioned_concurrency,
                async_config: async_config.clone(),
                tags: b.tags(&format!("alias.{name}.{}", a.name), &Tags::new()),
                rollout: Some(RolloutConfig {
                    steps,
                    alarms: rollout.map(|d| d.alarms.clone()).unwrap_or_default(),
                    keep_versions: a.keep_versions.unwrap_or(5),
                    wait: true,
                }),
            };
            let deps = [format!("function.{name}")].into();
            let key = format!("{name}.{}", a.name);
            b.add(
                Kind::Alias,
                &key,
                format!("{physical}:{}", a.name),
                serde_json::to_value(config).unwrap(),
                deps,
                spec_path,
            );
            b.resources.last_mut().unwrap().triggers = vec![format!("function.{name}")];
        }
    }
    for (name, ws) in &spec.websockets {
        add_websocket(&mut b, name, ws);
    }
    for (queue, rules) in queue_senders {
        let arn = queue_arn(&queue);
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EventBridgeDeadLetters",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": rules } },
            }],
        });
        if let Some(r) = b.resources.iter_mut().find(|r| r.address == format!("queue.{queue}")) {
            r.config["policy"] = policy;
        }
    }
    order(l, b.resources)
}

/// Adds the mapping or rule of one event, and the grants the function's role needs for it.
fn add_event(
    b: &mut Builder,
    function: &str,
    event: &EventSpec,
    g: &mut Grants,
    queue_senders: &mut BTreeMap<String, BTreeSet<String>>,
) {
    let l = b.l;
    let fn_physical = l.physical_name(function);
    let address = event.address(function);
    // `event_source.f.sqs.q` → key `f.sqs.q` under the kind prefix.
    let key = address.split_once('.').map_or(address.clone(), |(_, rest)| rest.to_string());
    let spec_path = format!("functions.{function}");
    let (target_arn, qualifier, target_address) = b.invoke_target(function);
    let mut deps: BTreeSet<String> = [format!("function.{function}"), target_address].into();
    let tags = b.tags(&address, &Default::default());
    let invoked = match &qualifier {
        Some(q) => format!("{fn_physical}:{q}"),
        None => fn_physical.clone(),
    };
    match event {
        EventSpec::Sqs(s) => {
            let arn = queue_arn(&s.queue);
            g.consume.insert(arn.clone());
            deps.insert(format!("queue.{}", s.queue));
            let config = EventSourceConfig {
                function: invoked.clone(),
                source_arn: arn,
                enabled: s.enabled.unwrap_or(true),
                batch_size: s.batch_size.unwrap_or(10),
                batching_window: s.batching_window.map_or(0, |d| d.0),
                starting_position: None,
                bisect_on_error: None,
                max_retries: None,
                maximum_record_age: None,
                parallelization_factor: None,
                tumbling_window: None,
                on_failure: None,
                report_batch_item_failures: s.report_batch_item_failures,
                max_concurrency: s.max_concurrency,
                filters: s.filter.clone(),
                tags,
            };
            let name = format!("{fn_physical}|sqs:{}", l.queue_physical_name(&s.queue));
            b.add(Kind::EventSource, &key, name, serde_json::to_value(config).unwrap(), deps, spec_path);
        }
        EventSpec::Stream(s) | EventSpec::Kinesis(s) => {
            let (source_arn, name) = match (&s.table, &s.arn) {
                (Some(t), _) => {
                    g.stream_read.insert(format!("{}/stream/*", table_arn(&l.physical_name(t))));
                    deps.insert(format!("table.{t}"));
                    (format!("${{tables.{t}.stream_arn}}"), format!("{fn_physical}|dynamodb:{}", l.physical_name(t)))
                }
                (None, Some(arn)) => {
                    g.kinesis_read.insert(arn.clone());
                    (arn.clone(), format!("{fn_physical}|kinesis:{arn}"))
                }
                (None, None) => return,
            };
            let config = stream_config(s, invoked.clone(), source_arn, g, &mut deps, tags);
            b.add(Kind::EventSource, &key, name, serde_json::to_value(config).unwrap(), deps, spec_path);
        }
        EventSpec::Schedule(_) | EventSpec::Eventbridge(_) => {
            let rule_name = l.physical_name(&format!("{function}-{}", event.rule_suffix().unwrap_or_default()));
            let rule = match event {
                EventSpec::Schedule(s) => {
                    let r = s.rule();
                    RuleParts {
                        bus: None,
                        schedule: Some(r.expression),
                        pattern: None,
                        enabled: r.enabled,
                        input: r.input,
                        input_path: None,
                        transformer: None,
                        dead_letter: r.dead_letter,
                        retries: r.max_retries,
                        age: r.max_event_age,
                    }
                }
                EventSpec::Eventbridge(e) => RuleParts {
                    bus: e.bus.clone(),
                    schedule: None,
                    pattern: Some(e.pattern.clone()),
                    enabled: e.enabled,
                    input: e.input.clone(),
                    input_path: e.input_path.clone(),
                    transformer: e.input_transformer.clone(),
                    dead_letter: e.dead_letter.clone(),
                    retries: e.max_retries,
                    age: e.max_event_age,
                },
                _ => unreachable!("only rules reach here"),
            };
            let bus_name = match &rule.bus {
                Some(bus) => {
                    deps.insert(format!("bus.{bus}"));
                    l.physical_name(bus)
                }
                None => "default".to_string(),
            };
            let arn = rule_arn(&bus_name, &rule_name);
            let dead_letter = rule.dead_letter.map(|d| {
                deps.insert(format!("queue.{}", d.queue));
                queue_senders.entry(d.queue.clone()).or_default().insert(arn.clone());
                queue_arn(&d.queue)
            });
            let config = RuleConfig {
                bus: bus_name,
                schedule: rule.schedule,
                pattern: rule.pattern,
                enabled: rule.enabled.unwrap_or(true),
                target: RuleTarget {
                    arn: target_arn.clone(),
                    input: rule.input.map(|v| v.to_string()),
                    input_path: rule.input_path,
                    input_transformer: rule
                        .transformer
                        .map(|t| InputTransformer { paths: t.paths, template: t.template }),
                    max_retries: rule.retries,
                    max_event_age: rule.age.map(|d| d.0),
                    dead_letter,
                },
                permission: Permission {
                    function: fn_physical.clone(),
                    qualifier: qualifier.clone(),
                    statement_id: format!("slx-{rule_name}"),
                    principal: "events.amazonaws.com".to_string(),
                    source_arn: arn,
                },
                tags,
            };
            b.add(Kind::Rule, &key, rule_name, serde_json::to_value(config).unwrap(), deps, spec_path);
        }
    }
}

/// A WebSocket API, one integration per target function, its routes (each with
/// the permission scoped to the API and route), its stage and the deployment
/// the stage serves.
fn add_websocket(b: &mut Builder, name: &str, ws: &crate::spec::WebsocketSpec) {
    let l = b.l;
    let api = l.physical_name(name);
    let address = format!("websocket.{name}");
    let spec_path = format!("websockets.{name}");
    let config = WebSocketConfig {
        route_selection: ws.route_selection(),
        description: ws.description.clone().unwrap_or_default(),
        tags: b.tags(&address, &ws.tags),
    };
    b.add(
        Kind::WebSocket,
        name,
        api.clone(),
        serde_json::to_value(config).unwrap(),
        BTreeSet::new(),
        spec_path.clone(),
    );
    let api_id = format!("${{websockets.{name}.id}}");
    let stage_name = ws.stage.clone().unwrap_or_else(|| l.stage.clone());
    let functions: BTreeSet<&String> = ws.routes.values().collect();
    // How each route function is invoked: through its alias when it has one.
    let targets: BTreeMap<&str, (String, Option<String>, String)> =
        functions.iter().map(|f| (f.as_str(), b.invoke_target(f))).collect();
    let uri = |f: &str| {
        format!("arn:aws:apigateway:${{aws:region}}:lambda:path/2015-03-31/functions/{}/invocations", targets[f].0)
    };
    let api_dep = || BTreeSet::from([address.clone()]);
    for f in &functions {
        let key = format!("{name}.{f}");
        let tags = b.tags(&format!("integration.{key}"), &Tags::new());
        let config = IntegrationConfig { api_id: api_id.clone(), uri: uri(f), tags };
        let deps = api_dep().into_iter().chain([format!("function.{f}"), targets[f.as_str()].2.clone()]).collect();
        let physical = format!("{api}|{}", l.physical_name(f));
        b.add(Kind::Integration, &key, physical, serde_json::to_value(config).unwrap(), deps, spec_path.clone());
    }
    for (route_key, f) in &ws.routes {
        let key = format!("{name}.{route_key}");
        let sid: String = route_key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let config = RouteConfig {
            api_id: api_id.clone(),
            route_key: route_key.clone(),
            integration_uri: uri(f),
            permission: Permission {
                function: l.physical_name(f),
                qualifier: targets[f.as_str()].1.clone(),
                statement_id: format!("slx-{api}-{sid}"),
                principal: "apigateway.amazonaws.com".to_string(),
                source_arn: format!("arn:aws:execute-api:{ACCOUNT_REGION}:{api_id}/*/{route_key}"),
            },
            tags: b.tags(&format!("route.{key}"), &Tags::new()),
        };
        let deps = api_dep().into_iter().chain([format!("integration.{name}.{f}")]).collect();
        let physical = format!("{api}|{route_key}");
        b.add(Kind::Route, &key, physical, serde_json::to_value(config).unwrap(), deps, spec_path.clone());
    }
    let config = StageConfig {
        api_id: api_id.clone(),
        stage_name: stage_name.clone(),
        throttling: ws.throttling.as_ref().map(|t| StageThrottling { burst: t.burst, rate: t.rate }),
        access_log: ws
            .access_log
            .as_ref()
            .map(|a| StageAccessLog { destination_arn: a.destination_arn.clone(), format: a.format.clone() }),
        tags: b.tags(&format!("stage.{name}"), &ws.tags),
    };
    let physical = format!("{api}|{stage_name}");
    b.add(Kind::Stage, name, physical.clone(), serde_json::to_value(config).unwrap(), api_dep(), spec_path.clone());
    // What a deployment is made from: a change here, or to any route or
    // integration (by hand included, through `triggers`), makes a new one.
    let made_from = json!({ "route_selection": ws.route_selection(), "routes": ws.routes });
    let digest = Sha256::digest(made_from.to_string().as_bytes());
    let fingerprint = format!("slx:{}", digest.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>());
    let tags = b.tags(&format!("deployment.{name}"), &Tags::new());
    let config = DeploymentConfig { api_id, stage_name, fingerprint, tags };
    let mut deps: BTreeSet<String> = [address.clone(), format!("stage.{name}")].into();
    deps.extend(ws.routes.keys().map(|k| format!("route.{name}.{k}")));
    deps.extend(functions.iter().map(|f| format!("integration.{name}.{f}")));
    b.add(Kind::Deployment, name, physical, serde_json::to_value(config).unwrap(), deps, spec_path);
    b.resources.last_mut().unwrap().triggers = vec![format!("route.{name}."), format!("integration.{name}.")];
}

/// Schedules and bus subscriptions, in one shape.
struct RuleParts {
    bus: Option<String>,
    schedule: Option<String>,
    pattern: Option<Value>,
    enabled: Option<bool>,
    input: Option<Value>,
    input_path: Option<String>,
    transformer: Option<crate::spec::InputTransformer>,
    dead_letter: Option<crate::spec::RuleDeadLetter>,
    retries: Option<u32>,
    age: Option<crate::spec::Duration>,
}

fn stream_config(
    s: &StreamSource,
    function: String,
    source_arn: String,
    g: &mut Grants,
    deps: &mut BTreeSet<String>,
    tags: Tags,
) -> EventSourceConfig {
    let on_failure = s.on_failure.as_ref().and_then(|d| match (&d.queue, &d.topic_arn) {
        (Some(q), _) => {
            deps.insert(format!("queue.{q}"));
            g.send.insert(queue_arn(q));
            Some(queue_arn(q))
        }
        (None, Some(t)) => {
            g.publish.insert(t.clone());
            Some(t.clone())
        }
        _ => None,
    });
    EventSourceConfig {
        function,
        source_arn,
        enabled: s.enabled.unwrap_or(true),
        batch_size: s.batch_size.unwrap_or(100),
        batching_window: s.batching_window.map_or(0, |d| d.0),
        starting_position: s.starting_position.map(|p| match p {
            crate::spec::StartingPosition::Latest => "LATEST".to_string(),
            crate::spec::StartingPosition::TrimHorizon => "TRIM_HORIZON".to_string(),
        }),
        bisect_on_error: Some(s.bisect_on_error),
        max_retries: Some(s.max_retries.map_or(-1, i64::from)),
        maximum_record_age: Some(s.maximum_record_age.map_or(-1, |d| d.0 as i64)),
        parallelization_factor: Some(s.parallelization_factor.unwrap_or(1)),
        tumbling_window: s.tumbling_window.map(|d| d.0).filter(|w| *w > 0),
        on_failure,
        report_batch_item_failures: s.report_batch_item_failures,
        max_concurrency: None,
        filters: s.filter.clone(),
        tags,
    }
}

/// Sorts resources so each follows its dependencies; a cycle is an error.
fn order(l: &Loaded, resources: Vec<Resource>) -> Result<Graph, Diagnostics> {
    let by_addr: BTreeMap<String, Resource> = resources.into_iter().map(|r| (r.address.clone(), r)).collect();
    let mut indegree: BTreeMap<&str, usize> = by_addr.keys().map(|k| (k.as_str(), 0)).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in by_addr.values() {
        for d in &r.deps {
            if by_addr.contains_key(d) {
                *indegree.get_mut(r.address.as_str()).unwrap() += 1;
                dependents.entry(d.as_str()).or_default().push(&r.address);
            }
        }
    }
    let mut ready: BTreeSet<&str> = indegree.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut sorted = Vec::new();
    while let Some(a) = ready.pop_first() {
        sorted.push(a.to_string());
        for d in dependents.get(a).into_iter().flatten() {
            let n = indegree.get_mut(d).unwrap();
            *n -= 1;
            if *n == 0 {
                ready.insert(d);
            }
        }
    }
    if sorted.len() < by_addr.len() {
        let cycle = find_cycle(&by_addr, &sorted);
        let first = &by_addr[&cycle[0]];
        let d: Diagnostic = l
            .diag_at(&first.spec_path, format!("dependency cycle: {}", cycle.join(" → ")))
            .hint("a resource cannot depend on itself, directly or through references; remove one of these references");
        return Err(d.into());
    }
    let mut by_addr = by_addr;
    let resources: Vec<Resource> = sorted.iter().map(|a| by_addr.remove(a).unwrap()).collect();
    Ok(Graph::of(&l.spec.stack, &l.stage, resources))
}

/// A trigger ending in `.` matches every address under it; others match exactly.
pub fn trigger_matches(trigger: &str, address: &str) -> bool {
    if trigger.ends_with('.') { address.starts_with(trigger) } else { address == trigger }
}

fn find_cycle(by_addr: &BTreeMap<String, Resource>, done: &[String]) -> Vec<String> {
    let done: BTreeSet<&String> = done.iter().collect();
    let start = by_addr.keys().find(|k| !done.contains(k)).unwrap().clone();
    let mut path = vec![start.clone()];
    let mut cur = start;
    loop {
        let next = by_addr[&cur].deps.iter().find(|d| by_addr.contains_key(*d) && !done.contains(d)).unwrap().clone();
        if let Some(pos) = path.iter().position(|p| *p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next.clone());
        cur = next;
    }
}

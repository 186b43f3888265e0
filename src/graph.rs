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
use crate::spec::{Loaded, QueueAccess};
use serde_json::{Value, json};
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
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub stack: String,
    pub stage: String,
    /// In dependency order.
    pub resources: Vec<Resource>,
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
        Graph { stack: stack.to_string(), stage: stage.to_string(), resources: Vec::new(), index: HashMap::new() }
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
        self.resources.push(Resource { address, kind, name, config, deps, package: None, spec_path });
    }
}

fn queue_arn(name: &str) -> String {
    format!("${{queues.{name}.arn}}")
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
        let mut send_to = BTreeSet::new();
        let mut sns_to = BTreeSet::new();
        let mut invoke = BTreeSet::new();
        let dead_letter_target = f.dead_letter_queue.as_deref().map(|t| {
            let (arn, dep) = async_target(t);
            fn_deps.extend(dep);
            if arn.contains(":sns:") {
                sns_to.insert(arn.clone())
            } else {
                send_to.insert(arn.clone())
            };
            arn
        });
        let async_config = f.async_config.as_ref().map(|a| {
            let on_failure = a.on_failure.as_ref().and_then(|d| {
                if let Some(q) = &d.queue {
                    let (arn, dep) = async_target(q);
                    fn_deps.extend(dep);
                    send_to.insert(arn.clone());
                    Some(arn)
                } else if let Some(target) = &d.function {
                    let arn = format!("${{functions.{target}.arn}}");
                    fn_deps.insert(format!("function.{target}"));
                    invoke.insert(arn.clone());
                    Some(arn)
                } else if let Some(t) = &d.topic_arn {
                    sns_to.insert(t.clone());
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
        let mut consume = BTreeSet::new();
        for (q, access) in &f.access.queues {
            if matches!(access, QueueAccess::Send | QueueAccess::SendConsume) {
                send_to.insert(queue_arn(q));
            }
            if matches!(access, QueueAccess::Consume | QueueAccess::SendConsume) {
                consume.insert(queue_arn(q));
            }
        }
        let mut grant = |sid: &str, actions: &[&str], resources: &BTreeSet<String>| {
            if !resources.is_empty() {
                statements.push(json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources }));
            }
        };
        grant("SendToQueues", &["sqs:SendMessage"], &send_to);
        grant(
            "ConsumeQueues",
            &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
            &consume,
        );
        grant("PublishToTopics", &["sns:Publish"], &sns_to);
        grant("InvokeFunctions", &["lambda:InvokeFunction"], &invoke);
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
            async_config,
            tags,
        };
        b.add(Kind::Function, name, physical, serde_json::to_value(config).unwrap(), fn_deps, spec_path);
        b.resources.last_mut().unwrap().package = package;
    }
    order(l, b.resources)
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
    let index = resources.iter().enumerate().map(|(i, r)| (r.address.clone(), i)).collect();
    Ok(Graph { stack: l.spec.stack.clone(), stage: l.stage.clone(), resources, index })
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

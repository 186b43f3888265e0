//! Desired × live → [`Plan`]: pure, no I/O.
//!
//! A plan is a plain serialisable value: one [`Action`] per address with the
//! field-level differences, the API calls it will make and any data it would
//! destroy. Renderers and the applier consume it; neither recomputes it.

use crate::diag::Diagnostic;
use crate::graph::{Graph, UNKNOWN, trigger_matches};
use crate::live::LiveState;
use crate::provider::{Identity, planned_calls};
use crate::record::{Cause, Record, classify};
use crate::resource::{Kind, Live, Owner};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const FORMAT_VERSION: u32 = 1;

/// What `slx deploy` would change for one stack and stage (`slx plan --format json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Plan {
    /// Bumped when a field changes meaning or goes away.
    pub format_version: u32,
    pub stack: String,
    pub stage: String,
    pub region: String,
    pub account: String,
    /// In apply order: creates and updates in dependency order, then deletes.
    pub actions: Vec<Action>,
    pub summary: Summary,
    /// What the deployment record contributed.
    #[serde(default)]
    pub record: RecordNote,
    /// The `--target`s this plan is limited to; empty for the whole stack. A
    /// targeted plan reads and compares only the resources they select (with
    /// what those need) and deletes no resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// The deployment record's part in a plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct RecordNote {
    /// The DynamoDB table holding the record.
    pub table: String,
    /// False: nothing is recorded for this stack and stage yet, so the plan is
    /// two-way (spec against live) and names no causes.
    pub found: bool,
    /// Unchanged resources whose record entry is missing or out of date; deploy writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync: Vec<String>,
    /// Record entries for resources in neither the spec nor AWS; deploy drops them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Create,
    Update,
    /// Delete and create again: a field cannot change in place, or the physical name changes.
    Replace,
    Delete,
    NoOp,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Create => "create",
            Change::Update => "update",
            Change::Replace => "replace",
            Change::Delete => "delete",
            Change::NoOp => "no-op",
        }
    }
}

/// One resource's change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Action {
    pub address: String,
    pub kind: Kind,
    /// Physical name in AWS (the new one, for a replace).
    pub name: String,
    pub action: Change,
    /// Why: the spec changed, AWS was changed by hand (drift), both
    /// (conflict), or an orphan. Absent for no-ops and in two-way plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// Field-level differences, dotted paths (`environment.TABLE`).
    pub fields: Vec<FieldDiff>,
    pub depends_on: Vec<String>,
    /// API calls this action will make.
    pub calls: Vec<String>,
    /// What would be lost, for a delete or replace of a resource holding data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<String>,
    /// Resolved desired configuration (values unknown until apply marked as such).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The live resource before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Live>,
    /// True when this action takes over a resource slx did not tag (`--adopt`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// Changes in this plan that make this action necessary (a WebSocket
    /// redeploy after its routes change); it runs after all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_by: Vec<String>,
}

impl Action {
    /// Top-level fields that differ, as the provider's update wants them.
    pub fn changed_fields(&self) -> Vec<String> {
        top_level(&self.fields)
    }
}

/// The top-level fields of field differences (sorted, as [`diff`] returns them).
pub fn top_level(fields: &[FieldDiff]) -> Vec<String> {
    let mut out: Vec<String> =
        fields.iter().map(|f| f.field.split('.').next().unwrap_or_default().to_string()).collect();
    out.dedup();
    out
}

/// One differing field: `before` is live, `after` the spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct FieldDiff {
    pub field: String,
    pub before: Value,
    pub after: Value,
    /// Changing this field forces a replacement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
    /// Who moved the field since the last deploy; absent in two-way plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// The value slx last applied, for a conflict (spec and live both moved from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Value>,
}

/// Counts of actions by change and, for three-way plans, by cause.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
    #[serde(default)]
    pub spec: usize,
    #[serde(default)]
    pub drift: usize,
    #[serde(default)]
    pub conflict: usize,
    #[serde(default)]
    pub orphan: usize,
}

impl Summary {
    fn of(actions: &[Action]) -> Summary {
        let mut s = Summary::default();
        for a in actions {
            match a.action {
                Change::Create => s.create += 1,
                Change::Update => s.update += 1,
                Change::Replace => s.replace += 1,
                Change::Delete => s.delete += 1,
                Change::NoOp => s.no_op += 1,
            }
            match a.cause {
                Some(Cause::Spec) => s.spec += 1,
                Some(Cause::Drift) => s.drift += 1,
                Some(Cause::Conflict) => s.conflict += 1,
                Some(Cause::Orphan) => s.orphan += 1,
                None => {}
            }
        }
        s
    }
}

impl Plan {
    /// Whether applying would change AWS.
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.action != Change::NoOp)
    }

    /// Whether anything was changed outside slx (drift or conflict).
    pub fn has_drift(&self) -> bool {
        self.actions.iter().any(|a| a.cause.is_some_and(Cause::is_drift))
    }

    /// Whether a deploy has record entries to write or drop besides its actions.
    pub fn has_record_work(&self) -> bool {
        !self.record.sync.is_empty() || !self.record.forget.is_empty()
    }

    /// Only what changed outside slx: drifted and conflicting actions, with
    /// just their drifted and conflicting fields (no-ops stay, as in any plan).
    pub fn drift_only(&self) -> Plan {
        let mut plan = self.clone();
        plan.actions.retain(|a| a.action == Change::NoOp || a.cause.is_some_and(Cause::is_drift));
        for a in &mut plan.actions {
            if a.fields.iter().any(|f| f.cause.is_some()) {
                a.fields.retain(|f| f.cause.is_some_and(Cause::is_drift));
            }
        }
        plan.summary = Summary::of(&plan.actions);
        plan
    }

    /// How `fresh` differs from this (saved) plan, one line per difference;
    /// empty when applying this plan now does exactly what it says.
    pub fn moved(&self, fresh: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        for (what, a, b) in [
            ("stack", &self.stack, &fresh.stack),
            ("stage", &self.stage, &fresh.stage),
            ("account", &self.account, &fresh.account),
            ("region", &self.region, &fresh.region),
        ] {
            if a != b {
                out.push(format!("the plan is for {what} {a}, not {b}"));
            }
        }
        if self.targets != fresh.targets {
            let scope = |t: &[String]| if t.is_empty() { "the whole stack".to_string() } else { t.join(", ") };
            out.push(format!("the plan is for {}, not {}", scope(&self.targets), scope(&fresh.targets)));
        }
        let key = |a: &Action| (a.address.clone(), a.action == Change::Delete);
        let saved: BTreeMap<_, &Action> = self.actions.iter().map(|a| (key(a), a)).collect();
        let now: BTreeMap<_, &Action> = fresh.actions.iter().map(|a| (key(a), a)).collect();
        for (k, s) in &saved {
            match now.get(k) {
                None => out.push(format!("{}: planned {}, now nothing to do", s.address, s.action.as_str())),
                Some(n) if n.action != s.action => {
                    out.push(format!("{}: planned {}, now {}", s.address, s.action.as_str(), n.action.as_str()))
                }
                Some(n) => {
                    for f in &n.fields {
                        let planned =
                            s.fields.iter().any(|x| (&x.field, &x.before, &x.after) == (&f.field, &f.before, &f.after));
                        if !planned {
                            out.push(format!(
                                "{}: {} is now {} → {}",
                                s.address,
                                f.field,
                                crate::render::value(&f.before),
                                crate::render::value(&f.after)
                            ));
                        }
                    }
                    for f in &s.fields {
                        if !n.fields.iter().any(|x| x.field == f.field) {
                            out.push(format!("{}: {} no longer differs", s.address, f.field));
                        }
                    }
                }
            }
        }
        for (k, n) in &now {
            if !saved.contains_key(k) && n.action != Change::NoOp {
                out.push(format!("{}: now {}, which the plan does not include", n.address, n.action.as_str()));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// Take over existing resources that slx did not tag.
    pub adopt: bool,
    /// What slx last applied; makes the plan three-way.
    pub record: &'a Record,
}

/// Fields that cannot change in place.
fn forces_replacement(kind: Kind, field: &str) -> bool {
    matches!(
        (kind, field),
        (Kind::Queue, "fifo")
            | (Kind::Role, "path")
            | (Kind::Table, "partition_key" | "sort_key")
            | (Kind::EventSource, "starting_position" | "source_arn")
            | (Kind::Rule, "bus")
    )
}

/// Flattens nested objects into dotted paths; arrays and scalars are leaves.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
            // `_`-keys steer apply (a rollout schedule); they are not state.
            for (k, v) in m.iter().filter(|(k, _)| !(prefix.is_empty() && k.starts_with('_'))) {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&p, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

/// Field-level differences between a live and a desired configuration.
pub fn diff(kind: Kind, before: &Value, after: &Value) -> Vec<FieldDiff> {
    let (mut b, mut a) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut b);
    flatten("", after, &mut a);
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let bv = b.get(k).cloned().unwrap_or(Value::Null);
            let av = a.get(k).cloned().unwrap_or(Value::Null);
            (bv != av).then(|| FieldDiff {
                forces_replacement: forces_replacement(kind, k.split('.').next().unwrap_or_default()),
                field: k.clone(),
                before: bv,
                after: av,
                cause: None,
                recorded: None,
            })
        })
        .collect()
}

/// Compares the graph with live state. Errors list every resource slx may not touch.
pub fn plan(graph: &Graph, live: &LiveState, id: &Identity, opts: Options) -> Result<Plan, Vec<Diagnostic>> {
    let facts = live.facts(id);
    let record = opts.record;
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    let mut note = RecordNote { table: record.table.clone(), found: record.found, ..Default::default() };
    let partial = !graph.targets.is_empty();
    if partial && !record.found {
        return Err(vec![
            Diagnostic::new(format!(
                "nothing is recorded for stack {} stage {}, so a targeted plan cannot tell what it would leave behind",
                graph.stack, graph.stage
            ))
            .hint("deploy the whole stack once without --target"),
        ]);
    }
    for r in &graph.resources {
        let (after, _unknown) = graph.resolve(&r.config, &facts);
        let depends_on: Vec<String> = r.deps.iter().cloned().collect();
        let previous =
            live.orphans.iter().find(|o| o.kind == r.kind && o.owner().is_some_and(|ow| ow.address == r.address));
        let entry = record.entry(&r.address);
        // In a three-way plan, a resource slx has not recorded yet is the spec's doing.
        let spec_cause = record.found.then_some(Cause::Spec);
        let (action, before, mut fields, adopt) = match live.desired.get(&r.address) {
            None => match previous {
                Some(old) => {
                    let fields = diff(r.kind, &old.config, &after);
                    (Change::Replace, Some(old.clone()), fields, false)
                }
                // Only a whole-stack plan reads the old one of a rename, to delete it.
                None if partial && entry.is_some_and(|e| e.name != r.name) => {
                    let old = entry.map_or("", |e| e.name.as_str());
                    errors.push(
                        Diagnostic::new(format!("{} `{old}` is now named `{}` in the spec", r.kind, r.name))
                            .address(r.address.clone())
                            .hint("a targeted plan does not read the old one, so it cannot replace it; deploy without --target"),
                    );
                    continue;
                }
                None => (Change::Create, None, diff(r.kind, &Value::Null, &after), false),
            },
            Some(l) => {
                let expected =
                    Owner { stack: graph.stack.clone(), stage: graph.stage.clone(), address: r.address.clone() };
                let adopt = l.owner().as_ref() != Some(&expected);
                if adopt && !opts.adopt {
                    let whose = match l.owner() {
                        Some(o) => {
                            format!("it belongs to slx stack `{}` stage `{}` as {}", o.stack, o.stage, o.address)
                        }
                        None => "slx did not create it".to_string(),
                    };
                    errors.push(
                        Diagnostic::new(format!("{} `{}` already exists and {whose}", r.kind, r.name))
                            .address(r.address.clone())
                            .hint("rename the resource in the spec, delete the existing one, or pass --adopt to take it over"),
                    );
                    continue;
                }
                let mut fields = diff(r.kind, &l.config, &after);
                if let Some(e) = entry {
                    let mut recorded = BTreeMap::new();
                    flatten("", &e.config, &mut recorded);
                    for f in &mut fields {
                        let was = recorded.get(&f.field).unwrap_or(&Value::Null);
                        f.cause = classify(&f.after, Some(was), &f.before);
                        if f.cause == Some(Cause::Conflict) {
                            f.recorded = Some(was.clone());
                        }
                    }
                }
                let change = if fields.is_empty() {
                    Change::NoOp
                } else if fields.iter().any(|f| f.forces_replacement) {
                    Change::Replace
                } else {
                    Change::Update
                };
                (change, Some(l.clone()), fields, adopt)
            }
        };
        for f in fields.iter_mut().filter(|f| f.cause.is_none()) {
            f.cause = spec_cause;
        }
        let cause = match action {
            Change::NoOp => None,
            // Recorded as applied, yet gone: deleted outside slx.
            Change::Create if entry.is_some() => Some(Cause::Drift),
            Change::Create => spec_cause,
            _ => fields.iter().filter_map(|f| f.cause).max().or(spec_cause),
        };
        if action == Change::NoOp {
            // `diff` ignores `_`-keys, which the record does not keep. A
            // recorded revision other than the live one (an alias moved since)
            // recalls outputs that no longer hold.
            let revision = |o: &crate::resource::Outputs| o.get("revision").cloned();
            let moved = |e: &crate::record::Entry| {
                before.as_ref().is_some_and(|b| revision(&b.outputs) != revision(&e.outputs))
            };
            let stale =
                entry.is_none_or(|e| e.name != r.name || !diff(r.kind, &e.config, &after).is_empty() || moved(e));
            if stale {
                note.sync.push(r.address.clone());
            }
        }
        let data_loss = (action == Change::Replace).then(|| before.as_ref().and_then(|b| b.data.clone())).flatten();
        let calls = match action {
            Change::Create => planned_calls(r.kind, "create", &[]),
            Change::Replace => [planned_calls(r.kind, "create", &[]), planned_calls(r.kind, "delete", &[])].concat(),
            Change::Update => {
                let changed: Vec<String> =
                    fields.iter().map(|f| f.field.split('.').next().unwrap_or_default().to_string()).collect();
                planned_calls(r.kind, "update", &changed)
            }
            _ => Vec::new(),
        };
        let mut calls = calls;
        calls.dedup();
        actions.push(Action {
            address: r.address.clone(),
            kind: r.kind,
            name: r.name.clone(),
            action,
            cause,
            fields,
            depends_on,
            calls,
            data_loss,
            after: Some(after),
            before,
            adopt,
            triggered_by: Vec::new(),
        });
    }
    for o in &live.orphans {
        let address = o.owner().map(|ow| ow.address).unwrap_or_default();
        if graph.get(&address).is_some_and(|r| r.kind == o.kind) {
            continue; // the old half of a replace, handled above
        }
        let cause = match record.entry(&address) {
            _ if !record.found => None,
            Some(_) => Some(Cause::Spec),
            None => Some(Cause::Orphan),
        };
        actions.push(Action {
            address,
            kind: o.kind,
            name: o.name.clone(),
            action: Change::Delete,
            cause,
            fields: diff(o.kind, &o.config, &Value::Null),
            depends_on: Vec::new(),
            calls: planned_calls(o.kind, "delete", &[]),
            data_loss: o.data.clone(),
            after: None,
            before: Some(o.clone()),
            adopt: false,
            triggered_by: Vec::new(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if record.found && !partial {
        let known: std::collections::BTreeSet<&str> = actions.iter().map(|a| a.address.as_str()).collect();
        note.forget = record.entries.keys().filter(|a| !known.contains(a.as_str())).cloned().collect();
    }
    apply_triggers(graph, &mut actions);
    for a in actions.iter_mut().filter(|a| a.kind == Kind::Alias && a.action == Change::Update) {
        let steps: Vec<crate::rollout::Step> = a
            .after
            .as_ref()
            .and_then(|v| serde_json::from_value(v["_rollout"]["steps"].clone()).ok())
            .unwrap_or_default();
        let alarms: Vec<String> = a
            .after
            .as_ref()
            .and_then(|v| serde_json::from_value(v["_rollout"]["alarms"].clone()).ok())
            .unwrap_or_default();
        let watch = if alarms.is_empty() { String::new() } else { format!(", watching {}", alarms.join(", ")) };
        a.fields.push(FieldDiff {
            field: "rollout".to_string(),
            before: Value::Null,
            after: Value::String(format!("{}{watch}", crate::rollout::describe(&steps))),
            forces_replacement: false,
            cause: None,
            recorded: None,
        });
    }
    let summary = Summary::of(&actions);
    Ok(Plan {
        format_version: FORMAT_VERSION,
        stack: graph.stack.clone(),
        stage: graph.stage.clone(),
        region: id.region.clone(),
        account: id.account.clone(),
        actions,
        summary,
        record: note,
        targets: graph.targets.clone(),
    })
}

/// Re-applies resources whose `triggers` match a change in this plan.
fn apply_triggers(graph: &Graph, actions: &mut [Action]) {
    let changed: Vec<(String, Option<Cause>)> =
        actions.iter().filter(|a| a.action != Change::NoOp).map(|a| (a.address.clone(), a.cause)).collect();
    for a in actions.iter_mut().filter(|a| a.action != Change::Delete) {
        let Some(r) = graph.get(&a.address) else { continue };
        let hits: Vec<&(String, Option<Cause>)> =
            changed.iter().filter(|(c, _)| r.triggers.iter().any(|t| trigger_matches(t, c))).collect();
        if hits.is_empty() {
            continue;
        }
        let causes: Vec<String> = hits.iter().map(|(c, _)| c.clone()).collect();
        if a.action == Change::NoOp {
            a.action = Change::Update;
            // A redeploy after a route deleted by hand is drift, too.
            let cause = |c: Cause| if c == Cause::Orphan { Cause::Spec } else { c };
            a.cause = hits.iter().filter_map(|(_, c)| c.map(cause)).max();
            a.fields.push(FieldDiff {
                field: if a.kind == Kind::Alias { "release" } else { "redeploy" }.to_string(),
                before: Value::Null,
                after: Value::String(if a.kind == Kind::Alias {
                    format!("publish a new version (changes to {})", causes.join(", "))
                } else {
                    format!("after changes to {}", causes.join(", "))
                }),
                forces_replacement: false,
                cause: None,
                recorded: None,
            });
            let field = a.fields.last().map(|f| f.field.clone()).unwrap_or_default();
            a.calls = planned_calls(a.kind, "update", &[field]);
        }
        a.triggered_by = causes;
    }
}

/// The JSON Schema of `slx plan --format json` (and `--out`), checked in as `schemas/plan.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Plan);
    serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n"
}

/// Whether a planned value is only known after apply.
pub fn is_unknown(v: &Value) -> bool {
    v.as_str() == Some(UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_reports_nested_fields_and_replacements() {
        let before = json!({ "fifo": false, "tags": { "a": "1", "b": "2" }, "dead_letter": null });
        let after = json!({ "fifo": true, "tags": { "a": "1", "b": "3" }, "dead_letter": { "queue_arn": "x", "max_receives": 5 } });
        let d = diff(Kind::Queue, &before, &after);
        let fields: Vec<(&str, bool)> = d.iter().map(|f| (f.field.as_str(), f.forces_replacement)).collect();
        assert_eq!(
            fields,
            vec![
                ("dead_letter.max_receives", false),
                ("dead_letter.queue_arn", false),
                ("fifo", true),
                ("tags.b", false)
            ]
        );
    }

    #[test]
    fn equal_configs_have_no_diff() {
        let v = json!({ "memory": 128, "environment": {} });
        assert!(diff(Kind::Function, &v, &v).is_empty());
    }
}

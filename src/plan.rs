//! Desired × live → [`Plan`]: pure, no I/O.
//!
//! A plan is a plain serialisable value: one [`Action`] per address with the
//! field-level differences, the API calls it will make and any data it would
//! destroy. Renderers and the applier consume it; neither recomputes it.

use crate::diag::Diagnostic;
use crate::graph::{Graph, UNKNOWN};
use crate::live::LiveState;
use crate::provider::{Identity, planned_calls};
use crate::resource::{Kind, Live, Owner};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub format_version: u32,
    pub stack: String,
    pub stage: String,
    pub region: String,
    pub account: String,
    /// In apply order: creates and updates in dependency order, then deletes.
    pub actions: Vec<Action>,
    pub summary: Summary,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Action {
    pub address: String,
    pub kind: Kind,
    /// Physical name in AWS (the new one, for a replace).
    pub name: String,
    pub action: Change,
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
        let mut out: Vec<String> =
            self.fields.iter().map(|f| f.field.split('.').next().unwrap_or_default().to_string()).collect();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldDiff {
    pub field: String,
    pub before: Value,
    pub after: Value,
    /// Changing this field forces a replacement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.action != Change::NoOp)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Take over existing resources that slx did not tag.
    pub adopt: bool,
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
            })
        })
        .collect()
}

/// Compares the graph with live state. Errors list every resource slx may not touch.
pub fn plan(graph: &Graph, live: &LiveState, id: &Identity, opts: Options) -> Result<Plan, Vec<Diagnostic>> {
    let facts = live.facts(id);
    let mut actions = Vec::new();
    let mut errors = Vec::new();
    for r in &graph.resources {
        let (after, _unknown) = graph.resolve(&r.config, &facts);
        let depends_on: Vec<String> = r.deps.iter().cloned().collect();
        let previous =
            live.orphans.iter().find(|o| o.kind == r.kind && o.owner().is_some_and(|ow| ow.address == r.address));
        let (action, before, fields, adopt) = match live.desired.get(&r.address) {
            None => match previous {
                Some(old) => {
                    let fields = diff(r.kind, &old.config, &after);
                    (Change::Replace, Some(old.clone()), fields, false)
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
                let fields = diff(r.kind, &l.config, &after);
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
        actions.push(Action {
            address,
            kind: o.kind,
            name: o.name.clone(),
            action: Change::Delete,
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
        });
    }
    let mut summary = Summary::default();
    for a in &actions {
        match a.action {
            Change::Create => summary.create += 1,
            Change::Update => summary.update += 1,
            Change::Replace => summary.replace += 1,
            Change::Delete => summary.delete += 1,
            Change::NoOp => summary.no_op += 1,
        }
    }
    Ok(Plan {
        format_version: FORMAT_VERSION,
        stack: graph.stack.clone(),
        stage: graph.stage.clone(),
        region: id.region.clone(),
        account: id.account.clone(),
        actions,
        summary,
    })
}

/// A trigger ending in `.` matches every address under it; others match exactly.
fn trigger_matches(trigger: &str, address: &str) -> bool {
    if trigger.ends_with('.') { address.starts_with(trigger) } else { address == trigger }
}

/// Re-applies resources whose `triggers` match a change in this plan.
fn apply_triggers(graph: &Graph, actions: &mut [Action]) {
    let changed: Vec<String> = actions.iter().filter(|a| a.action != Change::NoOp).map(|a| a.address.clone()).collect();
    for a in actions.iter_mut().filter(|a| a.action != Change::Delete) {
        let Some(r) = graph.get(&a.address) else { continue };
        let causes: Vec<String> =
            changed.iter().filter(|c| r.triggers.iter().any(|t| trigger_matches(t, c))).cloned().collect();
        if causes.is_empty() {
            continue;
        }
        if a.action == Change::NoOp {
            a.action = Change::Update;
            a.fields.push(FieldDiff {
                field: if a.kind == Kind::Alias { "release" } else { "redeploy" }.to_string(),
                before: Value::Null,
                after: Value::String(if a.kind == Kind::Alias {
                    format!("publish a new version (changes to {})", causes.join(", "))
                } else {
                    format!("after changes to {}", causes.join(", "))
                }),
                forces_replacement: false,
            });
            let field = a.fields.last().map(|f| f.field.clone()).unwrap_or_default();
            a.calls = planned_calls(a.kind, "update", &[field]);
        }
        a.triggered_by = causes;
    }
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

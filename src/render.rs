//! Views of a [`Plan`] and an apply [`Report`]: human text, JSON, Markdown.
//!
//! All three are rendered from the same values, so they cannot disagree.
//! Human text reads right without colour; colour only adds emphasis.

use crate::apply::{Outcome, Report};
use crate::plan::{Action, Change, FieldDiff, Plan, is_unknown};
use crate::record::{Cause, Deployment, Key, Lease};
use crate::resource::Kind;
use serde_json::Value;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }
}

fn symbol(c: Change) -> &'static str {
    match c {
        Change::Create => "+",
        Change::Update => "~",
        Change::Replace => "-/+",
        Change::Delete => "-",
        Change::NoOp => " ",
    }
}

fn color_of(c: Change) -> &'static str {
    match c {
        Change::Create => "32",
        Change::Update => "33",
        Change::Replace => "35",
        Change::Delete => "31",
        Change::NoOp => "0",
    }
}

/// A value as a reader wants it: strings quoted, nothing as `(none)`.
pub fn value(v: &Value) -> String {
    if is_unknown(v) {
        return "(known after apply)".to_string();
    }
    match v {
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

/// Counts by change.
fn summary_counts(plan: &Plan) -> String {
    let s = &plan.summary;
    format!("{} to create, {} to update, {} to replace, {} to delete", s.create, s.update, s.replace, s.delete)
}

/// What a deployment's history item says it did: the counts, and the targets it was limited to.
pub fn history_summary(plan: &Plan) -> String {
    let counts = summary_counts(plan);
    if plan.targets.is_empty() { counts } else { format!("{counts}; only {}", plan.targets.join(", ")) }
}

/// The one-line summary: counts by change and, in a three-way plan with changes, by cause.
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut line = format!("Plan: {}, {} unchanged.", summary_counts(plan), s.no_op);
    if plan.record.found && plan.has_changes() {
        let _ = write!(
            line,
            " By cause: {} spec, {} drift, {} conflict, {} orphan.",
            s.spec, s.drift, s.conflict, s.orphan
        );
    }
    line
}

/// Why an action is in the plan, when it is not simply the spec's doing.
fn cause_tag(a: &Action) -> Option<&'static str> {
    match (a.cause?, a.action) {
        (Cause::Drift, Change::Create) => Some("drift: deleted outside slx"),
        (Cause::Drift, _) => Some("drift"),
        (Cause::Conflict, _) => Some("conflict"),
        (Cause::Orphan, _) => Some("orphan: left by an interrupted run, in neither the spec nor the record"),
        (Cause::Spec, _) => None,
    }
}

/// Why a field differs, when it is not simply the spec's doing.
fn field_note(f: &FieldDiff) -> String {
    match f.cause {
        Some(Cause::Drift) => "  (drift: changed outside slx; deploy reverts it)".to_string(),
        Some(Cause::Conflict) => format!(
            "  (conflict: last deployed {}; changed both in the spec and outside slx; deploy applies the spec)",
            value(f.recorded.as_ref().unwrap_or(&Value::Null))
        ),
        _ => String::new(),
    }
}

fn field_lines(out: &mut String, f: &FieldDiff, indent: &str) {
    let (b, a) = (value(&f.before), value(&f.after));
    let replace = if f.forces_replacement { " (forces replacement)" } else { "" };
    let note = field_note(f);
    if b.len() + a.len() > 100 {
        let _ = writeln!(out, "{indent}{}:{replace}{note}", f.field);
        let _ = writeln!(out, "{indent}  - {b}");
        let _ = writeln!(out, "{indent}  + {a}");
    } else {
        let _ = writeln!(out, "{indent}{}: {b} → {a}{replace}{note}", f.field);
    }
}

/// Says when a plan could not be three-way, and when it covers only its targets.
fn notes(plan: &Plan) -> Vec<String> {
    let two_way = (!plan.record.found).then(|| {
        format!(
            "Nothing recorded yet for this stack and stage (table {}): two-way plan, spec against live AWS; changes made outside slx show as updates.",
            plan.record.table
        )
    });
    let targeted = (!plan.targets.is_empty()).then(|| {
        format!(
            "Targeted at {}: only these resources and what they need were read and compared. No resource is deleted; a deploy without --target deletes what the spec no longer has.",
            plan.targets.join(", ")
        )
    });
    two_way.into_iter().chain(targeted).collect()
}

pub fn human(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for stack {}, stage {} (account {}, {})",
        plan.stack, plan.stage, plan.account, plan.region
    );
    for note in notes(plan) {
        let _ = writeln!(out, "{note}");
    }
    let changes: Vec<&Action> = plan.actions.iter().filter(|a| a.action != Change::NoOp).collect();
    if changes.is_empty() {
        let _ = writeln!(out, "\nNo changes. {} resources match the spec.", plan.summary.no_op);
        if plan.record.found && !plan.record.sync.is_empty() {
            let _ = writeln!(out, "deploy records {} unchanged resources the record lacks.", plan.record.sync.len());
        }
        return out;
    }
    let width = changes.iter().map(|a| a.address.len()).max().unwrap_or(0);
    let _ = writeln!(out);
    for a in changes {
        let head = format!("{:>3} {:<width$}  {}", symbol(a.action), a.address, a.action.as_str());
        let adopt = if a.adopt { " (adopt existing)" } else { "" };
        let tag = cause_tag(a).map(|t| format!("  [{t}]")).unwrap_or_default();
        let _ = writeln!(out, "{}  {}{adopt}{tag}", style.paint(color_of(a.action), &head), a.name);
        if matches!(a.action, Change::Update | Change::Replace) {
            for f in &a.fields {
                field_lines(&mut out, f, "      ");
            }
        }
        if a.action == Change::Replace && matches!(a.kind, Kind::Table | Kind::Queue) {
            let warn = format!("      ! replacing deletes the {} and everything in it, then creates it empty", a.kind);
            let _ = writeln!(out, "{}", style.paint("31;1", &warn));
        }
        if let Some(loss) = &a.data_loss {
            let warn = format!("      ! {loss}; deleting it destroys them and needs --force");
            let _ = writeln!(out, "{}", style.paint("31;1", &warn));
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(plan));
    out
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("plans serialize") + "\n"
}

pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### slx plan: `{}` / `{}`\n", plan.stack, plan.stage);
    for note in notes(plan) {
        let _ = writeln!(out, "{note}\n");
    }
    let _ = writeln!(out, "{}\n", summary_line(plan));
    let changes: Vec<&Action> = plan.actions.iter().filter(|a| a.action != Change::NoOp).collect();
    if changes.is_empty() {
        let _ = writeln!(out, "No changes.");
        return out;
    }
    let _ = writeln!(out, "| | Address | Action | Cause | Changes |\n|---|---|---|---|---|");
    for a in changes {
        let fields = match a.action {
            Change::Update | Change::Replace => a
                .fields
                .iter()
                .map(|f| {
                    let mut s = format!("`{}`: `{}` → `{}`", f.field, value(&f.before), value(&f.after));
                    if f.forces_replacement {
                        s.push_str(" (forces replacement)");
                    }
                    match f.cause {
                        Some(Cause::Drift) => s.push_str(" (drift)"),
                        Some(Cause::Conflict) => {
                            let _ = write!(
                                s,
                                " (conflict; last deployed `{}`)",
                                value(f.recorded.as_ref().unwrap_or(&Value::Null))
                            );
                        }
                        _ => {}
                    }
                    s.replace('|', "\\|")
                })
                .collect::<Vec<_>>()
                .join("<br>"),
            _ => String::new(),
        };
        let loss = a.data_loss.as_ref().map(|l| format!(" ⚠ {l}")).unwrap_or_default();
        let cause = a.cause.map(Cause::as_str).unwrap_or_default();
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {}{loss} | {cause} | {fields} |",
            symbol(a.action),
            a.address,
            a.action.as_str()
        );
    }
    out
}

pub fn plan(plan: &Plan, format: Format, style: Style) -> String {
    match format {
        Format::Human => human(plan, style),
        Format::Json => json(plan),
        Format::Markdown => markdown(plan),
    }
}

fn past(c: Change) -> &'static str {
    match c {
        Change::Create => "created",
        Change::Update => "updated",
        Change::Replace => "replaced",
        Change::Delete => "deleted",
        Change::NoOp => "unchanged",
    }
}

/// Stack outputs (URLs, ARNs) as `name: value` lines.
pub fn outputs(outputs: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(sections) = outputs.as_object() {
        for (section, items) in sections {
            for (name, attrs) in items.as_object().into_iter().flatten() {
                for (attr, v) in attrs.as_object().into_iter().flatten() {
                    let _ = writeln!(out, "{section}.{name}.{attr}: {}", v.as_str().unwrap_or("(unknown)"));
                }
            }
        }
    }
    out
}

/// One line per finished step, for logs and non-interactive terminals.
pub fn step_line(s: &crate::apply::StepReport) -> String {
    match &s.outcome {
        Outcome::Done => format!("{:<9} {} ({:.1}s)", past(s.action), s.address, s.seconds),
        Outcome::Failed { error } => format!("FAILED    {}: {error}", s.address),
        Outcome::Skipped { reason } => format!("skipped   {} ({reason})", s.address),
    }
}

pub fn report(r: &Report) -> String {
    let done = r.count(|o| *o == Outcome::Done);
    let failed = r.count(|o| matches!(o, Outcome::Failed { .. }));
    let skipped = r.count(|o| matches!(o, Outcome::Skipped { .. }));
    let mut out = String::new();
    for s in r.steps.iter().filter(|s| s.outcome != Outcome::Done) {
        let _ = writeln!(out, "{}", step_line(s));
    }
    let _ = writeln!(out, "Applied: {done} changed, {failed} failed, {skipped} skipped.");
    if failed > 0 || skipped > 0 {
        let _ = writeln!(out, "hint: fix the cause and run the same command again; finished steps are not repeated");
    }
    out
}

/// The deployment history of one stack and stage, newest first.
pub fn history(key: &Key, deployments: &[Deployment], lease: Option<&Lease>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Deployments of stack {} stage {}, newest first", key.stack, key.stage);
    if let Some(l) = lease {
        let _ = writeln!(out, "locked by {}", crate::record::describe_lease(l));
    }
    if deployments.is_empty() {
        let _ = writeln!(out, "\nNo deployments recorded.");
        return out;
    }
    let _ = writeln!(out);
    for (i, d) in deployments.iter().enumerate() {
        // Only the newest run can still be running, and only while someone holds the lock.
        let result = match d.result.as_str() {
            "running" if i == 0 && lease.is_some() => "running",
            "running" => "did not finish",
            other => other,
        };
        let commit = d.commit.as_ref().map(|c| format!("  commit {}", &c[..c.len().min(12)])).unwrap_or_default();
        let _ = writeln!(out, "{}  {:<7}  {:<14}  {}{commit}  ({})", d.started, d.command, result, d.who, d.summary);
    }
    out
}

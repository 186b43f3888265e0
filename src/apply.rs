//! Walks a [`Plan`] as a DAG with bounded parallelism.
//!
//! A step starts when everything it depends on has finished; a failure skips
//! its descendants while independent branches run to the end. Deletes run
//! last, consumers before what they consume, and only when nothing else failed
//! (a failed update may still point at what a delete would remove). Values
//! that only exist after apply (a new queue's URL) are resolved right before
//! the step that needs them. Ctrl-C (or losing the lock) stops launching
//! steps; running ones finish. With a [`Recorder`], each finished step is
//! written to the deployment record before it counts as done.

use crate::graph::{Facts, Graph, UNKNOWN};
use crate::plan::{Action, Change, Plan};
use crate::provider::{AlreadyExists, Desired, Provider};
use crate::record::Recorder;
use crate::resource::{Kind, Live, Outputs, Owner, tags_of};
use anyhow::{Result, bail};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

pub const DEFAULT_PARALLELISM: usize = 10;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub parallelism: usize,
    /// Delete resources that hold data (non-empty queues).
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Done,
    Failed { error: String },
    Skipped { reason: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub address: String,
    pub name: String,
    pub action: Change,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub steps: Vec<StepReport>,
    pub interrupted: bool,
    /// Identity and every output known at the end, for `outputs` after a deploy.
    #[serde(skip)]
    pub facts: Facts,
}

impl Report {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.steps.iter().filter(|s| f(&s.outcome)).count()
    }

    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.steps.iter().all(|s| s.outcome == Outcome::Done)
    }
}

/// What apply reports to and listens to besides the provider.
pub struct Hooks<'a> {
    pub progress: &'a dyn Progress,
    /// Writes each finished step to the deployment record.
    pub recorder: Option<Arc<Recorder>>,
    /// Resolves when apply must stop launching steps (the lock was lost).
    pub stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl<'a> Hooks<'a> {
    /// Progress only: no record, no stop signal besides Ctrl-C.
    pub fn progress(progress: &'a dyn Progress) -> Hooks<'a> {
        Hooks { progress, recorder: None, stop: Box::pin(std::future::pending()) }
    }
}

/// Receives progress as steps start and finish.
pub trait Progress: Send + Sync {
    fn started(&self, address: &str, action: Change);
    fn finished(&self, step: &StepReport);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Create, update, or replace (delete + create when the name stays).
    Main,
    /// Delete an orphan, or the old half of a replace whose name changed.
    Delete,
}

struct Step<'a> {
    action: &'a Action,
    phase: Phase,
    deps: BTreeSet<usize>,
}

fn build_steps(plan: &Plan) -> Vec<Step<'_>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut main_index: HashMap<&str, usize> = HashMap::new();
    for a in &plan.actions {
        if matches!(a.action, Change::Create | Change::Update | Change::Replace) {
            main_index.insert(&a.address, steps.len());
            steps.push(Step { action: a, phase: Phase::Main, deps: BTreeSet::new() });
        }
    }
    for s in steps.iter_mut() {
        s.deps = s.action.depends_on.iter().filter_map(|d| main_index.get(d.as_str()).copied()).collect();
    }
    let mains: BTreeSet<usize> = (0..steps.len()).collect();
    let first_delete = steps.len();
    for a in &plan.actions {
        let renamed = a.action == Change::Replace && a.before.as_ref().is_some_and(|b| b.name != a.name);
        if a.action == Change::Delete || renamed {
            // Nothing but a deployment depends on a route, so a route goes
            // early: the redeploy it triggers must not still include it.
            let deps = if a.kind == Kind::Route { BTreeSet::new() } else { mains.clone() };
            steps.push(Step { action: a, phase: Phase::Delete, deps });
        }
    }
    // A triggered action runs after every change that triggered it.
    for i in 0..first_delete {
        for cause in steps[i].action.triggered_by.clone() {
            let found = steps
                .iter()
                .position(|s| s.action.address == cause && (s.phase == Phase::Main || s.action.kind == Kind::Route));
            if let Some(j) = found.filter(|j| *j != i) {
                steps[i].deps.insert(j);
            }
        }
    }
    // Among deletes: lower rank first; a queue after any queue that redrives into it.
    for i in first_delete..steps.len() {
        for j in first_delete..steps.len() {
            let (x, y) = (steps[i].action.before.as_ref(), steps[j].action.before.as_ref());
            let (Some(x), Some(y)) = (x, y) else { continue };
            let earlier_rank = y.kind.delete_rank() < x.kind.delete_rank();
            let redrives_into_x = x.kind == Kind::Queue
                && y.kind == Kind::Queue
                && y.config["dead_letter"]["queue_arn"]
                    .as_str()
                    .is_some_and(|arn| Some(arn) == x.outputs.get("arn").map(String::as_str));
            if i != j && (earlier_rank || redrives_into_x) {
                steps[i].deps.insert(j);
            }
        }
    }
    steps
}

/// Applies `plan`. `facts` carries identity and the outputs known at plan time.
pub async fn apply(
    provider: Arc<dyn Provider>,
    graph: &Graph,
    plan: &Plan,
    mut facts: Facts,
    opts: Options,
    hooks: Hooks<'_>,
) -> Report {
    let Hooks { progress, recorder, mut stop } = hooks;
    let steps = build_steps(plan);
    let mut remaining: Vec<usize> = steps.iter().map(|s| s.deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for (i, s) in steps.iter().enumerate() {
        for &d in &s.deps {
            dependents[d].push(i);
        }
    }
    let mut state: Vec<Option<Outcome>> = vec![None; steps.len()];
    let mut ready: std::collections::VecDeque<usize> = (0..steps.len()).filter(|&i| remaining[i] == 0).collect();
    let mut running = tokio::task::JoinSet::new();
    let mut report = Report::default();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        while !interrupted && running.len() < opts.parallelism.max(1) {
            let Some(i) = ready.pop_front() else { break };
            let step = &steps[i];
            let a = step.action;
            progress.started(&a.address, a.action);
            let task = match prepare(graph, &facts, step) {
                Ok(t) => t,
                Err(e) => {
                    finish(
                        i,
                        Outcome::Failed { error: format!("{e:#}") },
                        0.0,
                        &steps,
                        &mut state,
                        &mut report,
                        progress,
                    );
                    continue;
                }
            };
            let (p, force, recorder) = (provider.clone(), opts.force, recorder.clone());
            running.spawn(async move {
                let t0 = Instant::now();
                let r = run(p, task, force, recorder.as_deref()).await;
                (i, r, t0.elapsed().as_secs_f64())
            });
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                eprintln!("interrupted: waiting for running steps to finish; nothing new starts");
                continue;
            }
            _ = &mut stop, if !interrupted => {
                interrupted = true;
                eprintln!("the deployment lock was lost (broken with `slx unlock --force`?): waiting for running steps to finish; nothing new starts");
                continue;
            }
        };
        let Some(Ok((i, result, secs))) = joined else { continue };
        let outcome = match result {
            Ok(outputs) => {
                if steps[i].phase == Phase::Main {
                    facts.outputs.entry(steps[i].action.address.clone()).or_default().extend(outputs);
                }
                Outcome::Done
            }
            Err(e) => Outcome::Failed { error: format!("{e:#}") },
        };
        let ok = outcome == Outcome::Done;
        finish(i, outcome, secs, &steps, &mut state, &mut report, progress);
        if ok {
            for &d in &dependents[i] {
                remaining[d] -= 1;
                if remaining[d] == 0 && state[d].is_none() {
                    ready.push_back(d);
                }
            }
        } else {
            skip_descendants(i, &steps, &dependents, &mut state, &mut report, progress);
        }
    }
    for i in 0..steps.len() {
        if state[i].is_none() {
            let reason = if interrupted { "interrupted" } else { "not reached" }.to_string();
            finish(i, Outcome::Skipped { reason }, 0.0, &steps, &mut state, &mut report, progress);
        }
    }
    report.interrupted = interrupted;
    report.facts = facts;
    report
}

fn finish(
    i: usize,
    outcome: Outcome,
    secs: f64,
    steps: &[Step],
    state: &mut [Option<Outcome>],
    report: &mut Report,
    progress: &dyn Progress,
) {
    let a = steps[i].action;
    let action = if steps[i].phase == Phase::Delete { Change::Delete } else { a.action };
    let name = if steps[i].phase == Phase::Delete {
        a.before.as_ref().map_or(a.name.clone(), |b| b.name.clone())
    } else {
        a.name.clone()
    };
    let step = StepReport { address: a.address.clone(), name, action, outcome: outcome.clone(), seconds: secs };
    progress.finished(&step);
    report.steps.push(step);
    state[i] = Some(outcome);
}

fn skip_descendants(
    i: usize,
    steps: &[Step],
    dependents: &[Vec<usize>],
    state: &mut [Option<Outcome>],
    report: &mut Report,
    progress: &dyn Progress,
) {
    let failed = &steps[i].action.address;
    let mut stack = dependents[i].clone();
    while let Some(d) = stack.pop() {
        if state[d].is_some() {
            continue;
        }
        let reason = format!("{failed} failed");
        finish(d, Outcome::Skipped { reason }, 0.0, steps, state, report, progress);
        stack.extend(dependents[d].iter().copied());
    }
}

/// Everything a step needs, owned, so it can run on its own task.
struct Task {
    address: String,
    kind: Kind,
    name: String,
    action: Change,
    phase: Phase,
    config: serde_json::Value,
    package: Option<Arc<crate::package::Package>>,
    before: Option<Live>,
    changed: Vec<String>,
}

fn prepare(graph: &Graph, facts: &Facts, step: &Step) -> Result<Task> {
    let a = step.action;
    let mut config = serde_json::Value::Null;
    let mut package = None;
    if step.phase == Phase::Main {
        let Some(r) = graph.get(&a.address) else { bail!("{} is not in the spec", a.address) };
        let (resolved, unknown) = graph.resolve(&r.config, facts);
        if unknown {
            bail!("a reference of {} is still {UNKNOWN}; a dependency did not report it", a.address);
        }
        config = resolved;
        package = r.package.clone();
    }
    Ok(Task {
        address: a.address.clone(),
        kind: a.kind,
        name: a.name.clone(),
        action: a.action,
        phase: step.phase,
        config,
        package,
        before: a.before.clone(),
        changed: a.changed_fields(),
    })
}

/// Runs one step, then records it: a step counts as done only once the record agrees.
async fn run(p: Arc<dyn Provider>, t: Task, force: bool, recorder: Option<&Recorder>) -> Result<Outputs> {
    let outputs = mutate(p, &t, force).await?;
    if let Some(r) = recorder {
        let recorded = match (t.phase, t.action) {
            (Phase::Main, _) => r.applied(&t.address, t.kind, &t.name, &t.config, &outputs).await,
            (Phase::Delete, Change::Delete) => r.removed(&t.address).await,
            // The old half of a renamed replace: the entry already describes the new one.
            (Phase::Delete, _) => Ok(()),
        };
        recorded
            .map_err(|e| e.context(format!("{} was applied, but the deployment record was not updated", t.address)))?;
    }
    Ok(outputs)
}

/// Creates `desired`. When the create finds the resource already there, and it
/// carries this stack's tags for this very address, it is what an earlier
/// attempt made before its response was lost (the plan, read under the lock,
/// saw nothing): it is brought to the desired configuration instead. Anything
/// else keeps the error, so nobody else's resource is touched.
async fn create(p: &Arc<dyn Provider>, desired: Desired<'_>) -> Result<Outputs> {
    let err = match p.create(desired).await {
        Ok(outputs) => return Ok(outputs),
        Err(e) => e,
    };
    if !err.chain().any(|c| c.is::<AlreadyExists>()) {
        return Err(err);
    }
    let wanted = Owner::from_tags(&tags_of(desired.config));
    // Aliases carry no tags; they live inside a function the plan already owns.
    let ours = |l: &Live| desired.kind == Kind::Alias || (wanted.is_some() && l.owner() == wanted);
    let prefix = wanted.as_ref().map(|o| crate::live::prefix(&o.stack, &o.stage)).unwrap_or_default();
    let live = crate::live::read_one(p.as_ref(), desired.kind, desired.name, &prefix).await?;
    let Some(live) = live.filter(ours) else {
        return Err(err.context(format!("{} exists, but not as this stack's {}", desired.name, desired.address)));
    };
    let changed = crate::plan::top_level(&crate::plan::diff(desired.kind, &live.config, desired.config));
    if changed.is_empty() {
        return Ok(live.outputs);
    }
    p.update(desired, &live, &changed).await
}

async fn mutate(p: Arc<dyn Provider>, t: &Task, force: bool) -> Result<Outputs> {
    let desired =
        Desired { address: &t.address, kind: t.kind, name: &t.name, config: &t.config, package: t.package.as_deref() };
    match (t.phase, t.action) {
        (Phase::Delete, _) => {
            let before = t.before.as_ref().expect("a delete has a live resource");
            p.delete(before, force).await?;
            Ok(Outputs::new())
        }
        (Phase::Main, Change::Create) => create(&p, desired).await,
        (Phase::Main, Change::Update) => {
            p.update(desired, t.before.as_ref().expect("an update has a live resource"), &t.changed).await
        }
        (Phase::Main, Change::Replace) => {
            let before = t.before.as_ref().expect("a replace has a live resource");
            if before.name == t.name {
                p.delete(before, force).await?;
            }
            create(&p, desired).await
        }
        (Phase::Main, other) => bail!("internal: {} cannot be applied as {}", t.address, other.as_str()),
    }
}

//! The command line: parses arguments and wires spec → graph → live → plan → render/apply.

use crate::apply::{self, Hooks, Progress, Report, StepReport};
use crate::diag::Diagnostics;
use crate::graph::{Facts, Graph};
use crate::live;
use crate::package::{self, Package};
use crate::plan::{self, Change, Plan};
use crate::provider::{Aws, AwsOptions, Identity, Provider};
use crate::record::{self, Attempt, Key, Lease, Lock, Record, Recorder, Store};
use crate::render::{self, Format, Style};
use crate::resource::Kind;
use crate::spec::{self, Loaded};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_CODES: &str = "Exit codes:
  0  success; with --detailed-exitcode, no changes
  1  error (invalid spec, AWS error, failed or refused step, lock held)
  2  with --detailed-exitcode: the plan has changes
  3  with --fail-on-drift: something was changed outside slx (drift or conflict)";

#[derive(Parser, Debug)]
#[command(name = "slx", version, about = "Deploy serverless stacks to AWS straight through the service APIs", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// AWS region (overrides the spec and the AWS config chain)
    #[arg(long, global = true)]
    region: Option<String>,
    /// AWS profile from ~/.aws/config
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Send AWS calls to this endpoint (an emulator or proxy)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Never colour output (also NO_COLOR)
    #[arg(long, global = true)]
    no_color: bool,
    /// More detail on stderr
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// DynamoDB table holding the deployment record and lock (created on first deploy)
    #[arg(long, global = true, env = "SLX_STATE_TABLE", default_value = record::DEFAULT_TABLE)]
    state_table: String,
}

#[derive(Args, Debug, Clone)]
struct SpecArgs {
    /// The stack spec
    #[arg(short = 'f', long = "file", default_value = "slx.yaml")]
    file: PathBuf,
    /// Stage to work on; each stage is a separate copy of the stack
    #[arg(long, default_value = "dev", env = "SLX_STAGE")]
    stage: String,
}

#[derive(Args, Debug, Clone)]
struct TargetArgs {
    /// Only this resource (`function.api`) or spec entry (`functions.api`), with the aliases that
    /// publish it and what it needs; repeatable. The rest of the stack is not read, and no resource is deleted
    #[arg(long = "target", value_name = "ADDRESS")]
    targets: Vec<String>,
}

#[derive(Args, Debug, Clone, Copy)]
struct LockArgs {
    /// How long to wait for another run's lock before failing (e.g. 30s, 10m)
    #[arg(long, default_value = "0s", value_parser = record::parse_duration)]
    lock_timeout: std::time::Duration,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a spec without calling AWS
    Validate {
        #[arg(short = 'f', long = "file", default_value = "slx.yaml")]
        file: PathBuf,
        #[arg(long, default_value = "dev", env = "SLX_STAGE")]
        stage: String,
    },
    /// Show what deploy would change, compared with live AWS state
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Exit 2 when the plan has changes, 0 when it has none
        #[arg(long)]
        detailed_exitcode: bool,
        /// Exit 3 when anything was changed outside slx (drift or conflict)
        #[arg(long)]
        fail_on_drift: bool,
        /// Show only what changed outside slx
        #[arg(long)]
        drift_only: bool,
        /// Also write the whole plan as JSON to this file, for `deploy --plan`
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plan to take over existing resources slx did not create
        #[arg(long)]
        adopt: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Apply the spec to AWS
    Deploy {
        #[command(flatten)]
        spec: SpecArgs,
        /// Apply without asking
        #[arg(long, short = 'y')]
        yes: bool,
        /// Steps run at once
        #[arg(long, default_value_t = apply::DEFAULT_PARALLELISM)]
        parallelism: usize,
        /// Take over existing resources slx did not create (tags them as this stack's)
        #[arg(long)]
        adopt: bool,
        /// Delete queues that still hold messages when the plan removes or replaces them
        #[arg(long)]
        force: bool,
        /// Release without watching alarms (to ship the fix for the alarm that is firing)
        #[arg(long)]
        skip_alarms: bool,
        /// Start each rollout at its first step and return; finish with `promote` or `rollback`
        #[arg(long)]
        no_wait: bool,
        /// Apply exactly this saved plan (`slx plan --out`); refuses if AWS or the spec moved since
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Show each alias: the version it serves and any canary
    Status {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Finish a rollout: move all traffic to the new version
    Promote {
        #[command(flatten)]
        spec: SpecArgs,
        /// Only this function's alias
        function: Option<String>,
    },
    /// Abandon a rollout: move all traffic back to the version the alias served before
    Rollback {
        #[command(flatten)]
        spec: SpecArgs,
        /// Only this function's alias
        function: Option<String>,
    },
    /// Delete everything this stack and stage own
    Destroy {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, short = 'y')]
        yes: bool,
        /// Also delete queues that hold messages
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = apply::DEFAULT_PARALLELISM)]
        parallelism: usize,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// List the deployments of a stack and stage, newest first
    History {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Break the deployment lock of a run that died
    Unlock {
        #[command(flatten)]
        spec: SpecArgs,
        /// Required: breaking the lock of a run that is still alive lets two runs collide
        #[arg(long)]
        force: bool,
    },
    /// Print the stack's outputs: WebSocket and queue URLs, function and table ARNs
    Outputs {
        #[command(flatten)]
        spec: SpecArgs,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Build a deployment package from a directory and print its CodeSha256
    Package {
        /// The code directory (or .zip file)
        path: PathBuf,
        /// Write the zip here
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
    /// Write a starter stack into DIR (default: the current directory)
    Init {
        /// Which starter (see --list)
        #[arg(long, short = 't', default_value = crate::init::DEFAULT_TEMPLATE)]
        template: String,
        /// Stack name (default: from the directory's name)
        #[arg(long)]
        name: Option<String>,
        /// Describe the templates and exit
        #[arg(long)]
        list: bool,
        /// Overwrite files that exist
        #[arg(long)]
        force: bool,
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print a shell completion script (e.g. `slx completions bash > /etc/bash_completion.d/slx`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `slx man > ~/.local/share/man/man1/slx.1`
    Man,
    /// Print the JSON Schema of the spec format (or of JSON plans)
    Schema {
        /// The schema of `slx plan --format json` instead
        #[arg(long, conflicts_with = "reference")]
        plan: bool,
        /// The spec reference as Markdown (docs/spec.md) instead
        #[arg(long)]
        reference: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = !cli.global.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let style = Style { color };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli, style)) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::from(1)
        }
    }
}

/// True inside a GitHub Actions job.
fn github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escapes a GitHub workflow-command message (`%`, CR, LF).
fn workflow_escape(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Appends Markdown to the job summary when GitHub Actions provides one.
fn step_summary(markdown: &str) {
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|_| github_actions()) {
        let written = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(markdown.as_bytes()));
        if let Err(e) = written {
            eprintln!("warning: cannot write the job summary to {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// Prints an error as `error: ...` with every `hint:` at the end; in GitHub
/// Actions, spec errors also become `::error` annotations on the file.
fn report_error(e: &anyhow::Error) {
    if let Some(d) = e.downcast_ref::<Diagnostics>() {
        eprint!("{d}");
        if github_actions() {
            for x in &d.0 {
                let location = match (&x.file, x.mark) {
                    (Some(f), Some(m)) => format!(" file={f},line={},col={}", m.line, m.col),
                    (Some(f), None) => format!(" file={f}"),
                    _ => String::new(),
                };
                let hint = x.hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default();
                println!("::error{location}::{}", workflow_escape(&format!("{}{hint}", x.message)));
            }
        }
        return;
    }
    // Each layer of the chain may end in its own `\nhint: `; the messages
    // join as `{e:#}` would join them, the hints go last.
    let mut parts = Vec::new();
    let mut hints = Vec::new();
    for layer in e.chain() {
        let text = layer.to_string();
        match text.split_once("\nhint: ") {
            Some((message, hint)) => {
                parts.push(message.to_string());
                hints.push(hint.to_string());
            }
            None => parts.push(text),
        }
    }
    eprintln!("error: {}", parts.join(": "));
    for h in hints {
        eprintln!("hint: {h}");
    }
}

async fn run(cli: Cli, style: Style) -> Result<ExitCode> {
    let g = cli.global;
    match cli.command {
        Command::Init { template, name, list, force, dir } => {
            if list {
                print!("{}", crate::init::list());
                return Ok(ExitCode::SUCCESS);
            }
            let t = crate::init::find(&template)?;
            let stack = name.unwrap_or_else(|| crate::init::stack_name(&dir));
            let written = crate::init::write(t, &dir, &stack, force)?;
            for p in &written {
                eprintln!("wrote {}", p.display());
            }
            let cd = if dir == std::path::Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) };
            eprintln!("\nstack `{stack}` from template {}. Next: {cd}slx validate && slx deploy", t.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "slx", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema { plan, reference } => {
            let text = match (plan, reference) {
                (true, _) => plan::json_schema(),
                (_, true) => spec::reference_markdown(),
                _ => spec::json_schema(),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { spec: s, format } => {
            let ctx = Session::prepare(&g, &s, Scope::Names).await?;
            let mut rows = Vec::new();
            for r in ctx.graph.resources.iter().filter(|r| r.kind == Kind::Alias) {
                let live = live::read_alias(ctx.provider.as_ref(), &r.name).await?;
                let (primary, canary) = match &live {
                    Some(l) => {
                        let routing: Option<(String, f64)> = l.config["routing"]
                            .as_object()
                            .and_then(|m| m.iter().next())
                            .map(|(v, w)| (v.clone(), w.as_f64().unwrap_or(0.0)));
                        (l.outputs.get("version").cloned(), routing)
                    }
                    None => (None, None),
                };
                rows.push(json!({
                    "address": r.address,
                    "alias": r.name,
                    "primary": primary,
                    "canary": canary.as_ref().map(|(v, _)| v),
                    "canary_weight": canary.as_ref().map(|(_, w)| (w * 100.0).round() as u64),
                    "current": live.as_ref().map(|l| l.config["current"].clone()),
                }));
            }
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&json!({ "format_version": 1, "aliases": rows }))?)
                }
                _ => {
                    for row in &rows {
                        let serving = match (&row["primary"], &row["canary"]) {
                            (Value::Null, _) => "not deployed".to_string(),
                            (p, Value::Null) => format!("version {}", p.as_str().unwrap_or("?")),
                            (p, c) => format!(
                                "version {} with {}% on version {}",
                                p.as_str().unwrap_or("?"),
                                row["canary_weight"],
                                c.as_str().unwrap_or("?")
                            ),
                        };
                        println!(
                            "{}  {}  {serving}",
                            row["address"].as_str().unwrap_or(""),
                            row["alias"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Promote { spec: s, function } => move_aliases(&g, &s, function.as_deref(), true).await,
        Command::Rollback { spec: s, function } => move_aliases(&g, &s, function.as_deref(), false).await,
        Command::Outputs { spec: s, format } => {
            let ctx = Session::prepare(&g, &s, Scope::Names).await?;
            let state = live::read(ctx.provider.clone(), &ctx.graph, live::recall_nothing()).await?;
            let outputs = ctx.graph.outputs(&state.facts(ctx.identity().await?));
            match format {
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&json!({ "format_version": 1, "outputs": outputs }))?)
                }
                _ => print!("{}", render::outputs(&outputs)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Package { path, out } => {
            let started = std::time::Instant::now();
            let pkg = package::build(&path)?;
            if let Some(out) = out {
                std::fs::write(&out, &pkg.bytes).with_context(|| format!("cannot write {}", out.display()))?;
            }
            println!(
                "{}  {} files  {} bytes  {:.3}s",
                pkg.sha256,
                pkg.files,
                pkg.bytes.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, stage } => {
            let loaded = load(&file, &stage)?;
            let graph = build_graph(&loaded, |_| false)?;
            eprintln!(
                "{}: valid ({} functions, {} queues, {} resources)",
                file.display(),
                loaded.spec.functions.len(),
                loaded.spec.queues.len(),
                graph.resources.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { spec: s, format, detailed_exitcode, fail_on_drift, drift_only, out, adopt, target } => {
            let ctx = Session::prepare(&g, &s, Scope::Deploy(&target.targets)).await?;
            let (plan, lease) = ctx.plan(adopt).await?;
            if (drift_only || fail_on_drift) && !plan.record.found {
                bail!(
                    "nothing is recorded for stack {} stage {} in table {}, so changes made outside slx cannot be told from spec changes\nhint: deploy once; every deploy records what it applied",
                    plan.stack,
                    plan.stage,
                    plan.record.table
                );
            }
            if let Some(l) = lease.and_then(Lease::current) {
                eprintln!(
                    "note: a run holds the lock: {}; this plan may be outdated when it ends",
                    record::describe_lease(&l)
                );
            }
            if let Some(path) = out {
                std::fs::write(&path, render::json(&plan))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            let view = if drift_only { plan.drift_only() } else { plan.clone() };
            print!("{}", render::plan(&view, format, style));
            step_summary(&render::markdown(&view));
            Ok(if fail_on_drift && plan.has_drift() {
                ExitCode::from(3)
            } else if detailed_exitcode && view.has_changes() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Deploy { spec: s, yes, parallelism, adopt, force, skip_alarms, no_wait, plan, target, lock } => {
            let saved = match plan {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    let saved: Plan = serde_json::from_str(&text).with_context(|| {
                        format!("{} is not a plan saved by `slx plan --out`\nhint: save one with `slx plan --out plan.json`", path.display())
                    })?;
                    if saved.format_version != plan::FORMAT_VERSION {
                        bail!(
                            "{} has plan format {}, this slx reads {}\nhint: make the plan again with this version of slx",
                            path.display(),
                            saved.format_version,
                            plan::FORMAT_VERSION
                        );
                    }
                    Some(saved)
                }
                None => None,
            };
            // A saved plan is applied over what it was made for (`moved` names any other targets).
            let targets = match &saved {
                Some(saved) if target.targets.is_empty() => &saved.targets,
                _ => &target.targets,
            };
            let mut ctx = Session::prepare(&g, &s, Scope::Deploy(targets)).await?;
            for r in ctx.graph.resources.iter_mut().filter(|r| r.kind == Kind::Alias) {
                let rollout = &mut r.config["_rollout"];
                if skip_alarms && rollout["alarms"].as_array().is_some_and(|a| !a.is_empty()) {
                    eprintln!("WARNING: --skip-alarms: {} releases without watching {}", r.address, rollout["alarms"]);
                    rollout["alarms"] = json!([]);
                }
                if no_wait {
                    rollout["wait"] = json!(false);
                }
            }
            let run = Run { command: "deploy", yes, adopt, saved, lock_timeout: lock.lock_timeout };
            ctx.converge(run, apply::Options { parallelism, force }, style).await
        }
        Command::Destroy { spec: s, yes, force, parallelism, lock } => {
            let mut ctx = Session::prepare(&g, &s, Scope::Names).await?;
            ctx.graph = Graph::empty(&ctx.graph.stack, &ctx.graph.stage);
            let run = Run { command: "destroy", yes, adopt: false, saved: None, lock_timeout: lock.lock_timeout };
            ctx.converge(run, apply::Options { parallelism, force }, style).await
        }
        Command::History { spec: s, limit, format } => {
            let ctx = Session::prepare(&g, &s, Scope::Names).await?;
            let deployments = ctx.store.deployments(&ctx.key, limit).await?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "format_version": 1, "deployments": deployments }))?
                ),
                _ => {
                    let lease = ctx.store.lease(&ctx.key).await?.and_then(Lease::current);
                    print!("{}", render::history(&ctx.key, &deployments, lease.as_ref()))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Unlock { spec: s, force } => {
            let ctx = Session::prepare(&g, &s, Scope::Names).await?;
            let held = ctx.store.lease(&ctx.key).await?.and_then(Lease::current);
            let Some(held) = held else {
                eprintln!("stack {} stage {} is not locked", ctx.key.stack, ctx.key.stage);
                return Ok(ExitCode::SUCCESS);
            };
            if !force {
                bail!(
                    "stack {} stage {} is locked by {}\nhint: if that run is dead, pass --force to break the lock; breaking a live run's lock lets two runs collide",
                    ctx.key.stack,
                    ctx.key.stage,
                    record::describe_lease(&held)
                );
            }
            ctx.store.unlock(&ctx.key, None).await?;
            eprintln!("broke the lock held by {}", record::describe_lease(&held));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Finishes rollouts in flight: `promote` moves all traffic to the canary
/// version, `rollback` back to the version the alias served before.
async fn move_aliases(g: &Global, s: &SpecArgs, function: Option<&str>, promote: bool) -> Result<ExitCode> {
    let ctx = Session::prepare(g, s, Scope::Names).await?;
    let aliases: Vec<&crate::graph::Resource> = ctx
        .graph
        .resources
        .iter()
        .filter(|r| r.kind == Kind::Alias)
        .filter(|r| function.is_none_or(|f| r.address.starts_with(&format!("alias.{f}."))))
        .collect();
    if aliases.is_empty() {
        bail!(
            "no alias to {}{}\nhint: aliases are declared with `alias:` on a function",
            if promote { "promote" } else { "roll back" },
            function.map(|f| format!(" for function `{f}`")).unwrap_or_default()
        );
    }
    for r in aliases {
        let Some(live) = ctx.provider.read(Kind::Alias, &r.name, None).await? else {
            eprintln!("{}: not deployed", r.address);
            continue;
        };
        let primary = live.outputs.get("version").cloned().unwrap_or_default();
        let canary = live.config["routing"].as_object().and_then(|m| m.keys().next().cloned());
        let (function, alias) = r.name.rsplit_once(':').unwrap_or((&r.name, ""));
        match (canary, promote) {
            (None, _) => eprintln!("{}: no rollout in flight; serving version {primary}", r.address),
            (Some(v), true) => {
                ctx.provider.route_alias(function, alias, &v, None).await?;
                println!("{}: promoted version {v} to 100%", r.address);
            }
            (Some(v), false) => {
                ctx.provider.route_alias(function, alias, &primary, None).await?;
                println!("{}: rolled back to version {primary} (version {v} gets no traffic)", r.address);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(file: &std::path::Path, stage: &str) -> Result<Loaded> {
    spec::load(file, stage).map_err(anyhow::Error::from)
}

/// Packages the code of the functions `wanted` names (each directory once)
/// and builds the graph.
fn build_graph(loaded: &Loaded, wanted: impl Fn(&str) -> bool) -> Result<Graph> {
    let mut packages: HashMap<PathBuf, Arc<Package>> = HashMap::new();
    for name in loaded.spec.functions.keys().filter(|name| wanted(name)) {
        let f = loaded.function(name);
        let path = loaded.dir.join(f.code.as_deref().unwrap_or_default());
        if let std::collections::hash_map::Entry::Vacant(slot) = packages.entry(path) {
            let pkg = package::build(slot.key()).with_context(|| format!("packaging function.{name}"))?;
            slot.insert(Arc::new(pkg));
        }
    }
    graph_from(loaded, &packages)
}

/// What `targets` select of `graph`.
fn select(graph: &Graph, targets: &[String]) -> Result<Graph> {
    graph.select(targets).map_err(|d| Diagnostics(vec![d]).into())
}

fn graph_from(loaded: &Loaded, packages: &HashMap<PathBuf, Arc<Package>>) -> Result<Graph> {
    crate::graph::build(loaded, packages).map_err(anyhow::Error::from)
}

fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to change AWS without confirmation: stdin is not a terminal\nhint: pass --yes to apply without asking"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { bail!("cancelled; nothing was changed") }
}

/// A loaded spec connected to AWS.
struct Session {
    graph: Graph,
    provider: Arc<dyn Provider>,
    store: Arc<dyn Store>,
    key: Key,
    /// Asked for alongside the first reads, not before them.
    identity: tokio::sync::OnceCell<Identity>,
    verbose: u8,
}

/// How a deploy or destroy goes about its plan.
struct Run {
    command: &'static str,
    yes: bool,
    adopt: bool,
    /// A plan saved by `slx plan --out`, to apply exactly.
    saved: Option<Plan>,
    lock_timeout: std::time::Duration,
}

/// How much of the spec a command builds.
enum Scope<'a> {
    /// Names and configuration: no code is packaged (status, outputs,
    /// history, destroy, …: they look up names and read AWS).
    Names,
    /// What plan and deploy compare, code included: the whole stack, or
    /// what these targets select (only their functions are packaged).
    Deploy(&'a [String]),
}

impl Session {
    async fn prepare(g: &Global, s: &SpecArgs, scope: Scope<'_>) -> Result<Session> {
        let loaded = load(&s.file, &s.stage)?;
        let graph = match scope {
            Scope::Names => build_graph(&loaded, |_| false)?,
            Scope::Deploy([]) => build_graph(&loaded, |_| true)?,
            Scope::Deploy(targets) => {
                // What a target selects does not depend on code, so select first.
                let selected = select(&build_graph(&loaded, |_| false)?, targets)?;
                let functions: std::collections::BTreeSet<&str> =
                    selected.resources.iter().filter_map(|r| r.address.strip_prefix("function.")).collect();
                select(&build_graph(&loaded, |name| functions.contains(name))?, targets)?
            }
        };
        let region = g
            .region
            .clone()
            .or_else(|| loaded.spec.stages.get(&s.stage).and_then(|st| st.region.clone()))
            .or_else(|| loaded.spec.region.clone());
        let opts = AwsOptions { region, profile: g.profile.clone(), endpoint_url: g.endpoint_url.clone() };
        let aws = Aws::connect(&opts).await?;
        let store: Arc<dyn Store> = Arc::new(aws.record(&g.state_table));
        let provider: Arc<dyn Provider> = Arc::new(aws);
        let key = Key { stack: graph.stack.clone(), stage: graph.stage.clone() };
        Ok(Session { graph, provider, store, key, identity: Default::default(), verbose: g.verbose })
    }

    /// Who and where we deploy: the account, asked once.
    async fn identity(&self) -> Result<&Identity> {
        self.identity.get_or_try_init(|| self.provider.identity()).await
    }

    /// Reads live state, the record and the lock together, then plans. Never locks.
    async fn plan(&self, adopt: bool) -> Result<(Plan, Option<Lease>)> {
        let started = std::time::Instant::now();
        // Alias reads recall what the record holds as soon as it has loaded.
        let (recalled, recall) = tokio::sync::watch::channel(None);
        let record = async {
            let record = Record::load(self.store.as_ref(), &self.key).await?;
            recalled.send_replace(Some(Arc::new(record.outputs())));
            Ok(record)
        };
        let reads = async {
            tokio::try_join!(
                live::read(self.provider.clone(), &self.graph, recall),
                record,
                self.store.lease(&self.key)
            )
        };
        // The identity's errors say best what is wrong with credentials or the endpoint.
        let (identity, reads) = tokio::join!(self.identity(), reads);
        let (identity, (state, record, lease)) = (identity?, reads?);
        if self.verbose > 0 {
            eprintln!("read live state in {:.2}s", started.elapsed().as_secs_f64());
        }
        let plan =
            plan::plan(&self.graph, &state, identity, plan::Options { adopt, record: &record }).map_err(Diagnostics)?;
        Ok((plan, lease))
    }

    /// Plans, confirms and takes the lock, then applies under it. The plan is
    /// made before locking (a no-op writes nothing) and the lock is only taken
    /// at the generation that plan saw: if another run got in between, plan again.
    async fn converge(&self, run: Run, opts: apply::Options, style: Style) -> Result<ExitCode> {
        let deadline = std::time::Instant::now() + run.lock_timeout;
        let mut shown: Option<Plan> = None;
        let mut table_ready = false;
        let (plan, lock, mut deployment) = loop {
            let (plan, lease) = self.plan(run.adopt).await?;
            if let Some(held) = lease.clone().and_then(Lease::current) {
                record::wait_free(self.store.as_ref(), &self.key, held, deadline).await?;
                continue;
            }
            if let Some(saved) = &run.saved {
                let moved = saved.moved(&plan);
                if !moved.is_empty() {
                    bail!(
                        "AWS or the spec changed since the plan was made; nothing was applied:\n  {}\nhint: make and review a new plan with `slx plan --out FILE`, then deploy that",
                        moved.join("\n  ")
                    );
                }
            }
            if shown.as_ref() != Some(&plan) {
                print!("{}", render::human(&plan, style));
                step_summary(&render::markdown(&plan));
                if !plan.has_changes() && !plan.has_record_work() {
                    return Ok(ExitCode::SUCCESS);
                }
                if plan.has_changes() && run.saved.is_none() {
                    let question = if run.command == "destroy" {
                        format!("Delete everything in stack {} stage {}?", plan.stack, plan.stage)
                    } else {
                        "Apply these changes?".to_string()
                    };
                    confirm(run.yes, &question)?;
                }
                shown = Some(plan.clone());
            }
            // A table that answered the plan's reads exists.
            if !table_ready && !plan.record.found && lease.is_none() {
                self.store.ensure().await?;
            }
            table_ready = true;
            let seen = lease.map_or(0, |l| l.generation);
            let opening = record::start_deployment(run.command, render::history_summary(&plan));
            match Lock::try_take(self.store.clone(), &self.key, seen, &opening).await? {
                Ok(lock) => break (plan, lock, opening),
                Err(Attempt::Held(held)) => record::wait_free(self.store.as_ref(), &self.key, held, deadline).await?,
                Err(_) => eprintln!(
                    "another run changed stack {} stage {} meanwhile; planning again",
                    self.key.stack, self.key.stage
                ),
            }
        };
        let outcome = self.apply_locked(&plan, &lock, &mut deployment, opts).await;
        let (closed, released) = tokio::join!(self.store.put_deployment(&self.key, &deployment), lock.release());
        closed.context("cannot write the deployment history")?;
        let code = outcome?;
        released.context("cannot release the deployment lock")?;
        if plan.has_changes() {
            print!("{}", render::report(&code.1));
            let websockets = self.graph.outputs(&code.1.facts).get("websockets").cloned();
            if let Some(ws) = websockets.filter(|w| w.as_object().is_some_and(|m| !m.is_empty())) {
                print!("\n{}", render::outputs(&json!({ "websockets": ws })));
            }
        } else {
            eprintln!("recorded {} unchanged resources in {}", plan.record.sync.len(), plan.record.table);
        }
        Ok(code.0)
    }

    /// Applies `plan` while holding `lock` (the run's history item, opened
    /// with it, is finished in `deployment`): records each step, then syncs.
    async fn apply_locked(
        &self,
        plan: &Plan,
        lock: &Lock,
        deployment: &mut record::Deployment,
        opts: apply::Options,
    ) -> Result<(ExitCode, Report)> {
        let recorder =
            Arc::new(Recorder { store: self.store.clone(), key: self.key.clone(), deployment: deployment.id.clone() });
        let report = if plan.has_changes() {
            let progress = Lines::new(plan);
            if github_actions() {
                println!("::group::Apply {} changes", plan.actions.iter().filter(|a| a.action != Change::NoOp).count());
            }
            let hooks = Hooks { progress: &progress, recorder: Some(recorder.clone()), stop: Box::pin(lock.lost()) };
            let report = self.apply(plan, opts, hooks).await;
            progress.done();
            if github_actions() {
                println!("::endgroup::");
            }
            report
        } else {
            Report::default()
        };
        let synced = self.sync_record(plan, &recorder).await;
        deployment.finished = Some(record::timestamp(record::now()));
        deployment.result = match (report.interrupted, report.succeeded() && synced.is_ok()) {
            (true, _) => "interrupted",
            (false, true) => "succeeded",
            (false, false) => "failed",
        }
        .to_string();
        synced?;
        let code = if report.succeeded() { ExitCode::SUCCESS } else { ExitCode::from(1) };
        Ok((code, report))
    }

    /// Writes record entries for unchanged resources the record lacks, and
    /// drops entries for what exists in neither the spec nor AWS; 16 at once.
    async fn sync_record(&self, plan: &Plan, recorder: &Arc<Recorder>) -> Result<()> {
        let slots = Arc::new(tokio::sync::Semaphore::new(16));
        let mut writes = tokio::task::JoinSet::new();
        for address in &plan.record.sync {
            let Some(a) = plan.actions.iter().find(|a| &a.address == address) else { continue };
            let config = a.after.clone().unwrap_or_default();
            let outputs = a.before.as_ref().map(|b| b.outputs.clone()).unwrap_or_default();
            let (recorder, slots, (address, kind, name)) =
                (recorder.clone(), slots.clone(), (a.address.clone(), a.kind, a.name.clone()));
            writes.spawn(async move {
                let _slot = slots.acquire().await;
                recorder.applied(&address, kind, &name, &config, &outputs).await
            });
        }
        for address in &plan.record.forget {
            let (recorder, slots, address) = (recorder.clone(), slots.clone(), address.clone());
            writes.spawn(async move {
                let _slot = slots.acquire().await;
                recorder.removed(&address).await
            });
        }
        while let Some(written) = writes.join_next().await {
            written??;
        }
        Ok(())
    }

    async fn apply(&self, plan: &Plan, opts: apply::Options, hooks: Hooks<'_>) -> Report {
        // Every apply follows a plan, which asked for the identity.
        let id = self.identity.get().expect("planned before applying");
        let mut facts = Facts { account: id.account.clone(), region: id.region.clone(), outputs: Default::default() };
        for a in &plan.actions {
            if let (Some(b), true) = (&a.before, a.action != Change::Delete) {
                facts.outputs.insert(a.address.clone(), b.outputs.clone());
            }
        }
        apply::apply(self.provider.clone(), &self.graph, plan, facts, opts, hooks).await
    }
}

/// Progress on stderr: a bar on a terminal, one line per finished step otherwise.
struct Lines {
    bar: Option<indicatif::ProgressBar>,
}

impl Lines {
    fn new(plan: &Plan) -> Lines {
        let steps = plan.actions.iter().filter(|a| a.action != Change::NoOp).count() as u64;
        let tty = std::io::stderr().is_terminal() && std::env::var("CI").is_err() && !github_actions();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(steps);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}").expect("valid template"),
            );
            b
        });
        Lines { bar }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Lines {
    fn started(&self, address: &str, _: Change) {
        if let Some(b) = &self.bar {
            b.set_message(address.to_string());
        }
    }

    fn finished(&self, step: &StepReport) {
        let line = render::step_line(step);
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

//! slx's benchmark suite: run through `scripts/bench`, prints Markdown tables.
//!
//! Generated stacks of N functions, each with a queue, its DLQ, an alias, an
//! SQS mapping and a schedule rule, are deployed to the emulator through the
//! fault proxy at each added latency; for first deploy, no-op plan, no-op
//! deploy and a one-function code change it reports wall time (the median of
//! `--repeat` runs, 3 by default; the first deploy runs once), API calls
//! (reads / writes, counted by the proxy), the CPU time slx and the emulator
//! spent in that run, and a lower bound: the round trips no client can avoid,
//! times the latency. Then packaging against `zip -X -r`
//! and `slx validate` on a 2,000-function spec; with `--retry-modes`, a
//! deploy under throttling in each of the SDK's retry modes. With
//! `--compare-emulator REV`, only the emulator's CPU time per plan against
//! the launcher at git revision REV.

#[path = "../tests/support/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use proxy::{Faults, Proxy};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    slx: PathBuf,
    sizes: Vec<usize>,
    latencies: Vec<u64>,
    packaging: bool,
    /// Print calls per operation for each scenario.
    ops: bool,
    /// Compare the SDK's retry modes under throttling (slow: minutes).
    retry_modes: bool,
    /// Runs of each repeatable scenario; the table shows the median.
    repeat: usize,
    /// Only compare this checkout's emulator with the one at this git revision.
    compare_emulator: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        slx: PathBuf::from("target/debug/slx"),
        sizes: vec![10, 100, 500],
        latencies: vec![0, 40],
        packaging: true,
        ops: false,
        retry_modes: false,
        repeat: 3,
        compare_emulator: None,
    };
    let list = |s: String| s.split(',').map(|x| x.trim().parse().expect("a number")).collect::<Vec<u64>>();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--slx" => a.slx = it.next().expect("--slx PATH").into(),
            "--sizes" => a.sizes = list(it.next().expect("--sizes 10,100")).into_iter().map(|n| n as usize).collect(),
            "--latencies" => a.latencies = list(it.next().expect("--latencies 0,40")),
            "--no-packaging" => a.packaging = false,
            "--ops" => a.ops = true,
            "--retry-modes" => a.retry_modes = true,
            "--compare-emulator" => a.compare_emulator = Some(it.next().expect("--compare-emulator REV")),
            "--repeat" => a.repeat = it.next().and_then(|r| r.parse().ok()).filter(|&r| r > 0).expect("--repeat N"),
            _ => {} // cargo passes --bench
        }
    }
    a
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Emulator(Child, String);

impl Emulator {
    fn start() -> Emulator {
        Emulator::start_script(&root().join("scripts/emulator"))
    }

    /// A launcher elsewhere: it keeps its own virtualenv beside its `scripts/`.
    fn start_script(script: &Path) -> Emulator {
        let mut child =
            Command::new(script).args(["--port", "0"]).stdout(Stdio::piped()).spawn().expect("scripts/emulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("ready ").expect("ready line").to_string();
        Emulator(child, url)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stack of `n` functions, each with queue, DLQ, alias, mapping and rule.
fn generate(dir: &Path, n: usize) -> PathBuf {
    let mut spec = String::from(
        "stack: bench\ndefaults:\n  runtime: python3.12\n  handler: app.handler\n  memory: 256\n  timeout: 10\n  log_retention_days: 7\nqueues:\n",
    );
    for i in 0..n {
        spec += &format!(
            "  q{i}: {{ visibility_timeout: 60, dead_letter: {{ queue: d{i}, max_receives: 5 }} }}\n  d{i}: {{}}\n"
        );
    }
    spec += "functions:\n";
    for i in 0..n {
        let src = dir.join(format!("src/f{i}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("app.py"), format!("def handler(event, context):\n    return {{'function': {i}}}\n"))
            .unwrap();
        spec += &format!(
            "  f{i}:\n    code: ./src/f{i}\n    alias: {{ name: live }}\n    events:\n      - sqs: {{ queue: q{i} }}\n      - schedule: rate(1 hour)\n"
        );
    }
    let path = dir.join("slx.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

struct Row {
    scenario: &'static str,
    wall: Duration,
    slx_cpu: Duration,
    emulator_cpu: Duration,
    reads: usize,
    writes: usize,
    resources: usize,
    lower_bound: Duration,
}

fn slx(a: &Args, url: &str, args: &[&str]) -> (i32, String, Duration) {
    slx_env(a, url, &[], args)
}

fn slx_env(a: &Args, url: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, Duration) {
    let t = Instant::now();
    let out = Command::new(&a.slx)
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_ENDPOINT_URL", url)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("slx runs");
    let wall = t.elapsed();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        panic!("slx {args:?} exited {code}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), wall)
}

/// User plus system CPU time from `/proc/<pid>/stat`: the process's own
/// (fields 14, 15) and that of its children it has waited for (16, 17).
/// Linux counts these in USER_HZ ticks, 100 a second on every architecture slx runs on.
fn cpu_times(pid: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3.
    let fields: Vec<u64> =
        stat.rsplit_once(')').map_or("", |(_, f)| f).split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = |i: usize, j: usize| {
        Duration::from_millis(10 * (fields.get(i - 3).unwrap_or(&0) + fields.get(j - 3).unwrap_or(&0)))
    };
    (ticks(14, 15), ticks(16, 17))
}

/// Sequential rounds in an ideal plan: identity, every listing and the record
/// at once (a listing of N functions or log groups takes ⌈N/50⌉ pages in
/// sequence), then every read at once.
fn plan_rounds(functions: usize) -> u32 {
    2 + (functions.div_ceil(50).max(1) as u32 - 1)
}

/// The longest chain of dependent calls through the plan's actions: each
/// action costs its planned calls plus the record write that ends it.
fn chain(plan: &Value) -> u32 {
    let actions: HashMap<&str, &Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !matches!(a["action"].as_str(), Some("noop" | "no-op" | "no_op")))
        .map(|a| (a["address"].as_str().unwrap(), a))
        .collect();
    fn depth<'a>(a: &'a str, actions: &HashMap<&'a str, &'a Value>, memo: &mut HashMap<&'a str, u32>) -> u32 {
        if let Some(d) = memo.get(a) {
            return *d;
        }
        let Some(&action) = actions.get(a) else { return 0 };
        let own = action["calls"].as_array().map_or(0, |c| c.len() as u32) + 1;
        let deps = action["depends_on"].as_array().map(|d| d.as_slice()).unwrap_or_default();
        let before = deps.iter().filter_map(|d| d.as_str()).map(|d| depth(d, actions, memo)).max().unwrap_or(0);
        memo.insert(a, own + before);
        own + before
    }
    let mut memo = HashMap::new();
    actions.keys().map(|a| depth(a, &actions, &mut memo)).max().unwrap_or(0)
}

fn run_stack(a: &Args, n: usize, latency: u64) -> Vec<Row> {
    let emu = Emulator::start();
    let emulator_pid = emu.0.id().to_string();
    let proxy = Proxy::start(&emu.1, Faults::default(), Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let spec = generate(dir.path(), n);
    let spec = spec.to_str().unwrap();
    let mut rows = Vec::new();
    let mut measure = |scenario: &'static str, args: &[&str], deploys: bool, runs: usize, prepare: &dyn Fn(usize)| {
        prepare(0);
        // The plan every run of this scenario carries out, for the lower bound (not counted).
        proxy.set(Faults::default());
        let targets = args.windows(2).filter(|w| w[0] == "--target").flatten().copied();
        let plan_args: Vec<&str> = ["plan", "-f", spec, "--format", "json"].into_iter().chain(targets).collect();
        let (_, json, _) = slx(a, &proxy.url, &plan_args);
        let plan: Value = serde_json::from_str(&json).expect("plan JSON");
        let resources = plan["actions"].as_array().map_or(0, |v| v.len());
        let steps = chain(&plan);
        // Lock with history open (one transaction), …, history close with
        // release (at once): only when something changes.
        let rounds = plan_rounds(n) + if deploys && steps > 0 { steps + 2 } else { 0 };
        let lower_bound = Duration::from_millis(latency * rounds as u64);
        proxy.set(Faults::latency(latency));
        let mut timed: Vec<Row> = (0..runs)
            .map(|run| {
                if run > 0 {
                    prepare(run);
                }
                proxy.reset();
                let (emulator_before, slx_before) = (cpu_times(&emulator_pid).0, cpu_times("self").1);
                let (_, _, wall) = slx(a, &proxy.url, args);
                let (emulator_cpu, slx_cpu) =
                    (cpu_times(&emulator_pid).0 - emulator_before, cpu_times("self").1 - slx_before);
                let seen = proxy.seen();
                if a.ops && run == 0 {
                    eprintln!("{n} functions, {latency} ms, {scenario}:");
                    for (op, (r, w)) in proxy.counts() {
                        eprintln!("  {op}: {r} reads, {w} writes");
                    }
                }
                let writes = seen.iter().filter(|c| c.write).count();
                Row {
                    scenario,
                    wall,
                    slx_cpu,
                    emulator_cpu,
                    reads: seen.len() - writes,
                    writes,
                    resources,
                    lower_bound,
                }
            })
            .collect();
        // The median run: the machine is shared, one run can be unlucky.
        timed.sort_by_key(|r| r.wall);
        rows.push(timed.swap_remove(timed.len() / 2));
    };
    let unchanged = |_: usize| {};
    measure("first deploy", &["deploy", "-f", spec, "--yes"], true, 1, &unchanged);
    measure("no-op plan", &["plan", "-f", spec], false, a.repeat, &unchanged);
    measure("no-op deploy", &["deploy", "-f", spec, "--yes"], true, a.repeat, &unchanged);
    let code = dir.path().join("src/f0/app.py");
    let change = |run: usize| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&code).unwrap();
        writeln!(f, "# change {run}").unwrap();
    };
    measure("one-function change", &["deploy", "-f", spec, "--yes"], true, a.repeat, &change);
    let targeted = ["deploy", "-f", spec, "--yes", "--target", "functions.f0"];
    measure("one-function change, `--target functions.f0`", &targeted, true, a.repeat, &change);
    rows
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// 10,000 files of 10 kB of code-like text (random identifiers, so it compresses like source).
fn tree(dir: &Path) {
    if dir.join("pkg099/mod09999.py").exists() {
        return;
    }
    let words =
        ["def", "return", "import", "self", "value", "result", "for", "in", "if", "else", "None", "True", "data"];
    let mut x: u64 = 7;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..10_000 {
        let sub = dir.join(format!("pkg{:03}", i / 100));
        std::fs::create_dir_all(&sub).unwrap();
        let mut text = String::with_capacity(10_100);
        while text.len() < 10_000 {
            let r = next();
            if r % 5 == 0 {
                text += &format!("{:x} ", r >> 32);
            } else {
                text += words[(r >> 8) as usize % words.len()];
                text.push(' ');
            }
        }
        text.truncate(10_000);
        std::fs::write(sub.join(format!("mod{i:05}.py")), text).unwrap();
    }
}

fn best_of_3(mut f: impl FnMut()) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn packaging(a: &Args) {
    let tree_dir = root().join(".bench/tree");
    tree(&tree_dir);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("p.zip");
    let mut digests = std::collections::BTreeSet::new();
    let t_slx = best_of_3(|| {
        let o = Command::new(&a.slx).arg("package").arg(&tree_dir).arg("-o").arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        digests.insert(String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_string());
    });
    let slx_size = std::fs::metadata(&out).unwrap().len();
    let t_zip = best_of_3(|| {
        let _ = std::fs::remove_file(&out);
        let s = Command::new("zip").args(["-X", "-r", "-q"]).arg(&out).arg(".").current_dir(&tree_dir).status();
        assert!(s.expect("zip is installed").success());
    });
    let zip_size = std::fs::metadata(&out).unwrap().len();
    println!("\n### Packaging 10,000 files / 100 MB (best of 3)\n");
    println!("| tool | time | zip size |\n|---|---:|---:|");
    println!("| slx package | {} | {:.1} MB |", secs(t_slx), slx_size as f64 / 1e6);
    println!("| zip -X -r | {} | {:.1} MB |", secs(t_zip), zip_size as f64 / 1e6);
    println!(
        "\nslx package is {:.1}x as fast; byte-identical across runs: {}",
        t_zip.as_secs_f64() / t_slx.as_secs_f64(),
        digests.len() == 1
    );

    let dir = tempfile::tempdir().unwrap();
    let spec = generate(dir.path(), 2000);
    let t = best_of_3(|| {
        let o = Command::new(&a.slx).args(["validate", "-f"]).arg(&spec).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
    println!("\n### `slx validate` on a 2,000-function spec (16,000 resources, best of 3)\n");
    println!("| spec | lines | time |\n|---|---:|---:|");
    let lines = std::fs::read_to_string(&spec).unwrap().lines().count();
    println!("| 2,000 functions | {lines} | {} |", secs(t));
}

/// The queue-worker example (9 resources) deployed with 30 % of calls
/// throttled, once per `AWS_RETRY_MODE`.
fn retry_modes(a: &Args) {
    println!("\n### Retry modes: queue-worker example, 30 % of calls throttled\n");
    println!("| `AWS_RETRY_MODE` | deploy wall | calls throttled |\n|---|---:|---:|");
    for mode in ["standard", "adaptive"] {
        let emu = Emulator::start();
        let throttled = Faults { throttle: 0.3, seed: 7, ..Faults::default() };
        let proxy = Proxy::start(&emu.1, throttled, Duration::from_secs(3600));
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&root().join("examples/queue-worker"), dir.path());
        let spec = dir.path().join("slx.yaml");
        let (_, _, wall) =
            slx_env(a, &proxy.url, &[("AWS_RETRY_MODE", mode)], &["deploy", "-f", spec.to_str().unwrap(), "--yes"]);
        let faults = proxy.seen().iter().filter(|c| c.fault.is_some()).count();
        println!("| {mode} | {} | {faults} |", secs(wall));
    }
}

/// What a change to the emulator saves: this checkout's launcher and the one
/// at git revision `rev` (kept, with its own virtualenv, under
/// `target/emulator-compare/`) each serve the 100-function stack; no-op plans
/// alternate between them, so the machine's drift falls on both alike.
fn compare_emulators(a: &Args, rev: &str) {
    const PLANS: usize = 10;
    let old = root().join("target/emulator-compare").join(rev);
    std::fs::create_dir_all(old.join("scripts")).unwrap();
    for file in ["scripts/emulator", "scripts/emulator-requirements.txt"] {
        let shown = Command::new("git").args(["show", &format!("{rev}:{file}")]).current_dir(root()).output().unwrap();
        assert!(shown.status.success(), "git show {rev}:{file}: {}", String::from_utf8_lossy(&shown.stderr));
        std::fs::write(old.join(file), shown.stdout).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(old.join("scripts/emulator"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sides = [
        (rev.to_string(), Emulator::start_script(&old.join("scripts/emulator"))),
        ("this checkout".into(), Emulator::start()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let spec = generate(dir.path(), 100);
    let spec = spec.to_str().unwrap();
    for (_, emu) in &sides {
        slx(a, &emu.1, &["deploy", "-f", spec, "--yes"]);
    }
    let mut totals = [(Duration::ZERO, Duration::ZERO); 2];
    for _ in 0..PLANS {
        for ((_, emu), total) in sides.iter().zip(&mut totals) {
            let pid = emu.0.id().to_string();
            let before = cpu_times(&pid).0;
            let (_, _, wall) = slx(a, &emu.1, &["plan", "-f", spec]);
            *total = (total.0 + wall, total.1 + cpu_times(&pid).0 - before);
        }
    }
    println!("### Emulators compared: {PLANS} no-op plans each of 100 functions, alternating, no proxy\n");
    println!("| emulator | wall per plan | emulator CPU per plan | CPU against {rev} |\n|---|---:|---:|---:|");
    for ((name, _), (wall, cpu)) in sides.iter().zip(totals) {
        let ratio = cpu.as_secs_f64() / totals[0].1.as_secs_f64();
        println!("| {name} | {} | {} | {:.3} |", secs(wall / PLANS as u32), secs(cpu / PLANS as u32), ratio);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn main() {
    let a = args();
    assert!(a.slx.exists(), "{} is not built; run scripts/bench", a.slx.display());
    if let Some(rev) = &a.compare_emulator {
        return compare_emulators(&a, rev);
    }
    println!(
        "### Generated stacks through the proxy ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| functions | resources | latency | scenario | wall | slx CPU | emulator CPU | reads | writes | calls/resource | lower bound |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &a.sizes {
        for &latency in &a.latencies {
            for r in run_stack(&a, n, latency) {
                println!(
                    "| {n} | {} | {latency} ms | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                    r.resources,
                    r.scenario,
                    secs(r.wall),
                    secs(r.slx_cpu),
                    secs(r.emulator_cpu),
                    r.reads,
                    r.writes,
                    (r.reads + r.writes) as f64 / r.resources.max(1) as f64,
                    secs(r.lower_bound)
                );
                let _ = std::io::stdout().flush();
            }
        }
    }
    if a.packaging {
        packaging(&a);
    }
    if a.retry_modes {
        retry_modes(&a);
    }
}

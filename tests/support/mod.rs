//! Test support: the emulator as a child process, the `slx` binary as a
//! command, and SDK clients that check AWS state independently of slx.

pub mod proxy;

use serde::Deserialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running emulator on a free loopback port, stopped on drop.
pub struct Emulator {
    child: Child,
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub write: bool,
    pub path: String,
    /// The DynamoDB table a call addressed.
    #[serde(default)]
    pub table: Option<String>,
}

impl Call {
    /// A call on slx's deployment record rather than on a stack resource.
    pub fn on_record(&self) -> bool {
        self.table.as_deref() == Some("slx-state")
    }
}

impl Emulator {
    pub fn start() -> Emulator {
        Emulator::launch(&[])
    }

    /// Without the launcher's serving shortcuts: moto's own code paths.
    pub fn start_plain() -> Emulator {
        Emulator::launch(&["--plain"])
    }

    fn launch(flags: &[&str]) -> Emulator {
        let mut child = Command::new(root().join("scripts/emulator"))
            .args(["--port", "0"])
            .args(flags)
            // moto passes some answers (string sets) through Python sets: one
            // order in every emulator, so answers can be compared byte for byte.
            .env("PYTHONHASHSEED", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scripts/emulator starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        // The first start installs the pinned moto, which takes a while.
        let line = rx.recv_timeout(Duration::from_secs(600)).expect("emulator prints its address");
        let url = line.strip_prefix("ready ").expect("ready line").to_string();
        Emulator { child, url }
    }

    /// One raw HTTP call; the body of the answer.
    pub fn request(&self, method: &str, path: &str, body: &str) -> String {
        self.raw(method, path, &[("Content-Type", "application/json")], body).1
    }

    /// One raw HTTP call with these headers besides Host and Content-Length;
    /// the status line and the body.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (String, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len())
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        (head.lines().next().unwrap_or_default().to_string(), body.to_string())
    }

    /// Every AWS call the emulator has answered since the last reset.
    pub fn calls(&self) -> Vec<Call> {
        serde_json::from_str(&self.request("GET", "/_slx/calls", "")).unwrap()
    }

    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.write).collect()
    }

    /// Writes to stack resources, leaving out the deployment record's.
    pub fn resource_writes(&self) -> Vec<Call> {
        self.writes().into_iter().filter(|c| !c.on_record()).collect()
    }

    pub fn reset_calls(&self) {
        self.request("POST", "/_slx/calls/reset", "");
    }

    pub fn configure(&self, json: &str) {
        let r = self.request("POST", "/_slx/config", json);
        assert!(!r.contains("unknown settings"), "{r}");
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }

    /// Runs `slx` against this emulator.
    pub fn slx(&self, args: &[&str]) -> Run {
        slx_with_endpoint(Some(&self.url), args)
    }

    /// Runs `slx` against this emulator with extra environment variables.
    pub fn slx_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        slx_env(Some(&self.url), env, args)
    }
}

/// SDK clients on an emulator, for checking AWS state independently of slx.
/// Test modules add the queries they need in their own `impl Aws` blocks.
pub struct Aws {
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub apigateway: aws_sdk_apigatewayv2::Client,
}

impl Aws {
    pub async fn new(emu: &Emulator) -> Aws {
        let c = emu.sdk().await;
        Aws {
            lambda: aws_sdk_lambda::Client::new(&c),
            sqs: aws_sdk_sqs::Client::new(&c),
            iam: aws_sdk_iam::Client::new(&c),
            logs: aws_sdk_cloudwatchlogs::Client::new(&c),
            events: aws_sdk_eventbridge::Client::new(&c),
            dynamodb: aws_sdk_dynamodb::Client::new(&c),
            apigateway: aws_sdk_apigatewayv2::Client::new(&c),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

pub fn slx_with_endpoint(endpoint: Option<&str>, args: &[&str]) -> Run {
    slx_env(endpoint, &[], args)
}

/// Runs `slx` with extra environment variables (e.g. GitHub Actions').
pub fn slx_env(endpoint: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Run {
    let out = slx_command(endpoint, env, args).output().expect("slx runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts `slx` in the background, output captured, for tests that kill it or run several at once.
pub fn spawn_slx(endpoint: &str, args: &[&str]) -> Child {
    slx_command(Some(endpoint), &[], args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("slx starts")
}

/// Waits for a background `slx` and collects its output.
pub fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("slx ends");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The `slx` binary with a clean AWS environment pointed at `endpoint`.
fn slx_command(endpoint: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slx"));
    cmd.env_remove("GITHUB_ACTIONS").env_remove("GITHUB_STEP_SUMMARY");
    for var in ["GITHUB_SHA", "GITHUB_ACTOR", "GITHUB_RUN_ID", "GITHUB_REPOSITORY", "SLX_STATE_TABLE"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("SLX_STAGE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    cmd
}

/// Copies an example into a temporary directory the test may edit.
pub fn copy_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("examples").join(name), dir.path());
    dir
}

pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Edits a file in place, asserting the text to replace is there.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} does not contain {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The Python of the emulator's virtualenv, installing it if needed.
pub fn venv_python() -> PathBuf {
    let status = Command::new(root().join("scripts/emulator")).arg("--install").status().unwrap();
    assert!(status.success(), "emulator install failed");
    std::env::var_os("SLX_EMULATOR_VENV").map(PathBuf::from).unwrap_or_else(|| root().join(".venv")).join("bin/python")
}

/// Validates YAML or JSON documents against a JSON Schema with Python's
/// `jsonschema`, independently of slx; panics naming the first violation.
pub fn check_schema(schema: &Path, docs: &[&Path]) {
    assert!(!docs.is_empty(), "nothing to validate");
    let script = "import json, sys, yaml, jsonschema\nschema = json.load(open(sys.argv[1]))\nfor path in sys.argv[2:]:\n    jsonschema.validate(yaml.safe_load(open(path)), schema)\n    print('ok', path)\n";
    let out = Command::new(venv_python()).arg("-c").arg(script).arg(schema).args(docs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), docs.len(), "every document was checked");
}

/// Decodes IAM's URL-encoded policy documents.
pub fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

//! The command line without AWS: validation errors, exit codes, schema.

use crate::support::{Emulator, check_schema, root, slx_env, slx_with_endpoint, venv_python};

#[test]
fn invalid_spec_fails_with_location_and_hint_before_any_aws_call() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let spec = dir.path().join("slx.yaml");
    std::fs::write(&spec, "stack: shop\nfunctions:\n  api:\n    handler: app.h\n    runtime: python3.12\n    code: ./src\n    memory: 20000\n").unwrap();
    let file = spec.to_str().unwrap();
    for args in [vec!["plan", "-f", file], vec!["deploy", "-f", file, "--yes"], vec!["destroy", "-f", file, "--yes"]] {
        let run = emu.slx(&args);
        assert_eq!(run.code, 1, "{run:?}");
        assert_eq!(run.stdout, "", "errors go to stderr only");
        assert_eq!(
            run.stderr,
            format!(
                "error: memory 20000 MB is out of range 128..10240 MB\n  --> {file}:7:13 (function.api)\nhint: Lambda accepts 128 to 10240 MB\n"
            )
        );
    }
    assert!(emu.calls().is_empty(), "an invalid spec must not reach AWS: {:?}", emu.calls());
}

#[test]
fn deploy_without_a_terminal_needs_yes() {
    let emu = Emulator::start();
    let spec = root().join("examples/queue-worker/slx.yaml");
    let run = emu.slx(&["deploy", "-f", spec.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("error: refusing to change AWS without confirmation: stdin is not a terminal"),
        "{run:?}"
    );
    assert!(run.stderr.contains("hint: pass --yes to apply without asking"), "{run:?}");
    assert!(emu.writes().is_empty(), "nothing was applied: {:?}", emu.writes());
}

#[test]
fn validate_needs_no_aws() {
    let run = slx_with_endpoint(
        Some("http://127.0.0.1:9"),
        &["validate", "-f", root().join("examples/queue-worker/slx.yaml").to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("valid (2 functions, 3 queues, 9 resources)"), "{run:?}");
}

#[test]
fn missing_spec_file_has_a_hint() {
    let run = slx_with_endpoint(None, &["validate", "-f", "/nonexistent/slx.yaml"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.starts_with("error: cannot read /nonexistent/slx.yaml"), "{run:?}");
    assert!(run.stderr.contains("hint: pass the spec with -f FILE"), "{run:?}");
}

#[test]
fn help_documents_exit_codes() {
    let run = slx_with_endpoint(None, &["--help"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("2  with --detailed-exitcode: the plan has changes"), "{}", run.stdout);
    assert!(run.stdout.contains("3  with --fail-on-drift: something was changed outside slx"), "{}", run.stdout);
}

#[test]
fn checked_in_schema_is_current() {
    let run = slx_with_endpoint(None, &["schema"]);
    assert_eq!(run.code, 0);
    let checked_in = std::fs::read_to_string(root().join("schemas/slx.schema.json")).unwrap();
    assert!(
        checked_in == run.stdout,
        "schemas/slx.schema.json is stale; regenerate it with `cargo run -- schema > schemas/slx.schema.json`"
    );
}

#[test]
fn checked_in_plan_schema_is_current() {
    let run = slx_with_endpoint(None, &["schema", "--plan"]);
    assert_eq!(run.code, 0);
    let checked_in = std::fs::read_to_string(root().join("schemas/plan.schema.json")).unwrap();
    assert!(
        checked_in == run.stdout,
        "schemas/plan.schema.json is stale; regenerate it with `cargo run -- schema --plan > schemas/plan.schema.json`"
    );
}

/// Every field of the spec is documented: a description in the schema, and a
/// row in docs/spec.md, which is generated from the schema and must be current.
#[test]
fn every_spec_field_is_documented() {
    let schema: serde_json::Value = serde_json::from_str(&slx::spec::json_schema()).unwrap();
    let mut undocumented = Vec::new();
    let mut sections = vec![("Spec".to_string(), &schema)];
    sections.extend(schema["$defs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v)));
    let docs = std::fs::read_to_string(root().join("docs/spec.md")).unwrap();
    let mut fields = 0;
    for (name, def) in sections {
        for (field, p) in def["properties"].as_object().into_iter().flatten() {
            fields += 1;
            if p["description"].as_str().is_none_or(|d| d.len() < 10) {
                undocumented.push(format!("{name}.{field}"));
            }
            let section =
                docs.split(&format!("\n## {name}\n")).nth(1).unwrap_or_default().split("\n## ").next().unwrap();
            if !section.contains(&format!("| `{field}` |")) {
                undocumented.push(format!("{name}.{field} (not in docs/spec.md)"));
            }
        }
    }
    assert!(fields > 100, "the walk found the fields ({fields})");
    assert!(undocumented.is_empty(), "undocumented spec fields: {undocumented:?}");
    assert!(
        docs == slx::spec::reference_markdown(),
        "docs/spec.md is stale; regenerate it with `cargo run -- schema --reference > docs/spec.md`"
    );
    // The facts the reference promises are in the schema editors read.
    let memory = &schema["$defs"]["FunctionSpec"]["properties"]["memory"];
    assert_eq!((memory["default"].as_u64(), memory["anyOf"][0]["maximum"].as_u64()), (Some(128), Some(10240)));
    assert_eq!(memory["x-aws"], "Lambda `MemorySize` (MB)");
}

/// Every example validates against the schema (with an independent validator) and with slx.
#[test]
fn examples_validate_against_the_schema() {
    let mut specs = Vec::new();
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        let p = e.unwrap().path().join("slx.yaml");
        if p.exists() {
            specs.push(p);
        }
    }
    check_schema(&root().join("schemas/slx.schema.json"), &specs.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    for s in &specs {
        let run = slx_with_endpoint(None, &["validate", "-f", s.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}: {run:?}", s.display());
    }
}

/// The schema is strict: an unknown key fails the independent validator too.
#[test]
fn schema_rejects_unknown_keys() {
    let python = venv_python();
    let script = "import json, sys, jsonschema\nschema = json.load(open(sys.argv[1]))\ntry:\n    jsonschema.validate({'stack': 'x', 'functions': {'a': {'memroy': 1}}}, schema)\nexcept jsonschema.ValidationError as e:\n    print(e.message)\n";
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(root().join("schemas/slx.schema.json"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Additional properties are not allowed ('memroy' was unexpected)"
    );
}

/// In GitHub Actions, spec errors become annotations and plans go to the job summary.
#[test]
fn github_actions_gets_annotations_and_a_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    let spec = dir.path().join("slx.yaml");
    std::fs::write(&spec, "stack: shop\nfunctions:\n  api:\n    handler: app.h\n    runtime: python3.12\n    code: ./src\n    memory: 20000\n").unwrap();
    let file = spec.to_str().unwrap();
    let gha = [("GITHUB_ACTIONS", "true")];
    let run = slx_env(None, &gha, &["validate", "-f", file]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "::error file={file},line=7,col=13::memory 20000 MB is out of range 128..10240 MB%0Ahint: Lambda accepts 128 to 10240 MB\n"
        )
    );
    assert!(run.stderr.starts_with("error: memory 20000 MB is out of range"), "humans still read stderr: {run:?}");
    let plain = slx_env(None, &[], &["validate", "-f", file]);
    assert_eq!(plain.stdout, "", "no annotations outside GitHub Actions");

    let emu = Emulator::start();
    let summary = dir.path().join("summary.md");
    let example = root().join("examples/queue-worker/slx.yaml");
    let env = [("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())];
    let run = slx_env(Some(&emu.url), &env, &["plan", "-f", example.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### slx plan: `orders` / `dev`\n\nNothing recorded yet for this stack and stage (table slx-state): two-way plan"), "{md}");
    assert!(md.contains("\n\nPlan: 9 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged.\n"), "{md}");
    assert!(md.contains("| `+` | `function.worker` | create |  |"), "{md}");
}

/// Missing credentials, a missing region and an unreachable endpoint each get their own advice.
#[test]
fn setup_mistakes_get_specific_advice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/a.py"), "def h(e, c):\n    pass\n").unwrap();
    std::fs::write(
        dir.path().join("slx.yaml"),
        "stack: app\nfunctions:\n  f: { handler: a.h, runtime: python3.12, code: ./src }\n",
    )
    .unwrap();
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slx"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .arg("plan")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let keys = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];
    let (code, err) = run(&[("AWS_REGION", "us-east-1")]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: no AWS credentials found"), "{err}");
    assert!(err.contains("\nhint: run `aws sso login`"), "{err}");
    let (code, err) = run(&keys);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "error: no AWS region is configured\nhint: set `region:` in the spec, pass --region, or export AWS_REGION\n"
    );
    let (code, err) = run(&[keys[0], keys[1], ("AWS_REGION", "us-east-1")]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: cannot reach AWS at http://127.0.0.1:1: Connection refused"), "{err}");
    assert!(err.contains("hint: check the network and --endpoint-url / AWS_ENDPOINT_URL; for the local emulator, start it with `scripts/emulator --port 5000`"), "{err}");
}

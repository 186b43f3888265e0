//! `slx init` templates, completions and the man page.

use crate::support::{Emulator, slx_with_endpoint};

const TEMPLATES: [&str; 5] = ["queue-worker", "cron-job", "event-processor", "websocket-chat", "canary-api"];

/// Every template: init → validate → deploy → no-op plan → destroy, checked through the API.
#[tokio::test]
async fn every_template_deploys_and_destroys() {
    let emu = Emulator::start();
    let lambda = aws_sdk_lambda::Client::new(&emu.sdk().await);
    for template in TEMPLATES {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(format!("{template}-demo"));
        let run = emu.slx(&["init", "--template", template, target.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{template}: {run:?}");
        let spec = target.join("slx.yaml");
        let text = std::fs::read_to_string(&spec).unwrap();
        assert!(text.starts_with("# yaml-language-server: $schema=./slx.schema.json\n"), "{template}: modeline");
        assert!(
            text.contains(&format!("stack: {template}-demo\n")),
            "{template}: the stack is named after the directory"
        );
        let schema = std::fs::read_to_string(target.join("slx.schema.json")).unwrap();
        assert_eq!(schema, slx::spec::json_schema(), "{template}: the schema beside the spec is this slx's");
        assert!(std::fs::read_to_string(target.join("README.md")).unwrap().contains(&format!("{template}-demo")));

        let file = spec.to_str().unwrap();
        let run = emu.slx(&["validate", "-f", file]);
        assert_eq!(run.code, 0, "{template}: {run:?}");
        let run = emu.slx(&["deploy", "-f", file, "--yes"]);
        assert_eq!(run.code, 0, "{template}: {run:?}");
        let functions = lambda.list_functions().send().await.unwrap();
        let ours: Vec<&str> = functions
            .functions()
            .iter()
            .filter_map(|f| f.function_name())
            .filter(|n| n.starts_with(&format!("{template}-demo-dev-")))
            .collect();
        assert!(!ours.is_empty(), "{template}: functions exist after deploy");
        let run = emu.slx(&["plan", "-f", file, "--detailed-exitcode"]);
        assert_eq!(run.code, 0, "{template}: a second plan has nothing to do: {run:?}");
        let run = emu.slx(&["destroy", "-f", file, "--yes"]);
        assert_eq!(run.code, 0, "{template}: {run:?}");
        let left = lambda.list_functions().send().await.unwrap();
        assert!(
            left.functions().iter().all(|f| !f.function_name().unwrap().starts_with(&format!("{template}-demo-"))),
            "{template}: destroy leaves no function"
        );
    }
}

#[test]
fn init_lists_templates_and_refuses_to_overwrite() {
    let run = slx_with_endpoint(None, &["init", "--list"]);
    assert_eq!(run.code, 0, "{run:?}");
    let names: Vec<&str> = run.stdout.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, TEMPLATES);
    assert!(run.stdout.contains("canary-api       a function released through an alias"), "{run:?}");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(slx_with_endpoint(None, &["init", d, "--name", "shop"]).code, 0);
    let spec = dir.path().join("slx.yaml");
    std::fs::write(&spec, "stack: mine\n").unwrap();
    std::fs::remove_file(dir.path().join("README.md")).unwrap();
    let run = slx_with_endpoint(None, &["init", d, "-t", "cron-job"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("already exist"), "{run:?}");
    assert!(run.stderr.contains("slx.yaml"), "{run:?}");
    assert!(run.stderr.contains("hint: init into an empty directory, or pass --force"), "{run:?}");
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), "stack: mine\n", "nothing was overwritten");
    assert!(!dir.path().join("README.md").exists(), "nothing was written at all");

    let run = slx_with_endpoint(None, &["init", d, "-t", "cron-job", "--name", "shop", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(std::fs::read_to_string(&spec).unwrap().contains("stack: shop\n"));
    assert!(std::fs::read_to_string(&spec).unwrap().contains("schedule: cron(0 3 * * ? *)"));

    let run = slx_with_endpoint(None, &["init", d, "-t", "cronjob"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("there is no template `cronjob`\nhint: did you mean `cron-job`?"), "{run:?}");
}

#[test]
fn completions_and_man_page_come_from_the_command_line() {
    for (shell, marker) in [
        ("bash", "_slx()"),
        ("zsh", "#compdef slx"),
        ("fish", "complete -c slx"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = slx_with_endpoint(None, &["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains(marker), "{shell}: {}", &run.stdout[..run.stdout.len().min(300)]);
        for word in ["deploy", "history", "unlock", "fail-on-drift"] {
            assert!(run.stdout.contains(word), "{shell} completes {word}");
        }
    }
    let run = slx_with_endpoint(None, &["man"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(".TH slx 1"), "{run:?}");
    assert!(run.stdout.contains("Exit codes"), "the exit codes are in the man page");
    assert!(run.stdout.contains("slx\\-deploy(1)") || run.stdout.contains("deploy"), "subcommands are listed");
}

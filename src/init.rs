//! `slx init`: starter stacks from `templates/`, embedded in the binary.
//!
//! Each template is a working stack (spec with the schema modeline, handler
//! code, README) whose `{{stack}}` placeholder becomes the stack name. The
//! spec's JSON Schema is written beside it so editors validate offline, at
//! the version of slx that wrote it.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub struct Template {
    pub name: &'static str,
    pub summary: &'static str,
    /// Paths relative to the target directory, and their contents.
    pub files: &'static [(&'static str, &'static str)],
}

macro_rules! template_file {
    ($template:literal, $path:literal) => {
        ($path, include_str!(concat!("../templates/", $template, "/", $path)))
    };
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "queue-worker",
        summary: "SQS queue with a dead-letter queue and a batch worker",
        files: &[
            template_file!("queue-worker", "README.md"),
            template_file!("queue-worker", "slx.yaml"),
            template_file!("queue-worker", "src/worker/app.py"),
        ],
    },
    Template {
        name: "cron-job",
        summary: "a function on a daily schedule, failures to a queue",
        files: &[
            template_file!("cron-job", "README.md"),
            template_file!("cron-job", "slx.yaml"),
            template_file!("cron-job", "src/job/app.py"),
        ],
    },
    Template {
        name: "event-processor",
        summary: "DynamoDB stream processing with an on-failure queue",
        files: &[
            template_file!("event-processor", "README.md"),
            template_file!("event-processor", "slx.yaml"),
            template_file!("event-processor", "src/processor/app.py"),
        ],
    },
    Template {
        name: "websocket-chat",
        summary: "API Gateway WebSocket routes with a connections table",
        files: &[
            template_file!("websocket-chat", "README.md"),
            template_file!("websocket-chat", "slx.yaml"),
            template_file!("websocket-chat", "src/chat/handlers.py"),
        ],
    },
    Template {
        name: "canary-api",
        summary: "a function released through an alias with a canary rollout",
        files: &[
            template_file!("canary-api", "README.md"),
            template_file!("canary-api", "slx.yaml"),
            template_file!("canary-api", "src/api/app.py"),
        ],
    },
];

pub const DEFAULT_TEMPLATE: &str = "queue-worker";

pub fn find(name: &str) -> Result<&'static Template> {
    if let Some(t) = TEMPLATES.iter().find(|t| t.name == name) {
        return Ok(t);
    }
    let names: Vec<&str> = TEMPLATES.iter().map(|t| t.name).collect();
    let suggestion = crate::diag::did_you_mean(name, names.iter().copied())
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    bail!("there is no template `{name}`\nhint: {suggestion}`slx init --list` describes {}", names.join(", "))
}

/// `slx init --list`.
pub fn list() -> String {
    let width = TEMPLATES.iter().map(|t| t.name.len()).max().unwrap_or(0);
    TEMPLATES.iter().map(|t| format!("{:<width$}  {}\n", t.name, t.summary)).collect()
}

/// A stack name (`[a-z][a-z0-9-]*`) from a directory name.
pub fn stack_name(dir: &Path) -> String {
    // `.` and `..` have no name of their own; a directory not made yet has no canonical path.
    let named = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
    let raw = named(dir).or_else(|| std::fs::canonicalize(dir).ok().and_then(|d| named(&d))).unwrap_or_default();
    let mut name = String::new();
    for c in raw.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('-') && !name.is_empty() {
            name.push('-');
        }
    }
    let name = name.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit()).trim_end_matches('-').to_string();
    if name.is_empty() { "app".to_string() } else { name }
}

/// Writes `template` into `dir` as stack `stack`. Refuses, writing nothing,
/// if any file exists unless `force`. Returns the files written.
pub fn write(template: &Template, dir: &Path, stack: &str, force: bool) -> Result<Vec<PathBuf>> {
    let schema = crate::spec::json_schema();
    let mut files: Vec<(PathBuf, String)> =
        template.files.iter().map(|(p, text)| (dir.join(p), text.replace("{{stack}}", stack))).collect();
    files.push((dir.join("slx.schema.json"), schema));
    let existing: Vec<String> =
        files.iter().filter(|(p, _)| p.exists()).map(|(p, _)| p.display().to_string()).collect();
    if !existing.is_empty() && !force {
        bail!(
            "{} already exist{}: {}\nhint: init into an empty directory, or pass --force to overwrite them",
            if existing.len() == 1 { "a file" } else { "files" },
            if existing.len() == 1 { "s" } else { "" },
            existing.join(", ")
        );
    }
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_come_from_directory_names() {
        assert_eq!(stack_name(Path::new("/tmp/My_App")), "my-app");
        assert_eq!(stack_name(Path::new("2fast 4you")), "fast-4you");
        assert_eq!(stack_name(Path::new("orders-v2")), "orders-v2");
        assert_eq!(stack_name(Path::new("___")), "app");
    }
}

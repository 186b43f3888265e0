//! Client-side validation: the limits and rules AWS enforces (or should),
//! checked before any call so a bad spec costs nothing and says where it is wrong.

use super::interp::{self, Ref};
use super::rules;
use super::yaml::{Node, Value};
use super::{
    ConnectionsTable, EventSpec, FailureDestination, FunctionSpec, Loaded, QueueSpec, RuleDeadLetter, StreamSource,
    TableSpec, WebsocketSpec,
};
use crate::diag::{Diagnostic, did_you_mean};
use std::collections::BTreeSet;

pub const RUNTIMES: &[&str] = &[
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs18.x",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "java8.al2",
    "java11",
    "java17",
    "java21",
    "java25",
    "dotnet8",
    "dotnet9",
    "dotnet10",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "provided.al2",
    "provided.al2023",
];

/// CloudWatch Logs accepts only these retention periods.
pub const LOG_RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// Lambda sets these itself and rejects them in a function's environment.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub const ENV_LIMIT_BYTES: usize = 4096;

pub fn stage_name(stage: &str) -> Result<(), Diagnostic> {
    let ok = stage.len() <= 32
        && stage.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && stage.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Diagnostic::new(format!("invalid stage name `{stage}`"))
            .hint("a stage is 1 to 32 lowercase letters, digits and `-`, e.g. dev, prod, pr-42"))
    }
}

/// An AWS limit: the allowed range of a number and how to explain it.
struct Limit {
    what: &'static str,
    min: u64,
    max: u64,
    unit: &'static str,
    hint: &'static str,
}

struct Checker<'a> {
    l: &'a Loaded,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn at_key(&mut self, path: &str, message: String, hint: impl Into<String>) {
        let d = self.l.diag_at(path, message).hint(hint);
        self.push(d);
    }

    fn at_value(&mut self, path: &str, message: String, hint: impl Into<String>) {
        let mut d = self.l.diag_at(path, message).hint(hint);
        let segs: Vec<&str> = path.split('.').collect();
        if let Some(m) = self.l.root.locate_value(&segs) {
            d.mark = Some(m);
        }
        self.push(d);
    }

    fn push(&mut self, d: Diagnostic) {
        if !self.out.contains(&d) {
            self.out.push(d);
        }
    }

    /// Where a function's effective field came from: its own entry, else `defaults`.
    fn source(&self, function: &str, field: &str) -> String {
        let own = format!("functions.{function}.{field}");
        let segs: Vec<&str> = own.split('.').collect();
        if self.l.root.locate(&segs).is_some() { own } else { format!("defaults.{field}") }
    }

    fn range(&mut self, path: &str, value: u64, l: Limit) {
        if value < l.min || value > l.max {
            let message = format!("{} {value}{} is out of range {}..{}{}", l.what, l.unit, l.min, l.max, l.unit);
            self.at_value(path, message, l.hint);
        }
    }
}

fn name_ok(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Every problem in the spec; empty means valid.
pub fn check(l: &Loaded) -> Vec<Diagnostic> {
    let mut c = Checker { l, out: Vec::new() };
    let spec = &l.spec;
    let stack_ok = spec.stack.starts_with(|ch: char| ch.is_ascii_lowercase())
        && spec.stack.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
    if !stack_ok {
        c.at_value(
            "stack",
            format!("invalid stack name `{}`", spec.stack),
            "a stack name is lowercase letters, digits and `-`, starting with a letter",
        );
    }
    let region = spec.stages.get(&l.stage).and_then(|s| s.region.clone()).or_else(|| spec.region.clone());
    if let Some(r) = &region {
        let ok = r.split('-').count() >= 3
            && r.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
        if !ok {
            c.at_value("region", format!("`{r}` is not an AWS region"), "regions look like us-east-1 or eu-west-2");
        }
    }
    for (name, q) in &spec.queues {
        check_queue(&mut c, name, q);
    }
    for (name, t) in &spec.tables {
        check_table(&mut c, name, t);
    }
    for (name, b) in &spec.buses {
        if !name_ok(name) {
            c.at_key(
                &format!("buses.{name}"),
                format!("invalid bus name `{name}`"),
                "use letters, digits, `-` and `_`",
            );
        }
        check_tags(&mut c, &format!("buses.{name}.tags"), &b.tags);
    }
    for (name, ws) in &spec.websockets {
        check_websocket(&mut c, name, ws);
    }
    if !spec.defaults.events.is_empty() {
        c.at_key(
            "defaults.events",
            "events cannot be defaults".into(),
            "list each function's events under that function",
        );
    }
    for name in spec.functions.keys() {
        check_function(&mut c, name, &l.function(name));
        check_events(&mut c, name, &spec.functions[name].events);
    }
    check_references(&mut c, &l.root, String::new());
    c.out
}

/// The route keys API Gateway gives a meaning to; other keys may not start with `$`.
pub const SPECIAL_ROUTES: &[&str] = &["$connect", "$disconnect", "$default"];

/// A custom route key: what a message's route-selection value must equal.
pub fn route_key(key: &str) -> Result<(), (String, String)> {
    if key.starts_with('$') {
        if SPECIAL_ROUTES.contains(&key) {
            return Ok(());
        }
        let hint = match did_you_mean(key, SPECIAL_ROUTES.iter().copied()) {
            Some(s) => format!(
                "did you mean `{s}`? Keys starting with `$` are reserved for $connect, $disconnect and $default"
            ),
            None => "keys starting with `$` are reserved for $connect, $disconnect and $default".to_string(),
        };
        return Err((format!("`{key}` is not a route API Gateway knows"), hint));
    }
    if key.is_empty() || key.len() > 128 || key.chars().any(char::is_whitespace) {
        return Err((
            format!("invalid route key `{key}`"),
            "a route key is 1 to 128 characters without spaces, e.g. sendMessage".into(),
        ));
    }
    Ok(())
}

fn check_websocket(c: &mut Checker, name: &str, ws: &WebsocketSpec) {
    let spec = &c.l.spec;
    let base = format!("websockets.{name}");
    if !name_ok(name) {
        c.at_key(&base, format!("invalid websocket name `{name}`"), "use letters, digits, `-` and `_`");
    }
    let selection = ws.route_selection();
    if !selection.starts_with("$request.body.") || selection.len() <= "$request.body.".len() {
        c.at_value(
            &format!("{base}.route_selection"),
            format!("`{selection}` is not a WebSocket route selection expression"),
            "WebSocket APIs select routes with $request.body.FIELD, e.g. $request.body.action",
        );
    }
    if ws.routes.is_empty() {
        c.at_key(
            &base,
            format!("websocket `{name}` has no routes"),
            "add routes, e.g. routes: { $connect: connect, $default: handler }",
        );
    }
    for (key, function) in &ws.routes {
        let p = format!("{base}.routes.{key}");
        if let Err((m, h)) = route_key(key) {
            c.at_key(&p, m, h);
        }
        if !spec.functions.contains_key(function) {
            unknown_name(c, &p, "function", function, spec.functions.keys());
        }
    }
    if let Some(stage) = &ws.stage
        && (stage.is_empty()
            || stage.len() > 128
            || !stage.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
    {
        c.at_value(
            &format!("{base}.stage"),
            format!("invalid stage name `{stage}`"),
            "use 1 to 128 letters, digits, `-` and `_`",
        );
    }
    if let Some(ConnectionsTable::Table(t)) = &ws.connections_table
        && !spec.tables.contains_key(t)
    {
        unknown_name(c, &format!("{base}.connections_table"), "table", t, spec.tables.keys());
    }
    if let Some(t) = &ws.throttling
        && !(t.rate >= 0.0 && t.rate.is_finite())
    {
        c.at_value(
            &format!("{base}.throttling.rate"),
            format!("throttling rate {} is not a non-negative number", t.rate),
            "requests per second, e.g. 50",
        );
    }
    if let Some(a) = &ws.access_log
        && !a.destination_arn.starts_with("arn:")
    {
        c.at_value(
            &format!("{base}.access_log.destination_arn"),
            format!("`{}` is not an ARN", a.destination_arn),
            "use a CloudWatch Logs group ARN",
        );
    }
    check_tags(c, &format!("{base}.tags"), &ws.tags);
}

fn check_table(c: &mut Checker, name: &str, t: &TableSpec) {
    let base = format!("tables.{name}");
    if !name_ok(name) {
        c.at_key(&base, format!("invalid table name `{name}`"), "use letters, digits, `-` and `_`");
    }
    if let Some(sk) = &t.sort_key
        && sk.name == t.partition_key.name
    {
        c.at_value(
            &format!("{base}.sort_key.name"),
            format!("sort key `{}` is also the partition key", sk.name),
            "use two different attributes",
        );
    }
    for (field, v) in [("partition_key.name", Some(&t.partition_key.name)), ("ttl", t.ttl.as_ref())] {
        if v.is_some_and(|v| v.is_empty()) {
            c.at_value(
                &format!("{base}.{field}"),
                format!("{field} must not be empty"),
                "name an attribute of the items",
            );
        }
    }
    check_tags(c, &format!("{base}.tags"), &t.tags);
}

fn check_queue(c: &mut Checker, name: &str, q: &QueueSpec) {
    let base = format!("queues.{name}");
    let spec = &c.l.spec;
    if !name_ok(name) {
        c.at_key(&base, format!("invalid queue name `{name}`"), "use letters, digits, `-` and `_`");
    }
    let physical = c.l.queue_physical_name(name);
    if physical.len() > 80 {
        c.at_key(
            &base,
            format!("queue name `{physical}` is {} characters; SQS allows 80", physical.len()),
            "shorten the stack, stage or queue name",
        );
    }
    let p = |f: &str| format!("{base}.{f}");
    if let Some(v) = q.visibility_timeout {
        c.range(
            &p("visibility_timeout"),
            v.0,
            Limit {
                what: "visibility_timeout",
                min: 0,
                max: 43_200,
                unit: " s",
                hint: "SQS allows 0 seconds to 12 hours",
            },
        );
    }
    if let Some(v) = q.retention {
        c.range(
            &p("retention"),
            v.0,
            Limit {
                what: "retention",
                min: 60,
                max: 1_209_600,
                unit: " s",
                hint: "SQS keeps messages 60 seconds to 14 days",
            },
        );
    }
    if let Some(v) = q.delay {
        c.range(
            &p("delay"),
            v.0,
            Limit { what: "delay", min: 0, max: 900, unit: " s", hint: "SQS allows a delay of 0 to 900 seconds" },
        );
    }
    if let Some(v) = q.receive_wait_time {
        c.range(
            &p("receive_wait_time"),
            v.0,
            Limit {
                what: "receive_wait_time",
                min: 0,
                max: 20,
                unit: " s",
                hint: "SQS long polling waits 0 to 20 seconds",
            },
        );
    }
    if let Some(v) = q.max_message_size {
        c.range(
            &p("max_message_size"),
            v.into(),
            Limit {
                what: "max_message_size",
                min: 1024,
                max: 1_048_576,
                unit: " bytes",
                hint: "SQS allows 1 KiB to 1 MiB",
            },
        );
    }
    if q.content_based_deduplication.is_some() && !q.fifo {
        c.at_key(
            &p("content_based_deduplication"),
            "content_based_deduplication needs a FIFO queue".into(),
            "add `fifo: true`, or remove this key",
        );
    }
    check_tags(c, &p("tags"), &q.tags);
    if let Some(dl) = &q.dead_letter {
        c.range(
            &p("dead_letter.max_receives"),
            dl.max_receives.into(),
            Limit { what: "max_receives", min: 1, max: 1000, unit: "", hint: "SQS redrive allows 1 to 1000 receives" },
        );
        match spec.queues.get(&dl.queue) {
            None => unknown_name(c, &p("dead_letter.queue"), "queue", &dl.queue, spec.queues.keys()),
            Some(_) if dl.queue == name => c.at_value(
                &p("dead_letter.queue"),
                format!("queue `{name}` cannot be its own dead-letter queue"),
                "add a separate queue, e.g. `{name}-dlq: {}`",
            ),
            Some(target) if target.fifo != q.fifo => {
                let (a, b) = if q.fifo { ("FIFO", "standard") } else { ("standard", "FIFO") };
                c.at_value(
                    &p("dead_letter.queue"),
                    format!("the dead-letter queue of {a} queue `{name}` must also be {a}; `{}` is {b}", dl.queue),
                    "SQS requires a queue and its dead-letter queue to be of the same type",
                )
            }
            Some(_) => {}
        }
    }
}

fn unknown_name<'a>(c: &mut Checker, path: &str, kind: &str, name: &str, known: impl Iterator<Item = &'a String>) {
    let known: Vec<&str> = known.map(String::as_str).collect();
    let hint = match did_you_mean(name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("this stack defines no {kind}s; add one under `{kind}s:`"),
        None => format!("{kind}s in this stack: {}", known.join(", ")),
    };
    c.at_value(path, format!("unknown {kind} `{name}`"), hint);
}

fn check_tags(c: &mut Checker, path: &str, tags: &std::collections::BTreeMap<String, String>) {
    for (k, v) in tags {
        let p = format!("{path}.{k}");
        if k.starts_with("slx:") || k.starts_with("aws:") {
            c.at_key(
                &p,
                format!("tag key `{k}` is reserved"),
                "`slx:` tags mark ownership and `aws:` tags belong to AWS; choose another key",
            );
        } else if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            c.at_key(&p, format!("tag `{k}` is too long"), "tag keys hold up to 128 characters and values up to 256");
        }
    }
}

fn check_function(c: &mut Checker, name: &str, f: &FunctionSpec) {
    let base = format!("functions.{name}");
    let spec = &c.l.spec;
    if !name_ok(name) {
        c.at_key(&base, format!("invalid function name `{name}`"), "use letters, digits, `-` and `_`");
    }
    let physical = c.l.physical_name(name);
    if physical.len() > 64 {
        c.at_key(
            &base,
            format!("function name `{physical}` is {} characters; Lambda allows 64", physical.len()),
            "shorten the stack, stage or function name",
        );
    }
    for (field, what) in [("handler", "a handler"), ("runtime", "a runtime"), ("code", "code")] {
        let missing = match field {
            "handler" => f.handler.is_none(),
            "runtime" => f.runtime.is_none(),
            _ => f.code.is_none(),
        };
        if missing {
            c.at_key(
                &base,
                format!("function `{name}` has no {field}"),
                format!("set `{field}:` on the function or under `defaults:` ({what} is required)"),
            );
        }
    }
    if let Some(rt) = &f.runtime
        && !RUNTIMES.contains(&rt.as_str())
    {
        let hint = match did_you_mean(rt, RUNTIMES.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("supported runtimes: {}", RUNTIMES.join(", ")),
        };
        c.at_value(&c.source(name, "runtime"), format!("unknown runtime `{rt}`"), hint);
    }
    if let Some(code) = &f.code {
        let path = c.l.dir.join(code);
        if !path.exists() {
            c.at_value(
                &c.source(name, "code"),
                format!("code path `{code}` does not exist"),
                format!("paths resolve against the spec's folder ({})", c.l.dir.display()),
            );
        } else if path.is_file() && !code.ends_with(".zip") {
            c.at_value(
                &c.source(name, "code"),
                format!("code path `{code}` is a file but not a .zip"),
                "point `code:` at a directory or a .zip file",
            );
        }
    }
    if let Some(m) = f.memory {
        c.range(
            &c.source(name, "memory"),
            m.into(),
            Limit { what: "memory", min: 128, max: 10_240, unit: " MB", hint: "Lambda accepts 128 to 10240 MB" },
        );
    }
    if let Some(t) = f.timeout {
        c.range(
            &c.source(name, "timeout"),
            t.0,
            Limit {
                what: "timeout",
                min: 1,
                max: 900,
                unit: " s",
                hint: "Lambda functions run at most 900 seconds (15 minutes)",
            },
        );
    }
    if let Some(e) = f.ephemeral_storage {
        c.range(
            &c.source(name, "ephemeral_storage"),
            e.into(),
            Limit {
                what: "ephemeral_storage",
                min: 512,
                max: 10_240,
                unit: " MB",
                hint: "Lambda's /tmp is 512 to 10240 MB",
            },
        );
    }
    if let Some(days) = f.log_retention_days
        && !LOG_RETENTION_DAYS.contains(&days)
    {
        let nearest = LOG_RETENTION_DAYS.iter().min_by_key(|d| d.abs_diff(days)).unwrap();
        c.at_value(
            &c.source(name, "log_retention_days"),
            format!("log_retention_days {days} is not a CloudWatch Logs retention period"),
            format!("the nearest allowed value is {nearest}"),
        );
    }
    let mut env_bytes = 0;
    for (k, v) in &f.environment {
        let p = c.source(name, &format!("environment.{k}"));
        env_bytes += k.len() + v.len();
        let valid = k.len() >= 2
            && k.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            c.at_key(
                &p,
                format!("invalid environment variable name `{k}`"),
                "Lambda needs a letter followed by letters, digits or `_` (at least 2 characters)",
            );
        } else if RESERVED_ENV.contains(&k.as_str()) {
            c.at_key(
                &p,
                format!("environment variable `{k}` is reserved by Lambda"),
                "Lambda sets it itself; choose another name",
            );
        }
    }
    if env_bytes > ENV_LIMIT_BYTES {
        c.at_key(
            &c.source(name, "environment"),
            format!("environment is {env_bytes} bytes; Lambda allows 4096 in total"),
            "move large values to SSM Parameter Store or a file in the code",
        );
    }
    if let Some(layers) = &f.layers {
        if layers.len() > 5 {
            c.at_value(
                &c.source(name, "layers"),
                format!("{} layers; Lambda allows 5", layers.len()),
                "merge layers or ship the code in the function",
            );
        }
        for (i, arn) in layers.iter().enumerate() {
            let parts: Vec<&str> = arn.split(':').collect();
            let ok = arn.contains("${")
                || (parts.len() == 8
                    && parts[0] == "arn"
                    && parts[2] == "lambda"
                    && parts[5] == "layer"
                    && parts[7].parse::<u64>().is_ok());
            if !ok {
                c.at_value(
                    &c.source(name, &format!("layers.{i}")),
                    format!("`{arn}` is not a layer version ARN"),
                    "layer ARNs look like arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION",
                );
            }
        }
    }
    if let Some(dlq) = &f.dead_letter_queue {
        let path = c.source(name, "dead_letter_queue");
        check_async_target(c, &path, dlq, "dead-letter queue");
    }
    if let Some(a) = &f.async_config {
        if let Some(r) = a.max_retries {
            c.range(
                &c.source(name, "async.max_retries"),
                r.into(),
                Limit {
                    what: "max_retries",
                    min: 0,
                    max: 2,
                    unit: "",
                    hint: "Lambda retries an async event at most 2 times",
                },
            );
        }
        if let Some(age) = a.max_event_age {
            c.range(
                &c.source(name, "async.max_event_age"),
                age.0,
                Limit {
                    what: "max_event_age",
                    min: 60,
                    max: 21_600,
                    unit: " s",
                    hint: "Lambda keeps async events 60 seconds to 6 hours",
                },
            );
        }
        if let Some(d) = &a.on_failure {
            let path = c.source(name, "async.on_failure");
            let set: Vec<&str> = [
                ("queue", d.queue.is_some()),
                ("bus", d.bus.is_some()),
                ("function", d.function.is_some()),
                ("topic_arn", d.topic_arn.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, s)| s.then_some(k))
            .collect();
            if set.len() != 1 {
                c.at_key(
                    &path,
                    format!("on_failure needs exactly one destination, found {}", set.len()),
                    "set one of `queue`, `bus`, `function` or `topic_arn`",
                );
            }
            if let Some(q) = &d.queue {
                check_async_target(c, &format!("{path}.queue"), q, "on_failure queue");
            }
            if let Some(b) = &d.bus {
                c.at_value(&format!("{path}.bus"), format!("unknown bus `{b}`"), "this stack defines no buses");
            }
            if let Some(target) = &d.function {
                if !spec.functions.contains_key(target) {
                    unknown_name(c, &format!("{path}.function"), "function", target, spec.functions.keys());
                } else if target == name {
                    c.at_value(
                        &format!("{path}.function"),
                        format!("function `{name}` cannot send its own failures to itself"),
                        "send them to a queue or another function",
                    );
                }
            }
            if let Some(t) = &d.topic_arn
                && !t.contains("${")
                && (!t.starts_with("arn:aws") || !t.contains(":sns:"))
            {
                c.at_value(
                    &format!("{path}.topic_arn"),
                    format!("`{t}` is not an SNS topic ARN"),
                    "topic ARNs look like arn:aws:sns:REGION:ACCOUNT:NAME",
                );
            }
        }
    }
    for t in f.access.tables.keys() {
        if !spec.tables.contains_key(t) {
            let path = c.source(name, &format!("access.tables.{t}"));
            let known: Vec<&str> = spec.tables.keys().map(String::as_str).collect();
            let hint = did_you_mean(t, known.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "grant access to tables defined under `tables:`".into());
            c.at_key(&path, format!("unknown table `{t}`"), hint);
        }
    }
    for w in f.access.websockets.keys() {
        if !spec.websockets.contains_key(w) {
            let path = c.source(name, &format!("access.websockets.{w}"));
            unknown_name(c, &path, "websocket", w, spec.websockets.keys());
        }
    }
    for q in f.access.queues.keys() {
        if !spec.queues.contains_key(q) {
            let path = c.source(name, &format!("access.queues.{q}"));
            let known: Vec<&str> = spec.queues.keys().map(String::as_str).collect();
            let hint = did_you_mean(q, known.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "grant access to queues defined under `queues:`".into());
            c.at_key(&path, format!("unknown queue `{q}`"), hint);
        }
    }
    for (i, perm) in f.permissions.iter().enumerate() {
        let p = c.source(name, &format!("permissions.{i}"));
        if perm.allow.is_empty() || perm.resources.is_empty() {
            c.at_key(
                &p,
                "a permission needs at least one action in `allow` and one ARN in `resources`".into(),
                "e.g. { allow: [s3:GetObject], resources: [\"arn:aws:s3:::bucket/*\"] }",
            );
        }
        for a in &perm.allow {
            let ok = a.split_once(':').is_some_and(|(svc, act)| {
                !svc.is_empty()
                    && !act.is_empty()
                    && svc.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
                    && act.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '*')
            });
            if !ok {
                c.at_value(
                    &format!("{p}.allow"),
                    format!("`{a}` is not an IAM action"),
                    "actions look like service:Action, e.g. s3:GetObject or dynamodb:*",
                );
            }
        }
    }
    check_tags(c, &c.source(name, "tags"), &f.tags);
    if let Some(a) = &f.alias {
        let p = c.source(name, "alias");
        let ok = !a.name.is_empty()
            && a.name.len() <= 128
            && !a.name.chars().all(|ch| ch.is_ascii_digit())
            && a.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            c.at_value(
                &format!("{p}.name"),
                format!("invalid alias name `{}`", a.name),
                "an alias is letters, digits, `-` and `_`, and not only digits (those are versions)",
            );
        }
        if a.provisioned_concurrency == Some(0) {
            c.at_value(
                &format!("{p}.provisioned_concurrency"),
                "provisioned_concurrency must be at least 1".into(),
                "remove it to keep none",
            );
        }
        if a.keep_versions == Some(0) {
            c.at_value(
                &format!("{p}.keep_versions"),
                "keep_versions must be at least 1".into(),
                "the alias's own version is always kept",
            );
        }
        if let Some(d) = &a.deployment {
            if let Err((m, h)) = crate::rollout::check_steps(d.strategy, &d.steps) {
                c.at_value(&format!("{p}.deployment.steps"), m, h);
            }
            if let Some(i) = d.interval {
                c.range(
                    &format!("{p}.deployment.interval"),
                    i.0,
                    Limit {
                        what: "interval",
                        min: 1,
                        max: 86_400,
                        unit: " s",
                        hint: "each step holds 1 second to 1 day",
                    },
                );
            }
            for (i, alarm) in d.alarms.iter().enumerate() {
                if alarm.is_empty() || alarm.len() > 255 {
                    c.at_value(
                        &format!("{p}.deployment.alarms.{i}"),
                        format!("`{alarm}` is not a CloudWatch alarm name"),
                        "alarm names are 1 to 255 characters",
                    );
                }
            }
        }
    }
}

fn check_events(c: &mut Checker, name: &str, events: &[EventSpec]) {
    let spec = &c.l.spec;
    let mut seen: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let base = format!("functions.{name}.events.{i}");
        let address = e.address(name);
        if seen.contains(&address) {
            c.at_key(&base, format!("two events of `{name}` are both {address}"), "give each a distinct `name:`");
        }
        seen.push(address);
        match e {
            EventSpec::Sqs(s) => {
                let p = |f: &str| format!("{base}.sqs.{f}");
                let Some(q) = spec.queues.get(&s.queue) else {
                    unknown_name(c, &p("queue"), "queue", &s.queue, spec.queues.keys());
                    continue;
                };
                let batch = s.batch_size.unwrap_or(10);
                let max = if q.fifo { 10 } else { 10_000 };
                let hint = if q.fifo {
                    "Lambda reads at most 10 messages at a time from a FIFO queue"
                } else {
                    "SQS sources take 1 to 10000 records per batch"
                };
                c.range(&p("batch_size"), batch.into(), Limit { what: "batch_size", min: 1, max, unit: "", hint });
                if batch > 10 && s.batching_window.is_none_or(|w| w.0 == 0) {
                    c.at_value(
                        &p("batch_size"),
                        format!("batch_size {batch} needs a batching_window"),
                        "SQS batches above 10 records need `batching_window` of at least 1s",
                    );
                }
                if let Some(w) = s.batching_window {
                    c.range(
                        &p("batching_window"),
                        w.0,
                        Limit {
                            what: "batching_window",
                            min: 0,
                            max: 300,
                            unit: " s",
                            hint: "Lambda waits at most 300 seconds to fill a batch",
                        },
                    );
                }
                if let Some(m) = s.max_concurrency {
                    c.range(
                        &p("max_concurrency"),
                        m.into(),
                        Limit {
                            what: "max_concurrency",
                            min: 2,
                            max: 1000,
                            unit: "",
                            hint: "SQS sources allow 2 to 1000 concurrent invocations",
                        },
                    );
                }
                if s.on_failure.is_some() {
                    c.at_key(
                        &p("on_failure"),
                        "on_failure applies to stream sources only".into(),
                        format!(
                            "failed SQS messages go to the queue's dead-letter queue: set `dead_letter:` on queue `{}`",
                            s.queue
                        ),
                    );
                }
                check_filters(c, &p("filter"), &s.filter);
            }
            EventSpec::Stream(s) => {
                let p = format!("{base}.stream");
                match (&s.table, &s.arn) {
                    (Some(t), None) => match spec.tables.get(t) {
                        None => unknown_name(c, &format!("{p}.table"), "table", t, spec.tables.keys()),
                        Some(table) if table.stream.is_none() => c.at_value(
                            &format!("{p}.table"),
                            format!("table `{t}` has no stream"),
                            format!("set `stream: new_and_old_images` (or another view) on table `{t}`"),
                        ),
                        Some(_) => {}
                    },
                    _ => c.at_key(
                        &p,
                        "a stream event names a `table` (and no `arn`)".into(),
                        "for a Kinesis stream use `kinesis: { arn: ... }`",
                    ),
                }
                check_stream(c, &p, s);
            }
            EventSpec::Kinesis(s) => {
                let p = format!("{base}.kinesis");
                match (&s.arn, &s.table) {
                    (Some(arn), None) => {
                        let ok = arn.contains("${")
                            || (arn.starts_with("arn:aws") && arn.contains(":kinesis:") && arn.contains(":stream/"));
                        if !ok {
                            c.at_value(
                                &format!("{p}.arn"),
                                format!("`{arn}` is not a Kinesis stream ARN"),
                                "Kinesis stream ARNs look like arn:aws:kinesis:REGION:ACCOUNT:stream/NAME",
                            );
                        }
                    }
                    _ => c.at_key(
                        &p,
                        "a kinesis event names an `arn` (and no `table`)".into(),
                        "for a DynamoDB stream use `stream: { table: ... }`",
                    ),
                }
                check_stream(c, &p, s);
            }
            EventSpec::Schedule(s) => {
                let r = s.rule();
                let p = format!("{base}.schedule");
                let expr_path =
                    if matches!(s, super::ScheduleEvent::Full(_)) { format!("{p}.expression") } else { p.clone() };
                if let Err((m, h)) = rules::schedule(&r.expression) {
                    c.at_value(&expr_path, m, h);
                }
                check_rule_name(c, name, &p, r.name.as_deref(), &e.rule_suffix().unwrap_or_default());
                check_delivery(c, &p, r.dead_letter.as_ref(), r.max_retries, r.max_event_age);
            }
            EventSpec::Eventbridge(b) => {
                let p = format!("{base}.eventbridge");
                if let Some(bus) = &b.bus
                    && !spec.buses.contains_key(bus)
                {
                    unknown_name(c, &format!("{p}.bus"), "bus", bus, spec.buses.keys());
                }
                if let Err((m, h)) = rules::pattern(&b.pattern) {
                    c.at_value(&format!("{p}.pattern"), m, h);
                }
                let inputs = [b.input.is_some(), b.input_path.is_some(), b.input_transformer.is_some()]
                    .iter()
                    .filter(|x| **x)
                    .count();
                if inputs > 1 {
                    c.at_key(
                        &p,
                        "set at most one of `input`, `input_path` and `input_transformer`".into(),
                        "EventBridge sends one of them to the target",
                    );
                }
                if let Some(t) = &b.input_transformer {
                    for (k, path) in &t.paths {
                        if !path.starts_with('$') {
                            c.at_value(
                                &format!("{p}.input_transformer.paths.{k}"),
                                format!("`{path}` is not a JSON path"),
                                "paths start with `$`, e.g. $.detail.id",
                            );
                        }
                    }
                }
                check_rule_name(c, name, &p, b.name.as_deref(), &e.rule_suffix().unwrap_or_default());
                check_delivery(c, &p, b.dead_letter.as_ref(), b.max_retries, b.max_event_age);
            }
        }
    }
}

fn check_stream(c: &mut Checker, p: &str, s: &StreamSource) {
    let f = |x: &str| format!("{p}.{x}");
    if s.starting_position.is_none() {
        c.at_key(
            p,
            "a stream source needs `starting_position`".into(),
            "use `latest` (new records only) or `trim_horizon` (everything retained)",
        );
    }
    if let Some(b) = s.batch_size {
        c.range(
            &f("batch_size"),
            b.into(),
            Limit {
                what: "batch_size",
                min: 1,
                max: 10_000,
                unit: "",
                hint: "stream sources take 1 to 10000 records per batch",
            },
        );
    }
    if let Some(w) = s.batching_window {
        c.range(
            &f("batching_window"),
            w.0,
            Limit {
                what: "batching_window",
                min: 0,
                max: 300,
                unit: " s",
                hint: "Lambda waits at most 300 seconds to fill a batch",
            },
        );
    }
    if let Some(r) = s.max_retries {
        c.range(
            &f("max_retries"),
            r.into(),
            Limit { what: "max_retries", min: 0, max: 10_000, unit: "", hint: "stream sources retry 0 to 10000 times" },
        );
    }
    if let Some(a) = s.maximum_record_age {
        c.range(
            &f("maximum_record_age"),
            a.0,
            Limit {
                what: "maximum_record_age",
                min: 60,
                max: 604_800,
                unit: " s",
                hint: "records may be 60 seconds to 7 days old",
            },
        );
    }
    if let Some(n) = s.parallelization_factor {
        c.range(
            &f("parallelization_factor"),
            n.into(),
            Limit {
                what: "parallelization_factor",
                min: 1,
                max: 10,
                unit: "",
                hint: "Lambda processes 1 to 10 batches per shard at once",
            },
        );
    }
    if let Some(w) = s.tumbling_window {
        c.range(
            &f("tumbling_window"),
            w.0,
            Limit {
                what: "tumbling_window",
                min: 0,
                max: 900,
                unit: " s",
                hint: "tumbling windows last at most 900 seconds",
            },
        );
    }
    if let Some(d) = &s.on_failure {
        check_failure_destination(c, &f("on_failure"), d);
    }
    check_filters(c, &f("filter"), &s.filter);
}

fn check_failure_destination(c: &mut Checker, p: &str, d: &FailureDestination) {
    match (&d.queue, &d.topic_arn) {
        (Some(q), None) => check_async_target(c, &format!("{p}.queue"), q, "on_failure queue"),
        (None, Some(t)) if t.contains(":sns:") || t.contains("${") => {}
        (None, Some(t)) => c.at_value(
            &format!("{p}.topic_arn"),
            format!("`{t}` is not an SNS topic ARN"),
            "topic ARNs look like arn:aws:sns:REGION:ACCOUNT:NAME",
        ),
        _ => c.at_key(
            p,
            "on_failure needs exactly one of `queue` and `topic_arn`".into(),
            "e.g. on_failure: { queue: orders-dlq }",
        ),
    }
}

fn check_filters(c: &mut Checker, p: &str, filters: &[serde_json::Value]) {
    if filters.len() > 5 {
        c.at_value(
            p,
            format!("{} filter patterns; Lambda allows 5", filters.len()),
            "combine patterns, or filter in the function",
        );
    }
    for (i, f) in filters.iter().enumerate() {
        if let Err((m, h)) = rules::pattern(f) {
            c.at_value(&format!("{p}.{i}"), m, h);
        }
    }
}

/// Rule names are `{stack}-{stage}-{function}-{suffix}`, at most 64 characters.
fn check_rule_name(c: &mut Checker, function: &str, p: &str, name: Option<&str>, suffix: &str) {
    if let Some(n) = name
        && !name_ok(n)
    {
        c.at_value(&format!("{p}.name"), format!("invalid rule name `{n}`"), "use letters, digits, `-` and `_`");
    }
    let physical = c.l.physical_name(&format!("{function}-{suffix}"));
    if physical.len() > 64 {
        c.at_key(
            p,
            format!("rule name `{physical}` is {} characters; EventBridge allows 64", physical.len()),
            "shorten the function or event name",
        );
    }
}

fn check_delivery(
    c: &mut Checker,
    p: &str,
    dlq: Option<&RuleDeadLetter>,
    retries: Option<u32>,
    age: Option<super::Duration>,
) {
    if let Some(r) = retries {
        c.range(
            &format!("{p}.max_retries"),
            r.into(),
            Limit {
                what: "max_retries",
                min: 0,
                max: 185,
                unit: "",
                hint: "EventBridge retries delivery 0 to 185 times",
            },
        );
    }
    if let Some(a) = age {
        c.range(
            &format!("{p}.max_event_age"),
            a.0,
            Limit {
                what: "max_event_age",
                min: 60,
                max: 86_400,
                unit: " s",
                hint: "EventBridge keeps undelivered events 60 seconds to 24 hours",
            },
        );
    }
    if let Some(d) = dlq {
        let spec = &c.l.spec;
        match spec.queues.get(&d.queue) {
            None => unknown_name(c, &format!("{p}.dead_letter.queue"), "queue", &d.queue, spec.queues.keys()),
            Some(q) if q.fifo => c.at_value(
                &format!("{p}.dead_letter.queue"),
                format!("the dead-letter queue `{}` is a FIFO queue", d.queue),
                "EventBridge dead-letter queues must be standard queues",
            ),
            Some(_) => {}
        }
    }
}

/// A Lambda async target named as a stack queue or an ARN: must exist and must not be FIFO.
fn check_async_target(c: &mut Checker, path: &str, target: &str, what: &str) {
    let spec = &c.l.spec;
    if target.starts_with("arn:") {
        if target.contains(":sqs:") && target.ends_with(".fifo") {
            c.at_value(
                path,
                format!("the {what} `{target}` is a FIFO queue"),
                "Lambda sends failed async events only to standard queues or SNS topics",
            );
        } else if !target.contains(":sqs:") && !target.contains(":sns:") {
            c.at_value(
                path,
                format!("the {what} `{target}` is neither an SQS queue nor an SNS topic"),
                "use a queue of this stack, or an SQS/SNS ARN",
            );
        }
        return;
    }
    match spec.queues.get(target) {
        None => unknown_name(c, path, "queue", target, spec.queues.keys()),
        Some(q) if q.fifo => c.at_value(
            path,
            format!("the {what} `{target}` is a FIFO queue"),
            "Lambda sends failed async events only to standard queues or SNS topics; use a standard queue",
        ),
        Some(_) => {}
    }
}

/// Every `${section.name.attr}` left after static expansion must name something real.
fn check_references(c: &mut Checker, node: &Node, path: String) {
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                if path.is_empty() && (e.key == "vars" || e.key == "stages") {
                    continue;
                }
                let p = if path.is_empty() { e.key.clone() } else { format!("{path}.{}", e.key) };
                check_references(c, &e.value, p);
            }
        }
        Value::Seq(items) => {
            for (i, n) in items.iter().enumerate() {
                check_references(c, n, format!("{path}.{i}"));
            }
        }
        Value::Scalar { text, .. } if text.contains("${") => {
            for r in interp::references(text) {
                if let Err((msg, hint)) = resource_ref_ok(c.l, &r) {
                    c.at_value(&path, msg, hint);
                }
            }
        }
        _ => {}
    }
}

fn resource_ref_ok(l: &Loaded, r: &Ref) -> Result<(), (String, String)> {
    let Ref::Resource { section, name, attr } = r else { return Ok(()) };
    let (names, attrs): (BTreeSet<&String>, &[&str]) = match section.as_str() {
        "queues" => (l.spec.queues.keys().collect(), &["url", "arn", "name"]),
        "functions" => (l.spec.functions.keys().collect(), &["arn", "name"]),
        "tables" => (l.spec.tables.keys().collect(), &["name", "arn", "stream_arn"]),
        "buses" => (l.spec.buses.keys().collect(), &["name", "arn"]),
        "websockets" => (l.spec.websockets.keys().collect(), &["id", "url", "callback_url"]),
        other => {
            return Err((
                format!("{r} refers to `{other}`, which this stack does not define"),
                "references can name queues, functions, tables, buses and websockets".into(),
            ));
        }
    };
    if !names.contains(name) {
        let hint = match did_you_mean(name, names.iter().map(|s| s.as_str())) {
            Some(s) => format!("did you mean `${{{section}.{s}.{attr}}}`?"),
            None => format!("define `{name}` under `{section}:`"),
        };
        return Err((format!("{r} refers to an unknown {}", &section[..section.len() - 1]), hint));
    }
    if section == "tables" && attr == "stream_arn" && l.spec.tables[name].stream.is_none() {
        return Err((format!("{r}: table `{name}` has no stream"), format!("set `stream:` on table `{name}`")));
    }
    if !attrs.contains(&attr.as_str()) {
        return Err((
            format!("{r}: `{attr}` is not an attribute of a {}", &section[..section.len() - 1]),
            format!("use one of {}", attrs.join(", ")),
        ));
    }
    Ok(())
}

//! Hostile input: a corpus of nasty specs and seeded random mutations of the
//! examples. Loading and graph building must never panic or hang, and every
//! rejection must say where: file plus line/column or address.

use crate::support::root;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// Loads and builds `text`; panics (failing the test) on a panic or an unlocated error.
fn check(name: &str, text: &str) -> Result<(), Vec<slx::diag::Diagnostic>> {
    let dir = root().join("examples/queue-worker");
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let loaded = slx::spec::load_str(text, "slx.yaml", &dir, "dev", &|_| None).map_err(|d| d.0)?;
        slx::graph::build(&loaded, &HashMap::new()).map(|_| ()).map_err(|d| d.0)
    }));
    assert!(started.elapsed() < Duration::from_secs(10), "{name}: took {:?}", started.elapsed());
    let result = result.unwrap_or_else(|_| panic!("{name}: slx panicked on:\n{}", &text[..text.len().min(2000)]));
    if let Err(ds) = &result {
        assert!(!ds.is_empty(), "{name}: rejected without a diagnostic");
        for d in ds {
            assert_eq!(d.file.as_deref(), Some("slx.yaml"), "{name}: no file in {d:?}");
            assert!(d.mark.is_some() || d.address.is_some(), "{name}: no line/column or address in {d:?}");
            assert!(!d.message.is_empty(), "{name}: empty message");
        }
    }
    result
}

fn rejected(name: &str, text: &str, message: &str) {
    let ds = check(name, text).expect_err(name);
    assert!(ds.iter().any(|d| d.message.contains(message)), "{name}: expected `{message}` in {ds:?}");
}

#[test]
fn hostile_corpus() {
    // Alias expansion bomb ("billion laughs").
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    bomb.push_str("stack: boom\nvars: { v: *a11 }\n");
    rejected("alias bomb", &bomb, "expands to more than 1000000 nodes");

    // Deep nesting, in flow and block style.
    rejected(
        "deep flow",
        &format!("stack: deep\nvars: {{ v: {}{} }}\n", "[".repeat(10_000), "]".repeat(10_000)),
        "recursion limit",
    );
    let mut block = String::from("stack: deep\nvars:\n");
    for i in 0..200 {
        block.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
    }
    rejected("deep block", &block, "nesting deeper than 64 levels");

    // A huge but valid spec is accepted (and quickly).
    let mut huge = String::from(
        "stack: big\ndefaults: { runtime: python3.12, handler: app.handler, code: ./src/worker }\nfunctions:\n",
    );
    for i in 0..3000 {
        huge.push_str(&format!("  f{i}: {{ memory: 256, environment: {{ NUM: \"{i}\" }} }}\n"));
    }
    assert!(check("huge", &huge).is_ok(), "3,000 functions are a valid spec");
    // A huge junk line.
    let _ =
        check("junk", &format!("stack: x\nvars: {{ v: \"{}\" }}\n{}", "\u{1F600}".repeat(100_000), "\0".repeat(100)));

    // Unicode and odd names.
    rejected(
        "unicode function",
        "stack: app\nfunctions:\n  функция: { handler: a.h, runtime: python3.12, code: . }\n",
        "name",
    );
    rejected("unicode stack", "stack: приложение\n", "stack");
    rejected("empty key", "stack: app\nqueues:\n  '': {}\n", "name");

    // References to nothing, to themselves, in circles.
    rejected(
        "dangling",
        "stack: app\nfunctions:\n  f: { handler: a.h, runtime: python3.12, code: ., environment: { QQ: \"${queues.nope.url}\" } }\n",
        "nope",
    );
    rejected(
        "self var",
        "stack: app\nvars: { a: \"${vars.a}\" }\nqueues: { q: { tags: { t: \"${vars.a}\" } } }\n",
        "vars.a",
    );
    rejected(
        "var cycle",
        "stack: app\nvars: { a: \"${vars.b}\", b: \"${vars.a}\" }\nqueues: { q: { tags: { t: \"${vars.a}\" } } }\n",
        "vars.",
    );
    rejected("self dlq", "stack: app\nqueues:\n  q: { dead_letter: { queue: q, max_receives: 3 } }\n", "q");
    rejected(
        "function cycle",
        "stack: app\ndefaults: { runtime: python3.12, handler: a.h, code: . }\nfunctions:\n  a: { environment: { BB: \"${functions.b.arn}\" } }\n  b: { environment: { AA: \"${functions.a.arn}\" } }\n",
        "cycle",
    );
    rejected("unterminated ref", "stack: app\nqueues: { q: { tags: { t: \"${vars.\" } } }\n", "${");

    // Not a spec at all.
    for (name, text) in [
        ("empty", ""),
        ("scalar", "42\n"),
        ("list", "- a\n- b\n"),
        ("tabs", "stack:\tapp\n\tqueues: {}\n"),
        ("bad utf8-ish", "stack: \u{FFFD}\u{FFFE}\n"),
    ] {
        assert!(check(name, text).is_err(), "{name} is rejected");
    }
}

/// Seeded random edits of every example: no panic, no hang, every error located.
#[test]
fn mutated_examples_never_panic() {
    let examples: Vec<String> = ["queue-worker", "order-pipeline", "websocket-chat", "canary-release"]
        .iter()
        .map(|e| std::fs::read_to_string(root().join("examples").join(e).join("slx.yaml")).unwrap())
        .collect();
    const PIECES: &[&str] = &[
        ":",
        "{",
        "}",
        "[",
        "]",
        "-",
        "$",
        "${",
        "}",
        "\"",
        "'",
        "\n",
        " ",
        "  ",
        "#",
        "&a",
        "*a",
        "!",
        "|",
        ">",
        "?",
        ",",
        "0",
        "-1",
        "99999999999999999999",
        "1e400",
        "null",
        "~",
        "true",
        "${vars.x}",
        "${queues.",
        "<<: ",
        "\t",
        "é",
        "\u{1F600}",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        // xorshift64*: reproducible without a dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    };
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..1500 {
        let base = &examples[round % examples.len()];
        let mut text: Vec<char> = base.chars().collect();
        for _ in 0..1 + next(4) {
            let at = next(text.len() + 1);
            match next(4) {
                0 if !text.is_empty() => {
                    let end = (at + 1 + next(8)).min(text.len());
                    text.drain(at.min(text.len())..end);
                }
                1 => {
                    let lines: Vec<String> = text.iter().collect::<String>().lines().map(String::from).collect();
                    let line = &lines[next(lines.len())];
                    let pos = text.iter().collect::<String>().find(line.as_str()).unwrap_or(0);
                    let s: String = text.iter().collect();
                    text = format!("{}{line}\n{}", &s[..pos], &s[pos..]).chars().collect();
                }
                _ => {
                    let piece = PIECES[next(PIECES.len())];
                    text.splice(at.min(text.len())..at.min(text.len()), piece.chars());
                }
            }
        }
        let text: String = text.into_iter().collect();
        match check(&format!("mutation {round}"), &text) {
            Ok(()) => accepted += 1,
            Err(_) => rejected += 1,
        }
    }
    assert!(
        accepted >= 10 && rejected >= 500,
        "the mutations exercise both paths: {accepted} accepted, {rejected} rejected"
    );
}

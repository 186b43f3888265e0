//! Snapshot tests of the human and Markdown plan renderings.
//!
//! Each `tests/snapshots/NAME.plan.json` is rendered and compared with
//! `NAME.txt` and `NAME.md`. After an intended change, regenerate them with
//! `SLX_UPDATE_SNAPSHOTS=1 cargo test snapshots` and review the diff.

use crate::support::{check_schema, root};
use slx::plan::Plan;
use slx::render::{self, Style};
use std::path::Path;

fn check(path: &Path, actual: &str) {
    if std::env::var_os("SLX_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs from the rendering; if the change is intended, run SLX_UPDATE_SNAPSHOTS=1 cargo test snapshots\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn snapshot(name: &str) {
    let dir = root().join("tests/snapshots");
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.plan.json"))).unwrap())
        .expect("the fixture is a plan");
    check(&dir.join(format!("{name}.txt")), &render::human(&plan, Style { color: false }));
    check(&dir.join(format!("{name}.md")), &render::markdown(&plan));
}

#[test]
fn three_way_plan() {
    snapshot("three-way");
}

#[test]
fn two_way_plan() {
    snapshot("two-way");
}

#[test]
fn drift_only_view() {
    let dir = root().join("tests/snapshots");
    let plan: Plan = serde_json::from_str(&std::fs::read_to_string(dir.join("three-way.plan.json")).unwrap()).unwrap();
    check(&dir.join("drift-only.txt"), &render::human(&plan.drift_only(), Style { color: false }));
}

/// The fixtures are plans by the documented schema, so the snapshots show real shapes.
#[test]
fn fixtures_match_the_plan_schema() {
    let dir = root().join("tests/snapshots");
    check_schema(
        &root().join("schemas/plan.schema.json"),
        &[&dir.join("three-way.plan.json"), &dir.join("two-way.plan.json")],
    );
}

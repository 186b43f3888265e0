//! Progressive delivery, as pure functions: the schedule of traffic weights an
//! alias moves through, and which old versions may be deleted.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    AllAtOnce,
    Canary,
    Linear,
}

/// One stop of a rollout: `weight` % of traffic on the new version, held for `hold` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub weight: u32,
    pub hold: u64,
}

/// The steps a rollout takes. `steps` lists the intermediate percentages; the
/// last stop is always 100 % with no hold. Without steps, canary sends 10 %
/// first and linear moves in tens.
pub fn schedule(strategy: Strategy, steps: &[u32], interval: u64) -> Vec<Step> {
    let intermediate: Vec<u32> = match (strategy, steps.is_empty()) {
        (Strategy::AllAtOnce, _) => Vec::new(),
        (Strategy::Canary, true) => vec![10],
        (Strategy::Linear, true) => (1..10).map(|i| i * 10).collect(),
        (_, false) => steps.to_vec(),
    };
    intermediate
        .into_iter()
        .map(|weight| Step { weight, hold: interval })
        .chain([Step { weight: 100, hold: 0 }])
        .collect()
}

/// Human form of a schedule: `10% for 5m → 50% for 5m → 100%`.
pub fn describe(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| if s.hold > 0 { format!("{}% for {}", s.weight, seconds(s.hold)) } else { format!("{}%", s.weight) })
        .collect::<Vec<_>>()
        .join(" → ")
}

fn seconds(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Problems with a rollout's steps, as (message, hint).
pub fn check_steps(strategy: Strategy, steps: &[u32]) -> Result<(), (String, String)> {
    if strategy == Strategy::AllAtOnce && !steps.is_empty() {
        return Err(("all_at_once takes no steps".into(), "remove `steps`, or use canary or linear".into()));
    }
    if let Some(bad) = steps.iter().find(|w| !(1..=99).contains(*w)) {
        return Err((
            format!("step {bad}% is out of range 1..99"),
            "steps are the percentages before 100%, e.g. [10, 50]".into(),
        ));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(("steps must increase".into(), "e.g. [10, 25, 50]".into()));
    }
    Ok(())
}

/// Published versions to delete: all but the newest `keep`, never one an alias routes to.
pub fn prune(published: &[u64], keep: usize, referenced: &BTreeSet<u64>) -> Vec<u64> {
    let mut sorted = published.to_vec();
    sorted.sort_unstable();
    let cut = sorted.len().saturating_sub(keep);
    sorted[..cut].iter().copied().filter(|v| !referenced.contains(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(s: &[Step]) -> Vec<(u32, u64)> {
        s.iter().map(|s| (s.weight, s.hold)).collect()
    }

    #[test]
    fn schedules_end_at_one_hundred() {
        assert_eq!(weights(&schedule(Strategy::AllAtOnce, &[], 300)), vec![(100, 0)]);
        assert_eq!(weights(&schedule(Strategy::Canary, &[], 300)), vec![(10, 300), (100, 0)]);
        assert_eq!(weights(&schedule(Strategy::Canary, &[10, 50], 60)), vec![(10, 60), (50, 60), (100, 0)]);
        let linear = schedule(Strategy::Linear, &[], 60);
        assert_eq!(linear.len(), 10);
        assert_eq!((linear[0].weight, linear[8].weight, linear[9].weight), (10, 90, 100));
        assert_eq!(describe(&schedule(Strategy::Canary, &[10, 50], 300)), "10% for 5m → 50% for 5m → 100%");
    }

    #[test]
    fn steps_are_checked() {
        assert!(check_steps(Strategy::Linear, &[10, 20, 50]).is_ok());
        assert_eq!(check_steps(Strategy::AllAtOnce, &[10]).unwrap_err().0, "all_at_once takes no steps");
        assert_eq!(check_steps(Strategy::Canary, &[0]).unwrap_err().0, "step 0% is out of range 1..99");
        assert_eq!(check_steps(Strategy::Canary, &[100]).unwrap_err().0, "step 100% is out of range 1..99");
        assert_eq!(check_steps(Strategy::Linear, &[50, 20]).unwrap_err().0, "steps must increase");
    }

    #[test]
    fn pruning_keeps_the_newest_and_what_aliases_use() {
        let published = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(prune(&published, 5, &BTreeSet::new()), vec![1, 2, 3]);
        assert_eq!(prune(&published, 5, &[2].into()), vec![1, 3], "an alias still routes to 2");
        assert_eq!(prune(&[3, 1, 2], 5, &BTreeSet::new()), Vec::<u64>::new());
        assert_eq!(prune(&[9, 10, 2], 1, &[9].into()), vec![2]);
    }
}

//! The deployment record: what slx last applied, who deployed when, and the lock.
//!
//! Kept in one DynamoDB table (default `slx-state`) shared by every stack; a
//! stack and stage own the items under one partition key. Live state stays the
//! truth: the record only lets a plan tell *why* a field differs (the spec
//! changed, AWS was changed by hand, or both). Entries are written as each
//! resource finishes, so an interrupted deploy leaves a true record.

use crate::resource::{Kind, Outputs};
use anyhow::{Result, bail};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_TABLE: &str = "slx-state";

/// How long a lock lasts without renewal; a holder renews it every third of this.
pub const LEASE_SECONDS: u64 = 60;

/// One stack and stage: the partition of the record they own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub stack: String,
    pub stage: String,
}

impl Key {
    pub fn partition(&self) -> String {
        format!("{}#{}", self.stack, self.stage)
    }
}

/// The configuration slx last applied to one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub address: String,
    pub kind: Kind,
    pub name: String,
    pub config: Value,
    /// What AWS answered when it was applied (an alias's revision, version
    /// and that version's release), for reads to recall instead of asking
    /// again while the resource is unchanged. Empty in entries older than it.
    #[serde(default, skip_serializing_if = "Outputs::is_empty")]
    pub outputs: Outputs,
    pub applied_at: String,
    /// The deployment that applied it.
    pub deployment: String,
}

/// One `slx deploy` or `slx destroy` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Sortable: the start time, then the process.
    pub id: String,
    pub command: String,
    pub who: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `running` until the run ends: `succeeded`, `failed` or `interrupted`.
    pub result: String,
    /// What the plan held, e.g. `2 to create, 1 to update`.
    pub summary: String,
}

/// The lock on one stack and stage: held until `expires` unless renewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    pub operation: String,
    /// Proves ownership on renew and release.
    pub token: String,
    pub acquired: u64,
    /// Seconds since the epoch; 0 once released.
    pub expires: u64,
    /// Counts acquisitions: a run that planned at generation N may only take
    /// the lock at N, so nobody applies a plan another run has overtaken.
    pub generation: u64,
}

impl Lease {
    pub fn held(&self, now: u64) -> bool {
        self.expires >= now
    }

    /// The lease if someone holds it now (`lease.and_then(Lease::current)`).
    pub fn current(self) -> Option<Lease> {
        self.held(now()).then_some(self)
    }
}

/// What an attempt to take the lock found.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Taken,
    /// Someone holds an unexpired lease.
    Held(Lease),
    /// Another run took and released the lock since we looked: plan again.
    Moved,
}

/// Where the record lives. [`crate::provider::Aws::record`] implements it on DynamoDB.
#[async_trait]
pub trait Store: Send + Sync {
    /// The table's name, for messages.
    fn table(&self) -> &str;

    /// Creates the table (with point-in-time recovery) unless it exists.
    async fn ensure(&self) -> Result<()>;

    /// Every entry of `key`; None when the table does not exist.
    async fn entries(&self, key: &Key) -> Result<Option<Vec<Entry>>>;

    async fn put_entry(&self, key: &Key, entry: &Entry) -> Result<()>;

    async fn remove_entry(&self, key: &Key, address: &str) -> Result<()>;

    async fn put_deployment(&self, key: &Key, d: &Deployment) -> Result<()>;

    /// The newest `limit` deployments, newest first; empty when the table does not exist.
    async fn deployments(&self, key: &Key, limit: usize) -> Result<Vec<Deployment>>;

    /// The lock item as it is (held or not), None when there never was one.
    async fn lease(&self, key: &Key) -> Result<Option<Lease>>;

    /// Takes the lock if it is free and still at generation `seen` (0: never
    /// taken), writing the history item `opening` with it in one transaction.
    async fn try_lock(&self, key: &Key, lease: &Lease, seen: u64, now: u64, opening: &Deployment) -> Result<Attempt>;

    /// Extends a lease this run holds; false when it was lost (broken, or expired and taken).
    async fn renew(&self, key: &Key, token: &str, expires: u64) -> Result<bool>;

    /// Releases the lock: only when `token` matches, or whoever holds it when None.
    /// Returns the lease as it was.
    async fn unlock(&self, key: &Key, token: Option<&str>) -> Result<Option<Lease>>;
}

/// What the record says about one stack and stage, as a plan consumes it.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub table: String,
    /// False when the table or this stack and stage's entries do not exist
    /// yet: the plan is then two-way (spec against live) and names no causes.
    pub found: bool,
    pub entries: BTreeMap<String, Entry>,
}

impl Record {
    pub async fn load(store: &dyn Store, key: &Key) -> Result<Record> {
        let entries = store.entries(key).await?.unwrap_or_default();
        Ok(Record {
            table: store.table().to_string(),
            found: !entries.is_empty(),
            entries: entries.into_iter().map(|e| (e.address.clone(), e)).collect(),
        })
    }

    /// No record: plans are two-way.
    pub fn none(table: &str) -> Record {
        Record { table: table.to_string(), found: false, entries: BTreeMap::new() }
    }

    /// The recorded outputs of every address, for [`crate::live::Recall`].
    pub fn outputs(&self) -> BTreeMap<String, Outputs> {
        self.entries.iter().map(|(a, e)| (a.clone(), e.outputs.clone())).collect()
    }

    /// The entry for `address`, when the record is in use.
    pub fn entry(&self, address: &str) -> Option<&Entry> {
        if self.found { self.entries.get(address) } else { None }
    }
}

/// Why a field or a resource differs from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The spec changed since the last deploy.
    Spec,
    /// AWS was changed outside slx; a deploy reverts it.
    Drift,
    /// Both changed, to different values; a deploy applies the spec.
    Conflict,
    /// Owned by this stack and stage but in neither the spec nor the record
    /// (left by an interrupted run); a deploy deletes it.
    Orphan,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Spec => "spec",
            Cause::Drift => "drift",
            Cause::Conflict => "conflict",
            Cause::Orphan => "orphan",
        }
    }

    /// Whether AWS was changed outside slx.
    pub fn is_drift(self) -> bool {
        matches!(self, Cause::Drift | Cause::Conflict)
    }
}

/// The three-way view of one differing field (`spec != live`): compared with
/// what slx last applied, who moved? None when nothing was recorded.
pub fn classify(spec: &Value, recorded: Option<&Value>, live: &Value) -> Option<Cause> {
    let recorded = recorded?;
    Some(if recorded == live {
        Cause::Spec
    } else if recorded == spec {
        Cause::Drift
    } else {
        Cause::Conflict
    })
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// A UTC timestamp as `2026-11-21T09:30:05Z`.
pub fn timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Who is running slx: the GitHub actor and run in Actions, else user@host.
pub fn who() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(actor), Some(run)) = (var("GITHUB_ACTOR"), var("GITHUB_RUN_ID")) {
        let repo = var("GITHUB_REPOSITORY").map(|r| format!(" {r}")).unwrap_or_default();
        return format!("{actor} (GitHub Actions run {run}{repo})");
    }
    let user =
        var("USER").or_else(|| var("LOGNAME")).or_else(|| var("USERNAME")).unwrap_or_else(|| "unknown".to_string());
    let host = var("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{user}@{host}")
}

/// A token no other run will produce.
fn token() -> String {
    use sha2::Digest;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let digest = sha2::Sha256::digest(format!("{nanos} {} {}", std::process::id(), who()));
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Parses `90`, `90s`, `5m` or `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a duration; use e.g. 30s, 5m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// Describes a lease for messages: who, doing what, since when.
pub fn describe_lease(l: &Lease) -> String {
    format!("{} ({}, since {}, lease expires {})", l.holder, l.operation, timestamp(l.acquired), timestamp(l.expires))
}

/// Waits until nobody holds the lock, polling the lease; fails naming the
/// holder once `deadline` passes.
pub async fn wait_free(store: &dyn Store, key: &Key, held: Lease, deadline: std::time::Instant) -> Result<()> {
    let mut held = held;
    eprintln!("waiting for the lock held by {}", describe_lease(&held));
    loop {
        if std::time::Instant::now() >= deadline {
            bail!(
                "stack {} stage {} is locked by {}\nhint: wait for that run to finish, pass --lock-timeout 10m to wait for it, or break the lock of a dead run with `slx unlock --force --stage {}`",
                key.stack,
                key.stage,
                describe_lease(&held),
                key.stage
            );
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        match store.lease(key).await?.and_then(Lease::current) {
            Some(l) => held = l,
            None => return Ok(()),
        }
    }
}

/// A held lock, renewed in the background until released. `lost` resolves
/// when a renewal finds the lease gone, so the caller stops starting work.
pub struct Lock {
    store: Arc<dyn Store>,
    key: Key,
    token: String,
    renewer: tokio::task::JoinHandle<()>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl Lock {
    /// One attempt to take the lock at generation `seen`, opening the run's
    /// history item with it; Err(attempt) when it was not taken.
    pub async fn try_take(
        store: Arc<dyn Store>,
        key: &Key,
        seen: u64,
        opening: &Deployment,
    ) -> Result<std::result::Result<Lock, Attempt>> {
        let token = token();
        let at = now();
        let lease = Lease {
            holder: format!("{} pid {}", who(), std::process::id()),
            operation: opening.command.clone(),
            token: token.clone(),
            acquired: at,
            expires: at + LEASE_SECONDS,
            generation: seen + 1,
        };
        match store.try_lock(key, &lease, seen, at, opening).await? {
            Attempt::Taken => {}
            other => return Ok(Err(other)),
        }
        let (tx, lost) = tokio::sync::watch::channel(false);
        let (s, k, t) = (store.clone(), key.clone(), token.clone());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(LEASE_SECONDS / 3)).await;
                match s.renew(&k, &t, now() + LEASE_SECONDS).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = tx.send(true);
                        return;
                    }
                    // Transient: the lease still has two thirds left.
                    Err(e) => eprintln!("warning: cannot renew the lock: {e:#}"),
                }
            }
        });
        Ok(Ok(Lock { store, key: key.clone(), token, renewer, lost }))
    }

    /// Resolves when the lease was lost.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.lost.clone();
        async move {
            let _ = rx.wait_for(|lost| *lost).await;
        }
    }

    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        self.store.unlock(&self.key, Some(&self.token)).await.map(|_| ())
    }
}

/// Writes record entries as apply finishes steps.
pub struct Recorder {
    pub store: Arc<dyn Store>,
    pub key: Key,
    pub deployment: String,
}

impl Recorder {
    /// Records what was applied to `address` and what AWS answered;
    /// `_`-keys (apply steering) are not state.
    pub async fn applied(
        &self,
        address: &str,
        kind: Kind,
        name: &str,
        config: &Value,
        outputs: &Outputs,
    ) -> Result<()> {
        let mut config = config.clone();
        if let Value::Object(m) = &mut config {
            m.retain(|k, _| !k.starts_with('_'));
        }
        let entry = Entry {
            address: address.to_string(),
            kind,
            name: name.to_string(),
            config,
            outputs: outputs.clone(),
            applied_at: timestamp(now()),
            deployment: self.deployment.clone(),
        };
        self.store.put_entry(&self.key, &entry).await
    }

    pub async fn removed(&self, address: &str) -> Result<()> {
        self.store.remove_entry(&self.key, address).await
    }
}

/// A new deployment history item, `running` until finished.
pub fn start_deployment(command: &str, summary: String) -> Deployment {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let (now, millis) = (at.as_secs(), at.subsec_millis());
    let commit = std::env::var("GITHUB_SHA").ok().filter(|s| !s.is_empty());
    Deployment {
        // Sorts by start time to the millisecond; the pid tells apart runs started together.
        id: format!("{}.{millis:03}-{}", timestamp(now).trim_end_matches('Z'), std::process::id()),
        command: command.to_string(),
        who: who(),
        commit,
        started: timestamp(now),
        finished: None,
        result: "running".to_string(),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn three_way_classification() {
        // (spec, recorded, live) → cause; only called where spec != live.
        let cases: &[(Value, Option<Value>, Value, Option<Cause>)] = &[
            (json!(256), Some(json!(128)), json!(128), Some(Cause::Spec)),
            (json!(128), Some(json!(128)), json!(1024), Some(Cause::Drift)),
            (json!(256), Some(json!(128)), json!(1024), Some(Cause::Conflict)),
            (json!(256), None, json!(128), None),
            (json!(null), Some(json!("x")), json!("x"), Some(Cause::Spec)),
            (json!("x"), Some(json!("x")), json!(null), Some(Cause::Drift)),
            (json!("y"), Some(json!(null)), json!("x"), Some(Cause::Conflict)),
            (json!({"a": 1}), Some(json!({"a": 1})), json!({"a": 2}), Some(Cause::Drift)),
        ];
        for (spec, recorded, live, want) in cases {
            assert_eq!(classify(spec, recorded.as_ref(), live), *want, "spec {spec} recorded {recorded:?} live {live}");
        }
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }
}

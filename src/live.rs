//! Reads what exists in AWS for one stack and stage, through the provider.
//!
//! One listing pass over every kind (by name prefix, kinds under one parent
//! sharing its calls) finds candidates; then each desired resource and each
//! candidate slx might own is read, with bounded concurrency. Candidates whose `slx:` tags name another stack or stage are
//! dropped here: they are never planned for, so never touched.

use crate::graph::{Facts, Graph};
use crate::provider::{Identity, Listed, Provider};
use crate::resource::{AliasConfig, AsyncConfig, Kind, Live, Owner};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Resource reads in flight at once: enough to hide latency. Each read makes
/// up to three calls, and each service's client caps its own calls in flight
/// (`provider::resilience`), which is what keeps AWS from throttling.
pub const READ_CONCURRENCY: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct LiveState {
    /// Live state of desired resources, by address (absent: does not exist).
    pub desired: HashMap<String, Live>,
    /// Resources tagged as this stack and stage that the graph does not want under that name.
    pub orphans: Vec<Live>,
}

impl LiveState {
    /// What references resolve against: identity plus the outputs of what exists.
    pub fn facts(&self, id: &Identity) -> Facts {
        let outputs = self.desired.iter().map(|(a, l)| (a.clone(), l.outputs.clone())).collect();
        Facts { account: id.account.clone(), region: id.region.clone(), outputs }
    }
}

/// The physical-name prefix of everything in one stack and stage.
pub fn prefix(stack: &str, stage: &str) -> String {
    format!("{stack}-{stage}-")
}

/// Whether reading `kind` needs its listing entry; roles are listed by path, so
/// a same-named role elsewhere must still be found, and aliases are read by
/// name (listing them costs a call per function).
fn read_without_listing(kind: Kind) -> bool {
    matches!(kind, Kind::Role | Kind::Alias)
}

/// One resource by its physical name, listing the stack's resources of its
/// kind (`prefix` as from [`prefix`]) first where reading needs it.
pub async fn read_one(provider: &dyn Provider, kind: Kind, name: &str, prefix: &str) -> Result<Option<Live>> {
    let listed = if read_without_listing(kind) {
        None
    } else {
        provider.list(kind, prefix).await?.into_iter().find(|l| l.name == name)
    };
    if listed.is_none() && !read_without_listing(kind) {
        return Ok(None);
    }
    let mut live = provider.read(kind, name, listed.as_ref()).await?;
    if let Some(alias) = live.as_mut().filter(|l| l.kind == Kind::Alias) {
        let function = alias.config["function"].as_str().unwrap_or_default().to_string();
        if let Some(f) = Box::pin(read_one(provider, Kind::Function, &function, prefix)).await? {
            complete_alias(alias, f.owner().as_ref(), &f.alias_async);
        }
    }
    Ok(live)
}

pub async fn read(provider: Arc<dyn Provider>, graph: &Graph) -> Result<LiveState> {
    let prefix = prefix(&graph.stack, &graph.stage);
    let listings: HashMap<Kind, BTreeMap<String, Listed>> = provider
        .list_all(&prefix)
        .await?
        .into_iter()
        .map(|(k, listed)| (k, listed.into_iter().map(|l| (l.name.clone(), l)).collect()))
        .collect();

    let sem = Arc::new(Semaphore::new(READ_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for r in &graph.resources {
        let listed = listings.get(&r.kind).and_then(|m| m.get(&r.name)).cloned();
        if listed.is_none() && !read_without_listing(r.kind) {
            continue;
        }
        let (p, sem, kind, name, address) = (provider.clone(), sem.clone(), r.kind, r.name.clone(), r.address.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            (Some(address), p.read(kind, &name, listed.as_ref()).await)
        });
    }
    for (kind, listed) in &listings {
        for (name, l) in listed {
            if graph.resources.iter().any(|r| r.kind == *kind && r.name == *name) {
                continue;
            }
            let (p, sem, kind, name, l) = (provider.clone(), sem.clone(), *kind, name.clone(), l.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire().await;
                (None, p.read(kind, &name, Some(&l)).await)
            });
        }
    }
    let mut state = LiveState::default();
    while let Some(joined) = tasks.join_next().await {
        let (address, live) = joined?;
        let Some(live) = live? else { continue };
        match address {
            Some(a) => {
                state.desired.insert(a, live);
            }
            None => {
                let ours = live.owner().is_some_and(|o| o.stack == graph.stack && o.stage == graph.stage);
                if ours {
                    state.orphans.push(live);
                }
            }
        }
    }
    complete_aliases(&mut state);
    state.orphans.sort_by(|a, b| (a.kind.delete_rank(), &a.name).cmp(&(b.kind.delete_rank(), &b.name)));
    Ok(state)
}

/// Completes each alias from its function's read: aliases carry no tags, so
/// each belongs to whoever owns its function, under the address
/// `alias.{function}.{alias}`; and the function's read listed every alias's
/// async invocation config.
fn complete_aliases(state: &mut LiveState) {
    let functions: HashMap<String, (Option<Owner>, AliasAsync)> = state
        .desired
        .values()
        .filter(|l| l.kind == Kind::Function)
        .map(|l| (l.name.clone(), (l.owner(), l.alias_async.clone())))
        .collect();
    for live in state.desired.values_mut().filter(|l| l.kind == Kind::Alias) {
        if let Some((owner, configs)) = live.config["function"].as_str().and_then(|f| functions.get(f)) {
            complete_alias(live, owner.as_ref(), configs);
        }
    }
}

type AliasAsync = BTreeMap<String, AsyncConfig>;

fn complete_alias(alias: &mut Live, owner: Option<&Owner>, configs: &AliasAsync) {
    let Ok(mut config) = serde_json::from_value::<AliasConfig>(alias.config.clone()) else { return };
    config.async_config = configs.get(&config.name).cloned();
    if let Some(owner) = owner {
        let short = owner.address.strip_prefix("function.").unwrap_or(&owner.address);
        config.tags = Owner { address: format!("alias.{short}.{}", config.name), ..owner.clone() }.tags();
    }
    alias.config = serde_json::to_value(config).expect("alias config serializes");
}

//! Reads what exists in AWS for one stack and stage, through the provider.
//!
//! One listing pass over every kind (by name prefix, kinds under one parent
//! sharing its calls) finds candidates; then each desired resource and each
//! candidate slx might own is read, with bounded concurrency. Candidates whose `slx:` tags name another stack or stage are
//! dropped here: they are never planned for, so never touched. A targeted
//! graph reads no candidates: it cannot tell them from the rest of the stack.

use crate::graph::{Facts, Graph};
use crate::provider::{Identity, Listed, Provider};
use crate::resource::{AliasConfig, FunctionConfig, Kind, Live, Outputs, Owner};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};

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

/// The outputs the record holds for each address (what AWS answered when
/// slx last applied it), once the record has loaded; None until then. An
/// alias's read waits for it: the recorded release of the alias's version
/// saves a call while the alias's revision is unchanged.
pub type Recall = watch::Receiver<Option<Arc<BTreeMap<String, Outputs>>>>;

/// A [`Recall`] with nothing recorded (no record in use).
pub fn recall_nothing() -> Recall {
    watch::channel(Some(Arc::default())).1
}

/// What `recall` holds for `address`, as the `listed` an alias read takes.
async fn recalled(mut recall: Recall, address: &str, name: &str) -> Option<Listed> {
    let outputs = recall.wait_for(Option::is_some).await.ok()?.as_ref()?.get(address)?.clone();
    Some(Listed { name: name.to_string(), id: String::new(), extra: serde_json::to_value(outputs).ok()? })
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
    if kind == Kind::Alias {
        return read_alias(provider, name).await;
    }
    let listed = if read_without_listing(kind) {
        None
    } else {
        provider.list(kind, prefix).await?.into_iter().find(|l| l.name == name)
    };
    if listed.is_none() && !read_without_listing(kind) {
        return Ok(None);
    }
    provider.read(kind, name, listed.as_ref()).await
}

/// One alias (`function:alias`), completed from its function's read as
/// [`read`] completes them.
pub async fn read_alias(provider: &dyn Provider, name: &str) -> Result<Option<Live>> {
    let function = name.rsplit_once(':').map_or(name, |(f, _)| f);
    let (alias, function) =
        tokio::try_join!(provider.read(Kind::Alias, name, None), provider.read(Kind::Function, function, None))?;
    Ok(alias.map(|mut alias| {
        complete_alias(&mut alias, function.as_ref());
        alias
    }))
}

pub async fn read(provider: Arc<dyn Provider>, graph: &Graph, recall: Recall) -> Result<LiveState> {
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
        let recall = (kind == Kind::Alias).then(|| recall.clone());
        tasks.spawn(async move {
            let listed = match recall {
                Some(recall) => recalled(recall, &address, &name).await,
                None => listed,
            };
            let _permit = sem.acquire().await;
            (Some(address), p.read(kind, &name, listed.as_ref()).await)
        });
    }
    // A partial graph cannot tell a candidate from the rest of the stack.
    let candidates = if graph.targets.is_empty() { listings.iter().collect() } else { Vec::new() };
    for (kind, listed) in candidates {
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
/// `alias.{function}.{alias}`; the function's read listed every alias's
/// async invocation config; and the alias is current when its version's
/// release is the function's.
fn complete_aliases(state: &mut LiveState) {
    let functions: HashMap<String, Live> =
        state.desired.values().filter(|l| l.kind == Kind::Function).map(|l| (l.name.clone(), l.clone())).collect();
    for live in state.desired.values_mut().filter(|l| l.kind == Kind::Alias) {
        let function = live.config["function"].as_str().and_then(|f| functions.get(f));
        complete_alias(live, function);
    }
}

fn complete_alias(alias: &mut Live, function: Option<&Live>) {
    let Ok(mut config) = serde_json::from_value::<AliasConfig>(alias.config.clone()) else { return };
    let latest = function.and_then(|f| serde_json::from_value::<FunctionConfig>(f.config.clone()).ok());
    config.current = latest.is_some_and(|l| alias.outputs.get("release") == Some(&l.release()));
    if let Some(f) = function {
        config.async_config = f.alias_async.get(&config.name).cloned();
        if let Some(owner) = f.owner() {
            let short = owner.address.strip_prefix("function.").unwrap_or(&owner.address);
            config.tags = Owner { address: format!("alias.{short}.{}", config.name), ..owner }.tags();
        }
    }
    alias.config = serde_json::to_value(config).expect("alias config serializes");
}

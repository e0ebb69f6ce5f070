//! What the HTTP API serves: the ImageRepository and ImagePolicy documents, readiness,
//! leadership and the policy change feed.
//!
//! The controllers write here (`upsert_*`, `remove_*`, `set_*`); [`crate::api`] reads. The
//! documents sit behind a `std::sync::RwLock` that is only ever held for a map operation
//! (never across an `.await`), so requests are answered while scans run; tags are not kept
//! here but read from the [`TagStore`].
//!
//! The feed: every change to a policy document gets the next resource version (a `u64`,
//! decimal in JSON) and is kept in a bounded history and broadcast to watchers. Versions
//! start at the process start time in microseconds, so a version from an earlier process
//! (or, almost always, from another replica) falls outside this one's window and the
//! watcher is told to re-list instead of silently missing changes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use api_types::http_api::{
    ImagePolicyInfo, ImageRepositoryInfo, List, PolicyEvent, PolicyEventType,
};
use tokio::sync::broadcast;

use crate::store::TagStore;

/// Policy events kept for watchers that resume from a resource version.
pub const DEFAULT_HISTORY: usize = 1024;

/// Who scans: only the leader has the tags, so followers forward `/tags` to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// Whether this replica holds the Lease (always true in standalone mode).
    pub is_leader: bool,
    /// Base URL of the leader's API (e.g. `http://10.0.0.7:8080`), when known.
    pub leader_url: Option<String>,
}

impl LeaderInfo {
    /// This replica is the leader.
    pub fn leader() -> Self {
        Self {
            is_leader: true,
            leader_url: None,
        }
    }

    /// Another replica leads, reachable at `leader_url` if known.
    pub fn follower(leader_url: Option<String>) -> Self {
        Self {
            is_leader: false,
            leader_url,
        }
    }
}

impl Default for LeaderInfo {
    /// A single instance leads itself.
    fn default() -> Self {
        Self::leader()
    }
}

/// Why a watch cannot start from the requested version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The version is older than the retained history, from another process, or from
    /// another replica: the client must list again and watch from the list's version.
    #[error(
        "resourceVersion {requested} is not in this replica's feed window ({oldest}..={current}); list again and watch from the list's resourceVersion"
    )]
    Expired {
        requested: u64,
        oldest: u64,
        current: u64,
    },
}

/// A started watch: the events to send first, then the live ones.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the requested version (or the current policies as `Upserted` when
    /// no version was given), oldest first.
    pub backlog: Vec<PolicyEvent>,
    /// Later events. A `Lagged` error means the watcher fell more than the history
    /// behind and must re-list.
    pub receiver: broadcast::Receiver<PolicyEvent>,
    /// The version the backlog brings the watcher to.
    pub version: u64,
}

type Key = (String, String);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

struct Objects {
    repositories: BTreeMap<Key, ImageRepositoryInfo>,
    policies: BTreeMap<Key, ImagePolicyInfo>,
    /// The last assigned resource version.
    version: u64,
    /// The version before the oldest event in `history` (the feed's lower bound).
    floor: u64,
    history: VecDeque<(u64, PolicyEvent)>,
    history_capacity: usize,
}

struct Inner {
    store: Arc<dyn TagStore>,
    objects: RwLock<Objects>,
    events: broadcast::Sender<PolicyEvent>,
    ready: AtomicBool,
    leader: RwLock<LeaderInfo>,
    /// Set on shutdown so open feeds end and a graceful shutdown does not wait forever.
    closed: tokio::sync::watch::Sender<bool>,
}

/// The API's shared state: cheap to clone, safe to share across tasks and threads.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let objects = self.read();
        f.debug_struct("ApiState")
            .field("repositories", &objects.repositories.len())
            .field("policies", &objects.policies.len())
            .field("version", &objects.version)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State over `store` (where `/tags` pages are read), with the default history.
    pub fn new(store: Arc<dyn TagStore>) -> Self {
        Self::with_history(store, DEFAULT_HISTORY)
    }

    /// As [`ApiState::new`], keeping `capacity` (at least 1) events for resuming watchers.
    pub fn with_history(store: Arc<dyn TagStore>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .unwrap_or(0);
        let (events, _) = broadcast::channel(capacity);
        Self {
            inner: Arc::new(Inner {
                store,
                objects: RwLock::new(Objects {
                    repositories: BTreeMap::new(),
                    policies: BTreeMap::new(),
                    version: start,
                    floor: start,
                    history: VecDeque::with_capacity(capacity),
                    history_capacity: capacity,
                }),
                events,
                ready: AtomicBool::new(false),
                leader: RwLock::new(LeaderInfo::default()),
                closed: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    // A panic while holding the lock cannot leave a map half-updated in a way that
    // matters to readers, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Objects> {
        self.inner
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Objects> {
        self.inner
            .objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    // ---- written by the controllers ----

    /// Adds or replaces an ImageRepository document.
    pub fn upsert_repository(&self, info: ImageRepositoryInfo) {
        let k = key(&info.namespace, &info.name);
        self.write().repositories.insert(k, info);
    }

    /// Forgets an ImageRepository document.
    pub fn remove_repository(&self, namespace: &str, name: &str) {
        self.write().repositories.remove(&key(namespace, name));
    }

    /// Adds or replaces an ImagePolicy document; emits `Upserted` only when it changed.
    pub fn upsert_policy(&self, info: ImagePolicyInfo) {
        let k = key(&info.namespace, &info.name);
        let mut objects = self.write();
        if objects.policies.get(&k) == Some(&info) {
            return;
        }
        objects.policies.insert(k, info.clone());
        self.emit(&mut objects, PolicyEventType::Upserted, info);
    }

    /// Forgets an ImagePolicy document; emits `Deleted` (with the last document) if it
    /// was known.
    pub fn remove_policy(&self, namespace: &str, name: &str) {
        let mut objects = self.write();
        if let Some(old) = objects.policies.remove(&key(namespace, name)) {
            self.emit(&mut objects, PolicyEventType::Deleted, old);
        }
    }

    /// `/readyz` answers 200 once this is true (after the first sync).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Records who leads (from the Lease holder).
    pub fn set_leader(&self, leader: LeaderInfo) {
        *self
            .inner
            .leader
            .write()
            .unwrap_or_else(PoisonError::into_inner) = leader;
    }

    // Called with the write lock held, so the history, the version and the broadcast
    // stay in one order and a subscriber (which takes the read lock) misses nothing.
    fn emit(&self, objects: &mut Objects, event_type: PolicyEventType, policy: ImagePolicyInfo) {
        objects.version += 1;
        let event = PolicyEvent {
            event_type,
            resource_version: objects.version.to_string(),
            policy,
        };
        if objects.history.len() == objects.history_capacity
            && let Some((dropped, _)) = objects.history.pop_front()
        {
            objects.floor = dropped;
        }
        objects.history.push_back((objects.version, event.clone()));
        // No receivers is fine: nobody is watching.
        let _ = self.inner.events.send(event);
    }

    /// Ends every open change feed (call on shutdown; [`crate::api::serve`] does).
    pub fn close_feeds(&self) {
        self.inner.closed.send_replace(true);
    }

    // ---- read by the API ----

    /// Becomes `true` when [`ApiState::close_feeds`] is called.
    pub fn feeds_closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// The tag store `/tags` reads from.
    pub fn store(&self) -> Arc<dyn TagStore> {
        Arc::clone(&self.inner.store)
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    pub fn leader(&self) -> LeaderInfo {
        self.inner
            .leader
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current feed position.
    pub fn resource_version(&self) -> u64 {
        self.read().version
    }

    /// Every repository document, sorted by namespace and name.
    pub fn repositories(&self) -> List<ImageRepositoryInfo> {
        let objects = self.read();
        List {
            items: objects.repositories.values().cloned().collect(),
            resource_version: Some(objects.version.to_string()),
        }
    }

    pub fn repository(&self, namespace: &str, name: &str) -> Option<ImageRepositoryInfo> {
        self.read().repositories.get(&key(namespace, name)).cloned()
    }

    /// The policy documents `filter` accepts, sorted by namespace and name, with the
    /// feed position they reflect.
    pub fn policies(&self, filter: impl Fn(&ImagePolicyInfo) -> bool) -> List<ImagePolicyInfo> {
        let objects = self.read();
        List {
            items: objects
                .policies
                .values()
                .filter(|p| filter(p))
                .cloned()
                .collect(),
            resource_version: Some(objects.version.to_string()),
        }
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<ImagePolicyInfo> {
        self.read().policies.get(&key(namespace, name)).cloned()
    }

    /// Starts a watch after `after` (a resource version from a list or an event), or
    /// with the current policies as `Upserted` events when `None`.
    pub fn subscribe(&self, after: Option<u64>) -> Result<Subscription, FeedError> {
        let objects = self.read();
        let current = objects.version;
        let backlog = match after {
            None => objects
                .policies
                .values()
                .map(|policy| PolicyEvent {
                    event_type: PolicyEventType::Upserted,
                    resource_version: current.to_string(),
                    policy: policy.clone(),
                })
                .collect(),
            Some(n) if n >= objects.floor && n <= current => objects
                .history
                .iter()
                .filter(|(v, _)| *v > n)
                .map(|(_, e)| e.clone())
                .collect(),
            Some(n) => {
                return Err(FeedError::Expired {
                    requested: n,
                    oldest: objects.floor,
                    current,
                });
            }
        };
        Ok(Subscription {
            backlog,
            receiver: self.inner.events.subscribe(),
            version: current,
        })
    }
}

#[cfg(test)]
mod tests;

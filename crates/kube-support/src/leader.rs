//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! The algorithm is client-go's: every retry period a replica reads the Lease; it takes or
//! renews it only when the Lease is free, expired, or already its own, and it writes with the
//! `resourceVersion` it read (create when there is no Lease), so the API server rejects all
//! but one of two competing writes. A replica counts as leading only after its own write
//! succeeded, and stops leading when it could not renew within two thirds of the Lease
//! duration; the others wait a full Lease duration after the last change they observed, so
//! two replicas never lead at once. Expiry is measured on the local monotonic clock from the
//! moment a change was observed, never by comparing clocks between machines.
//!
//! On stop, the leader releases the Lease (no holder, duration 1 s) so another replica takes
//! over at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease lives when neither `RUNTIME_NAMESPACE` nor the in-cluster namespace is known.
pub const DEFAULT_LEASE_NAMESPACE: &str = "flux-system";
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What a replica needs to take part in an election.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    pub lease_name: String,
    pub lease_namespace: String,
    /// Unique per replica (see [`holder_identity`]).
    pub identity: String,
    pub lease_duration: Duration,
    pub field_manager: String,
}

/// A running election.
#[derive(Debug)]
pub struct Leadership {
    /// True only while this replica holds the Lease, as confirmed by its own accepted write.
    pub leading: watch::Receiver<bool>,
    /// The Lease's holder identity as last read (None: nobody holds it).
    pub holder: watch::Receiver<Option<String>>,
    /// Ends after `stop` turned true and the Lease was released.
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name}: lease duration must be at least 1s")]
    Duration { namespace: String, name: String },
}

/// `--enable-leader-election=false`: leading until `stop`.
pub fn always_leading(stop: watch::Receiver<bool>) -> Leadership {
    let (leading_tx, leading) = watch::channel(true);
    let (holder_tx, holder) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let _ = stop.wait_for(|s| *s).await;
        let _ = leading_tx.send(false);
        drop(holder_tx);
    });
    Leadership {
        leading,
        holder,
        task,
    }
}

/// Waits until `leading` turns true: `true` then, `false` when `shutdown` turned true (or
/// either sender is gone) first.
pub async fn wait_to_lead(
    leading: &mut watch::Receiver<bool>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => false,
        led = leading.wait_for(|l| *l) => led.is_ok(),
    }
}

/// Completes when this replica stops leading or `shutdown` turns true: the stop signal of a
/// leader's controllers.
pub fn until_lost_or_stopped(
    leading: &watch::Receiver<bool>,
    shutdown: &watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let (mut lost, mut stopping) = (leading.clone(), shutdown.clone());
    async move {
        tokio::select! {
            _ = lost.wait_for(|l| !*l) => {},
            _ = stopping.wait_for(|s| *s) => {},
        }
    }
}

/// The Lease name: `base`, or `base-<8 hex digits>` of the label selector when sharding, so
/// each shard elects its own leader.
pub fn lease_name(base: &str, label_selector: &str) -> String {
    let selector = label_selector.trim();
    if selector.is_empty() {
        return base.to_string();
    }
    let digest = hex::encode(Sha256::digest(selector.as_bytes()));
    format!("{base}-{}", &digest[..8])
}

/// `RUNTIME_NAMESPACE`, else the in-cluster service-account namespace, else `flux-system`.
pub fn lease_namespace() -> String {
    if let Some(ns) = std::env::var("RUNTIME_NAMESPACE")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        return ns;
    }
    std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_LEASE_NAMESPACE.to_string())
}

/// `<hostname>_<10 hex digits>`, plus `@<suffix>` when `suffix` is not empty (the reflector
/// puts its API URL there so followers can forward to the leader).
pub fn holder_identity(suffix: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller".to_string());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!("{host}/{}/{nanos}", std::process::id());
    let random = hex::encode(Sha256::digest(seed.as_bytes()));
    if suffix.is_empty() {
        format!("{host}_{}", &random[..10])
    } else {
        format!("{host}_{}@{suffix}", &random[..10])
    }
}

/// The part of a Lease that tells whether someone renewed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<String>,
    duration_seconds: Option<i32>,
}

impl Record {
    fn of(spec: Option<&LeaseSpec>) -> Self {
        Self {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string()),
            duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
        }
    }
}

/// What to do after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Someone else holds an unexpired Lease.
    Follow,
    /// Write our identity (take a free or expired Lease, or renew ours).
    Write,
}

/// Decides from the record read, when it was first observed, and now.
fn decide(record: &Record, observed_at: Instant, now: Instant, identity: &str) -> Step {
    match record.holder.as_deref() {
        None => Step::Write,
        Some(h) if h == identity => Step::Write,
        Some(_) => {
            let duration = Duration::from_secs(
                u64::try_from(record.duration_seconds.unwrap_or(1)).unwrap_or(1),
            );
            if now.duration_since(observed_at) >= duration {
                Step::Write
            } else {
                Step::Follow
            }
        }
    }
}

/// The spec we write to take or renew the Lease.
fn our_spec(current: Option<&LeaseSpec>, identity: &str, duration: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let ours = current
        .and_then(|s| s.holder_identity.as_deref())
        .is_some_and(|h| h == identity);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if ours {
            current.and_then(|s| s.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(if ours || current.is_none() {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..LeaseSpec::default()
    }
}

struct Elector {
    api: Api<Lease>,
    settings: LeaderSettings,
    retry: Duration,
    renew_deadline: Duration,
    observed: Option<(Record, Instant)>,
    last_renewal: Option<Instant>,
}

impl Elector {
    /// One round: read, decide, maybe write. Returns (leading, holder).
    async fn round(&mut self) -> (bool, Option<String>) {
        let name = &self.settings.lease_name;
        let lease = match self.api.get_opt(name).await {
            Ok(lease) => lease,
            Err(error) => {
                tracing::debug!(%error, lease = %name, "reading the leader Lease");
                return (self.still_leading(), self.observed_holder());
            }
        };
        let now = Instant::now();
        let Some(mut lease) = lease else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.lease_namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(our_spec(
                    None,
                    &self.settings.identity,
                    self.settings.lease_duration,
                )),
            };
            return self.write(self.api.create(&self.post_params(), &fresh).await);
        };
        let record = Record::of(lease.spec.as_ref());
        let observed_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => now,
        };
        self.observed = Some((record.clone(), observed_at));
        match decide(&record, observed_at, now, &self.settings.identity) {
            Step::Follow => {
                self.last_renewal = None;
                (false, record.holder)
            }
            Step::Write => {
                lease.spec = Some(our_spec(
                    lease.spec.as_ref(),
                    &self.settings.identity,
                    self.settings.lease_duration,
                ));
                // `replace` carries the resourceVersion we read: a competing write makes it
                // fail with 409 Conflict.
                let result = self.api.replace(name, &self.post_params(), &lease).await;
                self.write(result)
            }
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.settings.field_manager.clone()),
            ..PostParams::default()
        }
    }

    fn write(&mut self, result: Result<Lease, kube::Error>) -> (bool, Option<String>) {
        match result {
            Ok(lease) => {
                let record = Record::of(lease.spec.as_ref());
                self.observed = Some((record, Instant::now()));
                self.last_renewal = Some(Instant::now());
                (true, Some(self.settings.identity.clone()))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                // Someone else wrote first: follow until the next read tells who.
                self.last_renewal = None;
                (false, self.observed_holder())
            }
            Err(error) => {
                tracing::debug!(%error, lease = %self.settings.lease_name, "writing the leader Lease");
                (self.still_leading(), self.observed_holder())
            }
        }
    }

    /// After a failed round: a leader keeps leading until its renew deadline passes.
    fn still_leading(&mut self) -> bool {
        match self.last_renewal {
            Some(at) if at.elapsed() < self.renew_deadline => true,
            _ => {
                self.last_renewal = None;
                false
            }
        }
    }

    fn observed_holder(&self) -> Option<String> {
        self.observed.as_ref().and_then(|(r, _)| r.holder.clone())
    }

    /// Gives the Lease up so another replica takes over at once.
    async fn release(&self) {
        let name = &self.settings.lease_name;
        let Ok(Some(mut lease)) = self.api.get_opt(name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| h == self.settings.identity);
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        match self.api.replace(name, &self.post_params(), &lease).await {
            Ok(_) => tracing::info!(lease = %name, "leader Lease released"),
            Err(error) => tracing::warn!(%error, lease = %name, "releasing the leader Lease"),
        }
    }
}

/// Starts taking part in the election for `settings.lease_name`.
pub async fn elect(
    client: Client,
    settings: LeaderSettings,
    stop: watch::Receiver<bool>,
) -> Result<Leadership, LeaderError> {
    if settings.lease_duration < Duration::from_secs(1) {
        return Err(LeaderError::Duration {
            namespace: settings.lease_namespace,
            name: settings.lease_name,
        });
    }
    let retry =
        (settings.lease_duration / 5).clamp(Duration::from_millis(250), Duration::from_secs(2));
    let renew_deadline = settings.lease_duration * 2 / 3;
    tracing::info!(
        lease = %format!("{}/{}", settings.lease_namespace, settings.lease_name),
        identity = %settings.identity,
        "leader election started"
    );
    let mut elector = Elector {
        api: Api::namespaced(client, &settings.lease_namespace),
        settings,
        retry,
        renew_deadline,
        observed: None,
        last_renewal: None,
    };
    let (leading_tx, leading) = watch::channel(false);
    let (holder_tx, holder) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut stop = stop;
        let mut tick = tokio::time::interval(elector.retry);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
            }
            let (is_leading, current) = elector.round().await;
            if *leading_tx.borrow() != is_leading {
                tracing::info!(leading = is_leading, holder = ?current, "leadership changed");
            }
            leading_tx.send_if_modified(|l| std::mem::replace(l, is_leading) != is_leading);
            holder_tx.send_if_modified(|h| {
                let changed = *h != current;
                *h = current.clone();
                changed
            });
        }
        let was_leading = *leading_tx.borrow();
        let _ = leading_tx.send(false);
        if was_leading {
            let _ = tokio::time::timeout(Duration::from_secs(5), elector.release()).await;
        }
    });
    Ok(Leadership {
        leading,
        holder,
        task,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn record(holder: Option<&str>, secs: i32) -> Record {
        Record {
            holder: holder.map(str::to_string),
            renew_time: Some("2026-12-03T00:00:00Z".into()),
            duration_seconds: Some(secs),
        }
    }

    #[test]
    fn lease_names_per_shard() {
        assert_eq!(lease_name("x-leader", ""), "x-leader");
        assert_eq!(lease_name("x-leader", "  "), "x-leader");
        let a = lease_name("x-leader", "shard=a");
        assert!(a.starts_with("x-leader-") && a.len() == "x-leader-".len() + 8);
        assert_ne!(a, lease_name("x-leader", "shard=b"));
    }

    #[test]
    fn identities_are_unique_and_carry_the_suffix() {
        let a = holder_identity("http://10.0.0.7:8080");
        assert!(a.ends_with("@http://10.0.0.7:8080"), "{a}");
        assert!(!holder_identity("").contains('@'));
        assert_ne!(holder_identity(""), holder_identity(""));
    }

    #[test]
    fn free_expired_and_own_leases_are_written() {
        let t0 = Instant::now();
        assert_eq!(decide(&record(None, 15), t0, t0, "me"), Step::Write);
        assert_eq!(decide(&record(Some("me"), 15), t0, t0, "me"), Step::Write);
        assert_eq!(
            decide(&record(Some("other"), 15), t0, t0, "me"),
            Step::Follow
        );
        let later = t0 + Duration::from_secs(14);
        assert_eq!(
            decide(&record(Some("other"), 15), t0, later, "me"),
            Step::Follow
        );
        let expired = t0 + Duration::from_secs(15);
        assert_eq!(
            decide(&record(Some("other"), 15), t0, expired, "me"),
            Step::Write
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let mine = our_spec(None, "me", Duration::from_secs(15));
        assert_eq!(mine.lease_transitions, Some(0));
        assert_eq!(mine.lease_duration_seconds, Some(15));
        let renewed = our_spec(Some(&mine), "me", Duration::from_secs(15));
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, mine.acquire_time);
        let taken = our_spec(Some(&mine), "other", Duration::from_secs(15));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.holder_identity.as_deref(), Some("other"));
    }

    #[tokio::test]
    async fn waits_to_lead_and_stops_on_loss_or_shutdown() {
        let (lead_tx, mut leading) = watch::channel(false);
        let (stop_tx, mut shutdown) = watch::channel(false);
        let waiting = tokio::spawn(async move {
            let led = wait_to_lead(&mut leading, &mut shutdown).await;
            (led, leading, shutdown)
        });
        lead_tx.send_replace(true);
        let (led, leading, shutdown) = waiting.await.unwrap();
        assert!(led);

        // Losing the lead ends the controllers' run...
        let until = tokio::spawn(until_lost_or_stopped(&leading, &shutdown));
        tokio::task::yield_now().await;
        assert!(!until.is_finished());
        lead_tx.send_replace(false);
        until.await.unwrap();
        // ...and so does a shutdown, which also ends the wait for the next lead.
        lead_tx.send_replace(true);
        let until = tokio::spawn(until_lost_or_stopped(&leading, &shutdown));
        stop_tx.send_replace(true);
        until.await.unwrap();
        let (mut leading, mut shutdown) = (leading, shutdown);
        lead_tx.send_replace(false);
        assert!(!wait_to_lead(&mut leading, &mut shutdown).await);
    }
}

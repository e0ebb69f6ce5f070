//! When an object runs: one [`Next`] that every reconcile core answers, one exponential
//! [`Backoff`] for both services and both modes (the controller-runtime workqueue limiter
//! Flux uses: `--min-retry-delay` 750ms, `--max-retry-delay` 15m), and one [`Schedule`] of
//! due times with running/rerun bookkeeping and a concurrency cap for the directory modes.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use crate::objects::Fingerprint;

/// When the caller should run the reconciler for this object again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// After this long (the interval, or a dependency retry).
    After(Duration),
    /// After the object's backoff delay ([`Backoff::failure`]): a transient error.
    Backoff,
    /// Only when the object changes (stalled, suspended, or nothing scheduled by time).
    OnChange,
}

/// Flux's `--min-retry-delay`.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(750);
/// Flux's `--max-retry-delay`.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// The retry delay shape: `min` doubled per consecutive failure, capped at `max`. Like the
/// workqueue's limiter, `max` wins when it is below `min`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    pub min: Duration,
    pub max: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self {
            min: MIN_RETRY_DELAY,
            max: MAX_RETRY_DELAY,
        }
    }
}

impl RetryDelays {
    /// The delay after a failure that follows `previous` failures in a row.
    pub fn delay(&self, previous: u32) -> Duration {
        let exponent = previous.min(31);
        self.min
            .checked_mul(1u32 << exponent)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Consecutive failures per object, and the delay they earn.
#[derive(Debug, Clone)]
pub struct Backoff<K> {
    delays: RetryDelays,
    failures: HashMap<K, u32>,
}

impl<K: Hash + Eq> Default for Backoff<K> {
    fn default() -> Self {
        Self::new(MIN_RETRY_DELAY, MAX_RETRY_DELAY)
    }
}

impl<K: Hash + Eq> Backoff<K> {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self::with_delays(RetryDelays { min, max })
    }

    pub fn with_delays(delays: RetryDelays) -> Self {
        Self {
            delays,
            failures: HashMap::new(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before the retry.
    pub fn failure(&mut self, key: K) -> Duration {
        let count = self.failures.entry(key).or_insert(0);
        let delay = self.delays.delay(*count);
        *count = count.saturating_add(1);
        delay
    }

    /// A success (or a stall, or deletion): the next failure starts from `min` again.
    pub fn reset(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    /// How long after now `key` runs again for `next` (`None`: only on change), updating its
    /// failure count. A server's `retry_after` lengthens a backoff delay, never shortens it.
    pub fn delay_for(
        &mut self,
        key: &K,
        next: Next,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        match next {
            Next::After(delay) => {
                self.reset(key);
                Some(delay)
            }
            Next::OnChange => {
                self.reset(key);
                None
            }
            Next::Backoff => {
                let delay = self.failure(key.clone());
                Some(retry_after.map_or(delay, |r| r.max(delay)))
            }
        }
    }
}

/// What a Kubernetes-mode reconcile should do when it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Run the reconcile.
    Run,
    /// Nothing new: wait for a change.
    AwaitChange,
    /// Nothing new: requeue after this long (the next run is not due yet).
    RequeueAfter(Duration),
}

/// The Kubernetes mode's schedule: per object, the trigger it last handled (its
/// fingerprint: uid, generation, reconcile request), when its next run is due, and its
/// backoff. A watch event that changes nothing a reconcile reads (our own status write, the
/// finalizer, a label) finds the same fingerprint and is skipped until the run is due.
#[derive(Debug)]
pub struct Handled<K> {
    runs: HashMap<K, (Fingerprint, Option<Instant>)>,
    backoff: Backoff<K>,
}

impl<K: Hash + Eq + Clone> Handled<K> {
    pub fn new(delays: RetryDelays) -> Self {
        Self {
            runs: HashMap::new(),
            backoff: Backoff::with_delays(delays),
        }
    }

    /// Whether a reconcile of `key`, which now has `print`, should run.
    pub fn skip(&self, key: &K, print: &Fingerprint, now: Instant) -> Skip {
        let Some((handled, due)) = self.runs.get(key) else {
            return Skip::Run;
        };
        if handled != print {
            return Skip::Run;
        }
        match due {
            None => Skip::AwaitChange,
            // Within 50 ms of due is due (timers fire a little early or late).
            Some(due) if *due > now + Duration::from_millis(50) => Skip::RequeueAfter(*due - now),
            Some(_) => Skip::Run,
        }
    }

    /// Records that `key` ran with `print` and answered `next`; returns the delay before
    /// its next run (`None`: on change).
    pub fn record(
        &mut self,
        key: &K,
        print: Fingerprint,
        next: Next,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<Duration> {
        let delay = self.backoff.delay_for(key, next, retry_after);
        self.runs
            .insert(key.clone(), (print, delay.map(|d| now + d)));
        delay
    }

    /// A reconcile failed outside the core (finalizer, status write): counts a failure and
    /// forgets what `key` handled, so the retry runs; returns the delay before it.
    pub fn failed(&mut self, key: &K) -> Duration {
        self.runs.remove(key);
        self.backoff.failure(key.clone())
    }

    /// Forgets what `key` handled (it runs at its next trigger), keeping its backoff.
    pub fn unhandle(&mut self, key: &K) {
        self.runs.remove(key);
    }

    /// Forgets what every object `select` picks handled.
    pub fn unhandle_where(&mut self, select: impl Fn(&K) -> bool) {
        self.runs.retain(|k, _| !select(k));
    }

    /// Forgets `key` entirely (deleted).
    pub fn forget(&mut self, key: &K) {
        self.runs.remove(key);
        self.backoff.reset(key);
    }

    /// Consecutive failures of `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.backoff.failures(key)
    }

    /// The objects that ran at least once.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.runs.keys()
    }
}

/// One object of a [`Schedule`] and when it runs.
#[derive(Debug)]
struct Entry<T> {
    object: T,
    /// When to run next; `None`: only on change.
    next: Option<Instant>,
    running: bool,
    /// Changed while a run was in flight: run again when it finishes.
    rerun: bool,
    /// Has finished at least one run.
    ran: bool,
}

/// The objects of a directory mode and their due times. A running object is never started
/// twice; a change while it runs makes it run again right after.
#[derive(Debug)]
pub struct Schedule<K, T> {
    entries: BTreeMap<K, Entry<T>>,
}

impl<K, T> Default for Schedule<K, T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, T> Schedule<K, T> {
    /// Adds an object, due at once.
    pub fn insert(&mut self, key: K, object: T, now: Instant) {
        self.entries.insert(
            key,
            Entry {
                object,
                next: Some(now),
                running: false,
                rerun: false,
                ran: false,
            },
        );
    }

    pub fn remove(&mut self, key: &K) -> Option<T> {
        self.entries.remove(key).map(|e| e.object)
    }

    pub fn get(&self, key: &K) -> Option<&T> {
        self.entries.get(key).map(|e| &e.object)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut T> {
        self.entries.get_mut(key).map(|e| &mut e.object)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &T)> {
        self.entries.iter().map(|(k, e)| (k, &e.object))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut T)> {
        self.entries.iter_mut().map(|(k, e)| (k, &mut e.object))
    }

    /// The keys that `keep` rejects (objects gone from the source).
    pub fn keys_not_in(&self, keep: impl Fn(&K) -> bool) -> Vec<K> {
        self.entries.keys().filter(|k| !keep(k)).cloned().collect()
    }

    /// Makes `key` due now, or once more right after its run in flight.
    pub fn trigger(&mut self, key: &K, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            trigger(entry, now);
        }
    }

    /// [`Self::trigger`] for every object `select` picks.
    pub fn trigger_where(&mut self, now: Instant, select: impl Fn(&K, &T) -> bool) {
        for (key, entry) in &mut self.entries {
            if select(key, &entry.object) {
                trigger(entry, now);
            }
        }
    }

    /// Marks up to `room` due objects running (in key order) and returns their keys.
    pub fn take_due(&mut self, now: Instant, room: usize) -> Vec<K> {
        let mut due = Vec::new();
        for (key, entry) in &mut self.entries {
            if due.len() >= room {
                break;
            }
            if entry.running || entry.next.is_none_or(|n| n > now) {
                continue;
            }
            entry.running = true;
            due.push(key.clone());
        }
        due
    }

    /// A run finished: the next is due after `next` (`None`: on change), or at once when
    /// the object changed meanwhile.
    pub fn finished(&mut self, key: &K, next: Option<Duration>, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.running = false;
            entry.ran = true;
            entry.next = if std::mem::take(&mut entry.rerun) {
                Some(now)
            } else {
                next.map(|d| now + d)
            };
        }
    }

    /// The earliest due time of an object not running.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.running)
            .filter_map(|e| e.next)
            .min()
    }

    /// The keys of the objects running now.
    pub fn running(&self) -> Vec<K> {
        self.entries
            .iter()
            .filter(|(_, e)| e.running)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether every object `counts` picks has finished a run (readiness after the first
    /// pass).
    pub fn all_ran(&self, counts: impl Fn(&T) -> bool) -> bool {
        self.entries.values().all(|e| e.ran || !counts(&e.object))
    }
}

fn trigger<T>(entry: &mut Entry<T>, now: Instant) {
    if entry.running {
        entry.rerun = true;
    } else {
        entry.next = Some(now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn doubles_from_min_to_max_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..6).map(|_| b.failure("a")).collect();
        assert_eq!(
            delays,
            [750, 1500, 3000, 6000, 12000, 24000].map(Duration::from_millis)
        );
        for _ in 0..40 {
            b.failure("a");
        }
        assert_eq!(b.failure("a"), MAX_RETRY_DELAY);
        // Other objects are independent.
        assert_eq!(b.failure("b"), MIN_RETRY_DELAY);
        b.reset(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(b.failure("a"), MIN_RETRY_DELAY);
    }

    #[test]
    fn honours_configured_delays() {
        // `--min-retry-delay=1s --max-retry-delay=5s`.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<_> = (0..5).map(|_| b.failure("a")).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5].map(Duration::from_secs));
        // A maximum below the minimum caps every delay, as in controller-runtime.
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_millis(500));
        assert_eq!(b.failure("a"), Duration::from_millis(500));
        assert_eq!(b.failure("a"), Duration::from_millis(500));
        assert_eq!(RetryDelays::default().delay(u32::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn next_maps_to_delays_and_retry_after_only_lengthens() {
        let mut b = Backoff::default();
        let ten = Duration::from_secs(10);
        assert_eq!(
            b.delay_for(&"a", Next::Backoff, None),
            Some(MIN_RETRY_DELAY)
        );
        assert_eq!(b.delay_for(&"a", Next::Backoff, Some(ten)), Some(ten));
        assert_eq!(b.failures(&"a"), 2);
        assert_eq!(b.delay_for(&"a", Next::After(ten), None), Some(ten));
        assert_eq!(b.failures(&"a"), 0);
        b.failure("a");
        assert_eq!(b.delay_for(&"a", Next::OnChange, None), None);
        assert_eq!(b.failures(&"a"), 0);
    }

    #[test]
    fn schedule_caps_reruns_changes_and_reports_the_first_pass() {
        let now = Instant::now();
        let mut s: Schedule<&str, u32> = Schedule::default();
        for key in ["a", "b", "c"] {
            s.insert(key, 0, now);
        }
        assert_eq!(s.take_due(now, 2), ["a", "b"]);
        // Running objects are not started again; the cap leaves c for later.
        assert_eq!(s.take_due(now, 2), ["c"]);
        assert!(s.take_due(now, 5).is_empty());
        assert!(!s.all_ran(|_| true));
        assert_eq!(s.next_due(), None, "all running");
        // A change while a is running makes it due right after its run.
        s.trigger(&"a", now);
        s.finished(&"a", Some(Duration::from_secs(60)), now);
        s.finished(&"b", Some(Duration::from_secs(60)), now);
        s.finished(&"c", None, now);
        assert!(s.all_ran(|_| true));
        assert_eq!(s.next_due(), Some(now));
        assert_eq!(s.take_due(now, 5), ["a"]);
        let later = now + Duration::from_secs(60);
        assert_eq!(s.take_due(later, 5), ["b"], "c waits for a change");
        s.trigger_where(later, |k, _| *k == "c");
        assert_eq!(s.take_due(later, 5), ["c"]);
        assert_eq!(s.keys_not_in(|k| *k != "b"), ["b"]);
    }

    #[test]
    fn handled_skips_the_same_trigger_until_due() {
        let now = Instant::now();
        let print = |generation| Fingerprint {
            uid: Some("u".into()),
            generation: Some(generation),
            requested_at: None,
        };
        let mut h: Handled<&str> = Handled::new(RetryDelays::default());
        assert_eq!(h.skip(&"a", &print(1), now), Skip::Run);
        let minute = Duration::from_secs(60);
        assert_eq!(
            h.record(&"a", print(1), Next::After(minute), None, now),
            Some(minute)
        );
        assert_eq!(h.skip(&"a", &print(1), now), Skip::RequeueAfter(minute));
        assert_eq!(h.skip(&"a", &print(2), now), Skip::Run, "spec changed");
        assert_eq!(h.skip(&"a", &print(1), now + minute), Skip::Run, "due");
        assert_eq!(
            h.record(&"a", print(1), Next::Backoff, None, now),
            Some(MIN_RETRY_DELAY)
        );
        assert_eq!(h.failures(&"a"), 1);
        h.record(&"a", print(1), Next::OnChange, None, now);
        assert_eq!(h.skip(&"a", &print(1), now + minute), Skip::AwaitChange);
        h.unhandle(&"a");
        assert_eq!(h.skip(&"a", &print(1), now), Skip::Run);
    }
}

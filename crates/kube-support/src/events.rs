//! Kubernetes events (events.k8s.io/v1) that fold only identical events.
//!
//! kube-runtime's [`Recorder`] (kube 5.0) folds every event with the same type and reason
//! on an object into one series and keeps the first note, so a later event with another
//! message (a push after "repository up-to-date", a scan that found new tags) would never
//! show. [`EventPublisher`] keeps one recorder per (object, type, reason) and replaces it
//! when the note changes: only identical events are aggregated, as client-go's recorder
//! does.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The longest note the events API accepts (bytes).
pub const NOTE_MAX: usize = 1024;

/// (kind, namespace, name) of the regarding object.
type ObjectKey = (Option<String>, Option<String>, Option<String>);

/// (object, event type, reason) → the note last published and the recorder that did.
type Recorders = HashMap<(ObjectKey, &'static str, String), (String, Recorder)>;

fn object_key(object: &ObjectReference) -> ObjectKey {
    (
        object.kind.clone(),
        object.namespace.clone(),
        object.name.clone(),
    )
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// The reporter of a controller: `controller` plus this pod's name (`POD_NAME`, else
/// `HOSTNAME`) as the instance.
pub fn reporter(controller: &str) -> Reporter {
    Reporter {
        controller: controller.to_owned(),
        instance: std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok()),
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Publishes events, aggregating only identical ones (see the module docs).
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    recorders: Mutex<Recorders>,
}

impl fmt::Debug for EventPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventPublisher")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            recorders: Mutex::new(HashMap::new()),
        }
    }

    fn recorders(&self) -> MutexGuard<'_, Recorders> {
        self.recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The recorder for an event with `note`: the previous one while the note is the same,
    /// a new one (a new series) when it changed.
    fn recorder(&self, object: ObjectKey, type_: EventType, reason: &str, note: &str) -> Recorder {
        let mut recorders = self.recorders();
        let slot = recorders
            .entry((object, type_name(type_), reason.to_owned()))
            .or_insert_with(|| {
                (
                    note.to_owned(),
                    Recorder::new(self.client.clone(), self.reporter.clone()),
                )
            });
        if slot.0 != note {
            *slot = (
                note.to_owned(),
                Recorder::new(self.client.clone(), self.reporter.clone()),
            );
        }
        slot.1.clone()
    }

    /// Publishes a `Reconcile` event about `obj`; a failure is logged, never returned (an
    /// event is best effort and must not fail the reconcile).
    pub async fn record<K: kube::Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let object = obj.object_ref(&());
        if let Err(error) = self
            .publish(&object, type_, reason, note, "Reconcile")
            .await
        {
            tracing::warn!(%error, name = object.name, "cannot record an event");
        }
    }

    /// Publishes one event about `object` (the note cut to [`NOTE_MAX`] bytes).
    pub async fn publish(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
        action: &str,
    ) -> Result<(), kube::Error> {
        let note = truncate(note, NOTE_MAX);
        let recorder = self.recorder(object_key(object), type_, reason, &note);
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        recorder.publish(&event, object).await
    }

    /// Drops the recorders of a deleted object.
    pub fn forget(&self, object: &ObjectReference) {
        let key = object_key(object);
        self.recorders().retain(|(k, _, _), _| *k != key);
    }

    /// Drops every recorder (e.g. on losing leadership).
    pub fn clear(&self) {
        self.recorders().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate(&"x".repeat(2000), NOTE_MAX).len(), NOTE_MAX);
    }
}

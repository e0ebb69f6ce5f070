//! An object of the standalone schedule: the manifest's object, shared with the snapshot
//! the reconcilers read (not copied: with 5,000 ImageRepositories and their policies a copy
//! was about 15 MiB), and what the engine keeps beside it: the generation it assigned and
//! the status of the last reconcile. [`Tracked::full`] puts them together for a reconcile
//! or the API.

use std::sync::Arc;

use api_types::{ImagePolicy, ImagePolicyStatus, ImageRepository, ImageRepositoryStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The kinds the schedule tracks.
pub(super) trait Trackable: Clone {
    type Status: Clone;
    fn meta(&self) -> &ObjectMeta;
    fn same_spec(&self, other: &Self) -> bool;
    fn set_generation(&mut self, generation: i64);
    fn set_status(&mut self, status: Option<Self::Status>);
}

/// The same four accessors for both kinds (their fields have the same names).
macro_rules! trackable {
    ($kind:ty, $status:ty) => {
        impl Trackable for $kind {
            type Status = $status;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn same_spec(&self, other: &Self) -> bool {
                self.spec == other.spec
            }
            fn set_generation(&mut self, generation: i64) {
                self.metadata.generation = Some(generation);
            }
            fn set_status(&mut self, status: Option<Self::Status>) {
                self.status = status;
            }
        }
    };
}

trackable!(ImageRepository, ImageRepositoryStatus);
trackable!(ImagePolicy, ImagePolicyStatus);

#[derive(Debug)]
pub(super) struct Tracked<O: Trackable> {
    pub(super) object: Arc<O>,
    /// `metadata.generation`: 1 when first read, incremented when the spec changes.
    pub(super) generation: i64,
    pub(super) status: Option<O::Status>,
}

impl<O: Trackable> Tracked<O> {
    pub(super) fn new(object: Arc<O>) -> Self {
        Self {
            object,
            generation: 1,
            status: None,
        }
    }

    /// The object with its generation and status, for a reconcile or the API.
    pub(super) fn full(&self) -> O {
        let mut object = O::clone(&self.object);
        object.set_generation(self.generation);
        object.set_status(self.status.clone());
        object
    }

    /// Takes the manifest's new version; false (and nothing replaced) when it does not
    /// differ in what a reconcile reads (spec, labels, annotations). Only a spec change
    /// bumps the generation.
    pub(super) fn update(&mut self, object: &Arc<O>) -> bool {
        let spec = !self.object.same_spec(object);
        let (old, new) = (self.object.meta(), object.meta());
        if !spec && old.annotations == new.annotations && old.labels == new.labels {
            return false;
        }
        if spec {
            self.generation += 1;
        }
        self.object = object.clone();
        true
    }
}

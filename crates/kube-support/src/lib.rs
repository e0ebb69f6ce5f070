//! Kubernetes plumbing shared by image-reflector and image-automation.
//!
//! - [`leader`]: leader election on a `coordination.k8s.io/v1` Lease with compare-and-swap
//!   writes, so two replicas never lead at once, even when they start in the same instant.

pub mod leader;

//! `image-reflector serve` on the controller kit (`kube-support`): [`standalone`]
//! (`--manifests DIR`) and [`kube`] (against a cluster), both over the [`crate::reconcile`]
//! cores.

pub mod kube;
pub mod standalone;

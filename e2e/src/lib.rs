//! The end-to-end suite: `tests/seed_procedure.rs` walks the seed procedure (the operator's
//! how-to) on the testbed with both controllers running as real processes. This library is
//! empty; it exists because a package needs a target besides its tests.

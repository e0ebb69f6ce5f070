//! docker-registry (written next).

//! Prometheus (written next).

//! Git servers (written next).

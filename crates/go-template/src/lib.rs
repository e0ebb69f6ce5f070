//! Go `text/template` with Sprig's hermetic functions.

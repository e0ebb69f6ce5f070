//! Masterminds/semver v3 compatible versions and constraints, as Flux uses them.
//!
//! Written from the behaviour the reference spec pins (Masterminds v3.5.0 as pinned by Flux,
//! plus fluxcd/pkg `version.ParseVersion` for tags), not from Masterminds' code. Masterminds
//! parses with regular expressions; this module reproduces the languages those expressions
//! accept with hand-written scanners, so that parsing a tag costs no allocation.
//!
//! Summary of the rules:
//! - **Tags** (`parse_tag`): at least two `.` anywhere, then the loose ("coerce") grammar
//!   `v?N(.N)?(.N)?(-PRE)?(+META)?` with decimal `N` (leading zeros allowed, must fit `u64`),
//!   identifiers `[0-9A-Za-z-]+` separated by `.`, and no numeric pre-release identifier with
//!   a leading zero.
//! - **Precedence**: major, minor, patch numerically; a release beats its pre-releases;
//!   pre-release identifiers compare numerically when both are numeric, numeric < alphanumeric,
//!   alphanumeric bytewise, a shorter list of equal prefix is lower; build metadata is ignored.
//! - **Constraints**: `||` separates OR groups; inside a group comparators are separated by
//!   whitespace and/or one comma; `A - B` hyphen ranges become `>= A, <= B`; operators `=`,
//!   none, `!=`, `>`, `<`, `>=`, `=>`, `<=`, `=<`, `~`, `~>`, `^`; `x`, `X`, `*` and missing
//!   parts are wildcards.
//! - **Pre-releases** satisfy an OR group only when at least one comparator of that group has a
//!   pre-release itself (Masterminds >= 3.4: then every comparator of the group admits them).

mod constraint;
mod version;

pub use constraint::{Comparator, Constraint, ConstraintError, Group, Op};
pub use version::{Version, VersionError};

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

use std::cmp::Ordering;
use std::fmt;

/// Why a string is not a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// fluxcd/pkg's pre-check: fewer than two `.` in the tag.
    #[error("not a semantic version: fewer than three dot-separated parts")]
    TooFewParts,
    /// The loose Masterminds grammar does not match.
    #[error("invalid semantic version")]
    Invalid,
    /// A major, minor or patch number does not fit in 64 bits.
    #[error("error parsing version segment: value out of range")]
    OutOfRange,
    /// A numeric pre-release identifier has a leading zero.
    #[error("version segment starts with 0")]
    LeadingZeroPrerelease,
}

/// A parsed version. Borrows its pre-release and build metadata from the parsed string, so
/// parsing never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version<'a> {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Pre-release identifiers without the leading `-` (empty when none).
    pub pre: &'a str,
    /// Build metadata without the leading `+` (empty when none).
    pub build: &'a str,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Length of `[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*` at the start of `s` (0 if none).
fn scan_idents(s: &[u8]) -> usize {
    let mut i = 0;
    loop {
        let start = i;
        while i < s.len() && is_ident_byte(s[i]) {
            i += 1;
        }
        if i == start {
            // An empty identifier: give back the dot that announced it.
            return start.saturating_sub(1);
        }
        if i < s.len() && s[i] == b'.' {
            i += 1;
        } else {
            return i;
        }
    }
}

fn parse_u64(digits: &str) -> Result<u64, VersionError> {
    let mut n: u64 = 0;
    for b in digits.bytes() {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(VersionError::OutOfRange)?;
    }
    Ok(n)
}

fn validate_prerelease(pre: &str) -> Result<(), VersionError> {
    for ident in pre.split('.') {
        let b = ident.as_bytes();
        if b.len() > 1 && b[0] == b'0' && b.iter().all(u8::is_ascii_digit) {
            return Err(VersionError::LeadingZeroPrerelease);
        }
    }
    Ok(())
}

impl<'a> Version<'a> {
    /// Masterminds `NewVersion` in coerce mode (the default since v3.4): the loose grammar,
    /// partial versions (`1`, `1.2`) and leading zeros accepted.
    pub fn parse_loose(s: &'a str) -> Result<Self, VersionError> {
        let b = s.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'v'));
        let mut nums = [0u64; 3];
        for (k, slot) in nums.iter_mut().enumerate() {
            let start = if k == 0 {
                i
            } else if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i + 1
            } else {
                break;
            };
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return Err(VersionError::Invalid);
            }
            *slot = parse_u64(&s[start..end])?;
            i = end;
        }
        let mut pre = "";
        let mut build = "";
        if b.get(i) == Some(&b'-') {
            let n = scan_idents(&b[i + 1..]);
            if n == 0 {
                return Err(VersionError::Invalid);
            }
            pre = &s[i + 1..i + 1 + n];
            i += 1 + n;
        }
        if b.get(i) == Some(&b'+') {
            let n = scan_idents(&b[i + 1..]);
            if n == 0 {
                return Err(VersionError::Invalid);
            }
            build = &s[i + 1..i + 1 + n];
            i += 1 + n;
        }
        if i != b.len() {
            return Err(VersionError::Invalid);
        }
        if !pre.is_empty() {
            validate_prerelease(pre)?;
        }
        Ok(Version {
            major: nums[0],
            minor: nums[1],
            patch: nums[2],
            pre,
            build,
        })
    }

    /// fluxcd/pkg `version.ParseVersion`, how Flux reads a tag: at least two `.` anywhere in
    /// the string, then [`Version::parse_loose`].
    pub fn parse_tag(tag: &'a str) -> Result<Self, VersionError> {
        if tag.bytes().filter(|&b| b == b'.').take(2).count() < 2 {
            return Err(VersionError::TooFewParts);
        }
        Self::parse_loose(tag)
    }

    /// Masterminds `Compare`: precedence, build metadata ignored.
    pub fn precedence(&self, other: &Version<'_>) -> Ordering {
        self.major
            .cmp(&other.major)
            .then(self.minor.cmp(&other.minor))
            .then(self.patch.cmp(&other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(self.pre, other.pre),
            })
    }
}

impl fmt::Display for Version<'_> {
    /// Masterminds `String()`: canonical `M.m.p[-pre][+build]`, no `v`, no leading zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

/// Go `strconv.ParseUint(s, 10, 64)` success, as Masterminds uses it to tell numeric
/// identifiers from alphanumeric ones (an all-digit identifier beyond u64 counts as text).
fn numeric_ident(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_u64(s).ok()
}

fn compare_pre_part(s: &str, o: &str) -> Ordering {
    if s == o {
        return Ordering::Equal;
    }
    if s.is_empty() {
        return Ordering::Less;
    }
    if o.is_empty() {
        return Ordering::Greater;
    }
    match (numeric_ident(s), numeric_ident(o)) {
        (None, None) => s.as_bytes().cmp(o.as_bytes()),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        // Equal values with different spellings cannot occur: leading zeros are rejected.
        (Some(a), Some(b)) => a.cmp(&b),
    }
}

/// Masterminds `comparePrerelease` (also used with an empty side by `!=`).
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('.');
    let mut bi = b.split('.');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let d = compare_pre_part(x.unwrap_or(""), y.unwrap_or(""));
                if d != Ordering::Equal {
                    return d;
                }
            }
        }
    }
}

/// Why a range is not a valid constraint (Masterminds' wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    #[error("improper constraint: {0}")]
    Improper(String),
    #[error("constraint parser error: {0:?} is not a version")]
    Parser(String),
}

/// Comparison operators (the spelling variants are folded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or no operator: equality, or a tilde range when the version has wildcards.
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    Tilde,
    Caret,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "" | "=" => Op::Equal,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            "<" => Op::Less,
            ">=" | "=>" => Op::GreaterEqual,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            _ => return None,
        })
    }
}

/// The version part of a comparator, owned (constraints outlive the range string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct OwnedVersion {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
}

impl OwnedVersion {
    fn as_version(&self) -> Version<'_> {
        Version {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            pre: &self.pre,
            build: "",
        }
    }
}

/// One comparator of an AND group, e.g. `>=1.2` or `~1.x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Comparator {
    op: Op,
    /// The operand as written (for messages).
    text: String,
    con: OwnedVersion,
    /// Any wildcard (major, minor or patch).
    dirty: bool,
    minor_dirty: bool,
    patch_dirty: bool,
}

impl Comparator {
    /// The operator.
    pub fn op(&self) -> Op {
        self.op
    }

    /// Whether the operand carries a pre-release (which opens its group to pre-releases).
    pub fn has_prerelease(&self) -> bool {
        !self.con.pre.is_empty()
    }

    /// Whether the operand has a wildcard or missing part.
    pub fn is_wildcard(&self) -> bool {
        self.dirty
    }

    /// The operand as written.
    pub fn operand(&self) -> &str {
        &self.text
    }

    /// The check of one comparator; `include_pre` is decided for the whole AND group.
    fn matches(&self, v: &Version<'_>, include_pre: bool) -> bool {
        if !v.pre.is_empty() && !include_pre {
            return false;
        }
        let c = self.con.as_version();
        match self.op {
            Op::Equal => {
                if self.dirty {
                    self.tilde(v, &c)
                } else {
                    v.precedence(&c) == Ordering::Equal
                }
            }
            Op::NotEqual => {
                if self.dirty {
                    if c.major != v.major {
                        return true;
                    }
                    if c.minor != v.minor && !self.minor_dirty {
                        return true;
                    } else if self.minor_dirty {
                        return false;
                    } else if c.patch != v.patch && !self.patch_dirty {
                        return true;
                    } else if self.patch_dirty {
                        if !v.pre.is_empty() || !c.pre.is_empty() {
                            return compare_prerelease(v.pre, c.pre) != Ordering::Equal;
                        }
                        return false;
                    }
                }
                v.precedence(&c) != Ordering::Equal
            }
            Op::Greater => {
                if !self.dirty {
                    return v.precedence(&c) == Ordering::Greater;
                }
                if v.major > c.major {
                    true
                } else if v.major < c.major || self.minor_dirty {
                    // `>1` needs 2.0.0 or more.
                    false
                } else if self.patch_dirty {
                    // `>1.2` needs 1.3.0 or more.
                    v.minor > c.minor
                } else {
                    v.precedence(&c) == Ordering::Greater
                }
            }
            Op::Less => v.precedence(&c) == Ordering::Less,
            Op::GreaterEqual => v.precedence(&c) != Ordering::Less,
            Op::LessEqual => {
                if !self.dirty {
                    return v.precedence(&c) != Ordering::Greater;
                }
                !(v.major > c.major
                    || (v.major == c.major && v.minor > c.minor && !self.minor_dirty))
            }
            Op::Tilde => self.tilde(v, &c),
            Op::Caret => {
                if v.precedence(&c) == Ordering::Less {
                    return false;
                }
                if c.major > 0 || self.minor_dirty {
                    return v.major == c.major;
                }
                if v.major > 0 {
                    return false;
                }
                if c.minor > 0 || self.patch_dirty {
                    return v.minor == c.minor;
                }
                if v.minor > 0 {
                    return false;
                }
                v.patch == c.patch
            }
        }
    }

    fn tilde(&self, v: &Version<'_>, c: &Version<'_>) -> bool {
        if v.precedence(c) == Ordering::Less {
            return false;
        }
        // `~0.0.0` (and `~*`, `~x`) admit everything.
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Equal => "",
            Op::NotEqual => "!=",
            Op::Greater => ">",
            Op::Less => "<",
            Op::GreaterEqual => ">=",
            Op::LessEqual => "<=",
            Op::Tilde => "~",
            Op::Caret => "^",
        };
        write!(f, "{op}{}", self.text)
    }
}

/// An AND group of comparators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    comparators: Vec<Comparator>,
    /// Masterminds >= 3.4: one comparator with a pre-release opens the whole group to them.
    include_pre: bool,
}

impl Group {
    /// The comparators, in the order written.
    pub fn comparators(&self) -> &[Comparator] {
        &self.comparators
    }

    fn matches(&self, v: &Version<'_>) -> bool {
        self.comparators
            .iter()
            .all(|c| c.matches(v, self.include_pre))
    }
}

/// A parsed Masterminds constraint (`NewConstraint`), checked with `Check` semantics and
/// `IncludePrerelease` unset, as Flux does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    groups: Vec<Group>,
}

const fn is_ws(b: u8) -> bool {
    // Go regexp's `\s`: [\t\n\f\r ].
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// Characters of a constraint's number parts: Masterminds' class `[0-9|x|X|\*]` (the `|` is
/// really in it).
const fn is_num_part(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'|' | b'x' | b'X' | b'*')
}

const fn is_op_byte(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'>' | b'<' | b'~' | b'^')
}

/// A constraint operand split like Masterminds' capture groups.
#[derive(Debug, Clone, Copy)]
struct Operand<'a> {
    /// The whole operand.
    all: &'a str,
    major: &'a str,
    /// `.minor` with the dot, or empty.
    minor: &'a str,
    /// `.patch` with the dot, or empty.
    patch: &'a str,
    /// `-pre` with the dash, or empty.
    pre: &'a str,
}

/// Greedy scan of `v?P+(\.P+)?(\.P+)?(-IDENTS)?(\+IDENTS)?` at `s[at..]`. There is only one way
/// to match it that can be followed by a separator, so greedy is exact.
fn scan_operand(s: &str, at: usize) -> Option<(Operand<'_>, usize)> {
    let b = s.as_bytes();
    let mut i = at;
    if b.get(i) == Some(&b'v') {
        i += 1;
    }
    let run = |from: usize| {
        let mut j = from;
        while j < b.len() && is_num_part(b[j]) {
            j += 1;
        }
        j
    };
    let major_start = i;
    i = run(i);
    if i == major_start {
        return None;
    }
    let major = &s[major_start..i];
    let mut parts = ["", ""];
    for part in &mut parts {
        if b.get(i) == Some(&b'.') {
            let end = run(i + 1);
            if end > i + 1 {
                *part = &s[i..end];
                i = end;
                continue;
            }
        }
        break;
    }
    let mut pre = "";
    if b.get(i) == Some(&b'-') {
        let n = scan_idents(&b[i + 1..]);
        if n > 0 {
            pre = &s[i..i + 1 + n];
            i += 1 + n;
        }
    }
    if b.get(i) == Some(&b'+') {
        let n = scan_idents(&b[i + 1..]);
        if n > 0 {
            i += 1 + n;
        }
    }
    Some((
        Operand {
            all: &s[at..i],
            major,
            minor: parts[0],
            patch: parts[1],
            pre,
        },
        i,
    ))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// Masterminds' hyphen-range rewrite: every leftmost match of
/// `\s*OPERAND\s+-\s+OPERAND\s*` becomes `>= A, <= B ` (with the trailing space of v3.2.1+).
fn rewrite_ranges(s: &str) -> std::borrow::Cow<'_, str> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut pos = 0;
    while pos < b.len() {
        let Some((lo, hi, end)) = range_at(s, pos) else {
            pos += 1;
            continue;
        };
        let o = out.get_or_insert_with(|| String::with_capacity(s.len() + 16));
        o.push_str(&s[copied..pos]);
        o.push_str(">= ");
        o.push_str(lo);
        o.push_str(", <= ");
        o.push_str(hi);
        o.push(' ');
        copied = end;
        pos = end;
    }
    match out {
        Some(mut o) => {
            o.push_str(&s[copied..]);
            std::borrow::Cow::Owned(o)
        }
        None => std::borrow::Cow::Borrowed(s),
    }
}

/// A hyphen range starting exactly at `pos`: (low operand, high operand, end).
fn range_at(s: &str, pos: usize) -> Option<(&str, &str, usize)> {
    let b = s.as_bytes();
    let i = skip_ws(b, pos);
    let (lo, i) = scan_operand(s, i)?;
    let j = skip_ws(b, i);
    if j == i || b.get(j) != Some(&b'-') {
        return None;
    }
    let k = skip_ws(b, j + 1);
    if k == j + 1 {
        return None;
    }
    let (hi, end) = scan_operand(s, k)?;
    Some((lo.all, hi.all, skip_ws(b, end)))
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_comparator(op: &str, operand: Operand<'_>) -> Result<Comparator, ConstraintError> {
    let op = Op::parse(op).ok_or_else(|| ConstraintError::Improper(op.to_owned()))?;
    let minor = operand.minor.strip_prefix('.').unwrap_or("");
    let patch = operand.patch.strip_prefix('.').unwrap_or("");
    let (mut dirty, mut minor_dirty, mut patch_dirty) = (false, false, false);
    let rebuilt;
    let text: &str = if is_x(operand.major) {
        dirty = true;
        rebuilt = format!("0.0.0{}", operand.pre);
        &rebuilt
    } else if is_x(minor) || minor.is_empty() {
        dirty = true;
        minor_dirty = true;
        rebuilt = format!("{}.0.0{}", operand.major, operand.pre);
        &rebuilt
    } else if is_x(patch) || patch.is_empty() {
        dirty = true;
        patch_dirty = true;
        rebuilt = format!("{}{}.0{}", operand.major, operand.minor, operand.pre);
        &rebuilt
    } else {
        operand.all
    };
    let v =
        Version::parse_loose(text).map_err(|_| ConstraintError::Parser(operand.all.to_owned()))?;
    Ok(Comparator {
        op,
        text: operand.all.to_owned(),
        con: OwnedVersion {
            major: v.major,
            minor: v.minor,
            patch: v.patch,
            pre: v.pre.to_owned(),
        },
        dirty,
        minor_dirty,
        patch_dirty,
    })
}

/// One AND group: `\s*OP\s*OPERAND\s*` then any number of `(\s+|,\s*)OP\s*OPERAND\s*`.
fn parse_group(seg: &str) -> Result<Group, ConstraintError> {
    let improper = || ConstraintError::Improper(seg.to_owned());
    let b = seg.as_bytes();
    let mut i = skip_ws(b, 0);
    let mut comparators = Vec::new();
    loop {
        let op_start = i;
        while i < b.len() && is_op_byte(b[i]) {
            i += 1;
        }
        let op = &seg[op_start..i];
        if Op::parse(op).is_none() {
            return Err(improper());
        }
        i = skip_ws(b, i);
        let (operand, end) = scan_operand(seg, i).ok_or_else(improper)?;
        comparators.push((op, operand));
        i = skip_ws(b, end);
        if i == b.len() {
            break;
        }
        if b[i] == b',' {
            i = skip_ws(b, i + 1);
        } else if i == end {
            // Neither whitespace nor a comma separates this comparator from the next.
            return Err(improper());
        }
    }
    let comparators = comparators
        .into_iter()
        .map(|(op, operand)| parse_comparator(op, operand))
        .collect::<Result<Vec<_>, _>>()?;
    let include_pre = comparators.iter().any(Comparator::has_prerelease);
    Ok(Group {
        comparators,
        include_pre,
    })
}

impl Constraint {
    /// Masterminds `NewConstraint`.
    pub fn parse(range: &str) -> Result<Self, ConstraintError> {
        let rewritten = rewrite_ranges(range);
        let groups = rewritten
            .split("||")
            .map(parse_group)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Constraint { groups })
    }

    /// Masterminds `Check` with `IncludePrerelease` unset.
    pub fn matches(&self, v: &Version<'_>) -> bool {
        self.groups.iter().any(|g| g.matches(v))
    }

    /// The OR groups, in the order written.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (gi, g) in self.groups.iter().enumerate() {
            if gi > 0 {
                f.write_str(" || ")?;
            }
            for (ci, c) in g.comparators.iter().enumerate() {
                if ci > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_idents_gives_back_a_trailing_dot() {
        assert_eq!(scan_idents(b"rc.1"), 4);
        assert_eq!(scan_idents(b"rc."), 2);
        assert_eq!(scan_idents(b"rc..1"), 2);
        assert_eq!(scan_idents(b".rc"), 0);
        assert_eq!(scan_idents(b""), 0);
    }

    #[test]
    fn hyphen_rewrite_keeps_the_trailing_space() {
        assert_eq!(rewrite_ranges("1 - 2 <3"), ">= 1, <= 2 <3");
        assert_eq!(rewrite_ranges(">=1 - 2"), ">=>= 1, <= 2 ");
        assert_eq!(rewrite_ranges("1.2"), "1.2");
    }
}

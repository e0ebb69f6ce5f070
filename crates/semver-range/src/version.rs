//! Versions: parsing (tags and strict versions) and Masterminds' precedence.

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
pub(crate) fn scan_idents(s: &[u8]) -> usize {
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
        let (pre, i) = suffix(s, i, b'-')?;
        let (build, i) = suffix(s, i, b'+')?;
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
pub(crate) fn compare_prerelease(a: &str, b: &str) -> Ordering {
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

/// The dot-separated identifiers after `marker` (`-` pre-release, `+` build metadata) at
/// byte `i` of `s`, and where they end; `("", i)` when `marker` is not there.
fn suffix(s: &str, i: usize, marker: u8) -> Result<(&str, usize), VersionError> {
    let b = s.as_bytes();
    if b.get(i) != Some(&marker) {
        return Ok(("", i));
    }
    let n = scan_idents(&b[i + 1..]);
    if n == 0 {
        return Err(VersionError::Invalid);
    }
    Ok((&s[i + 1..i + 1 + n], i + 1 + n))
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
}

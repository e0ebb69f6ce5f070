//! Go `strconv.ParseFloat(s, 64)`, exactly: the numerical policy fails on any value Go
//! rejects and accepts everything Go accepts.
//!
//! Accepted: an optional sign; decimal mantissas (`1`, `1.`, `.5`) with an optional `e`
//! exponent; hexadecimal mantissas (`0x1.8`) with a mandatory `p` exponent; `_` between digits
//! (or after a `0x` prefix); `inf`, `infinity` (signed) and `nan` in any case. Rejected: empty
//! strings, spaces, `0x10` (no `p`), `0b`/`0o` prefixes, and values that overflow (`1e400`).
//! Underflow rounds to zero without error, as in Go.

/// Why a value is not a Go float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FloatError {
    #[error("invalid syntax")]
    Syntax,
    #[error("value out of range")]
    Range,
}

/// Go `strconv.ParseFloat(s, 64)`.
pub fn parse_go_float(s: &str) -> Result<f64, FloatError> {
    if let Some(v) = special(s) {
        return Ok(v);
    }
    let b = s.as_bytes();
    let (neg, body) = match b.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let bb = body.as_bytes();
    let hex = bb.len() > 2 && bb[0] == b'0' && (bb[1] | 0x20) == b'x';
    if body.contains('_') && !underscore_ok(s) {
        return Err(FloatError::Syntax);
    }
    let v = if hex {
        parse_hex(&body[2..])?
    } else {
        parse_decimal(body)?
    };
    Ok(if neg { -v } else { v })
}

/// Go's `special`: infinities (signed) and NaN (unsigned), case-insensitive, whole string.
fn special(s: &str) -> Option<f64> {
    let (sign, rest, signed) = match s.as_bytes().first() {
        Some(b'+') => (1.0, &s[1..], true),
        Some(b'-') => (-1.0, &s[1..], true),
        _ => (1.0, s, false),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if !signed && rest.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    None
}

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'+' | b'-') = b.first() {
        b = &b[1..];
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = (b[1] | 0x20) == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Decimal syntax check (Go's `readFloat`), then Rust's correctly rounded conversion.
fn parse_decimal(body: &str) -> Result<f64, FloatError> {
    let mut clean = String::with_capacity(body.len());
    let b = body.as_bytes();
    let mut i = 0;
    let mut digits = false;
    let mut dot = false;
    while i < b.len() {
        match b[i] {
            b'_' => {}
            b'.' if !dot => {
                dot = true;
                clean.push('.');
            }
            c if c.is_ascii_digit() => {
                digits = true;
                clean.push(char::from(c));
            }
            _ => break,
        }
        i += 1;
    }
    if !digits {
        return Err(FloatError::Syntax);
    }
    if i < b.len() && (b[i] | 0x20) == b'e' {
        clean.push('e');
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            clean.push(char::from(b[i]));
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            if b[i] != b'_' {
                clean.push(char::from(b[i]));
            }
            i += 1;
        }
        if i == start || !b[start].is_ascii_digit() {
            return Err(FloatError::Syntax);
        }
    }
    if i != b.len() {
        return Err(FloatError::Syntax);
    }
    let v: f64 = clean.parse().map_err(|_| FloatError::Syntax)?;
    if v.is_infinite() {
        return Err(FloatError::Range);
    }
    Ok(v)
}

/// Hexadecimal mantissa (after `0x`) with a mandatory binary exponent, correctly rounded
/// (round half to even, subnormals included).
fn parse_hex(s: &str) -> Result<f64, FloatError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut mant: u64 = 0;
    let mut exp: i64 = 0;
    let mut sticky = false;
    let mut digits = false;
    let mut dot = false;
    while i < b.len() {
        let c = b[i];
        if c == b'_' {
            i += 1;
            continue;
        }
        if c == b'.' && !dot {
            dot = true;
            i += 1;
            continue;
        }
        let Some(d) = char::from(c).to_digit(16) else {
            break;
        };
        digits = true;
        if mant >> 60 == 0 {
            mant = (mant << 4) | u64::from(d);
            if dot {
                exp -= 4;
            }
        } else {
            // Out of precision: remember that something non-zero was dropped.
            sticky |= d != 0;
            if !dot {
                exp += 4;
            }
        }
        i += 1;
    }
    if !digits || i >= b.len() || (b[i] | 0x20) != b'p' {
        return Err(FloatError::Syntax);
    }
    i += 1;
    let mut eneg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        eneg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut e: i64 = 0;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        if b[i] != b'_' && e < 1_000_000 {
            e = e * 10 + i64::from(b[i] - b'0');
        }
        i += 1;
    }
    if i == start || !b[start].is_ascii_digit() || i != b.len() {
        return Err(FloatError::Syntax);
    }
    exp += if eneg { -e } else { e };
    if mant == 0 {
        return Ok(0.0);
    }
    // value = mant * 2^exp; normalise mant to exactly 64 significant bits.
    let shift = mant.leading_zeros();
    mant <<= shift;
    exp -= i64::from(shift);
    // Exponent of the leading bit: 2^(exp + 63).
    let top = exp + 63;
    if top > 1023 {
        return Err(FloatError::Range);
    }
    // Bits to keep: 53 for normal numbers, fewer for subnormals (min exponent -1074).
    let keep: i64 = if top >= -1022 { 53 } else { 53 - (-1022 - top) };
    if keep <= 0 {
        // Below half the smallest subnormal, or exactly at it (ties to even: zero)... except
        // when it is above half.
        if keep == 0 && (mant > 1 << 63 || (mant == 1 << 63 && sticky)) {
            return Ok(f64::from_bits(1));
        }
        return Ok(0.0);
    }
    let drop = 64 - keep as u32;
    let mut kept = mant >> drop;
    let rem = mant & ((1u64 << drop) - 1);
    let half = 1u64 << (drop - 1);
    if rem > half || (rem == half && (sticky || kept & 1 == 1)) {
        kept += 1;
    }
    // kept * 2^(exp + drop); exact in f64 (kept <= 2^53), scaled in two exact steps.
    let mut scale = exp + i64::from(drop);
    let mut v = kept as f64;
    while scale > 0 {
        let step = scale.min(1000);
        v *= 2f64.powi(step as i32);
        scale -= step;
    }
    while scale < 0 {
        let step = (-scale).min(1000);
        v /= 2f64.powi(step as i32);
        scale += step;
    }
    if v.is_infinite() {
        return Err(FloatError::Range);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_syntax() {
        assert_eq!(parse_go_float("1_000"), Ok(1000.0));
        assert_eq!(parse_go_float("0x1p4"), Ok(16.0));
        assert_eq!(parse_go_float("0x1.8p1"), Ok(3.0));
        assert_eq!(parse_go_float("1."), Ok(1.0));
        assert_eq!(parse_go_float(".5"), Ok(0.5));
        assert_eq!(parse_go_float("+01"), Ok(1.0));
        assert_eq!(parse_go_float("1e3"), Ok(1000.0));
        assert_eq!(parse_go_float("-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_go_float("NaN").is_ok_and(f64::is_nan));
        for bad in [
            "0x10", "0b101", " 1", "1 ", "", "+nan", "1__0", "_1", "1_", "1e", ".",
        ] {
            assert_eq!(parse_go_float(bad), Err(FloatError::Syntax), "{bad}");
        }
        assert_eq!(parse_go_float("1e400"), Err(FloatError::Range));
        assert_eq!(parse_go_float("0x1p1024"), Err(FloatError::Range));
        assert_eq!(parse_go_float("0x1p-1074"), Ok(f64::from_bits(1)));
    }
}

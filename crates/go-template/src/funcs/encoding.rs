//! Sprig's encodings, hashes and JSON.

use base64::Engine as _;
use sha2::Digest as _;

use super::*;
use crate::value::Map;

pub(super) const FUNCS: &[Func] = &[
    def(&["b64enc"], S1, None, |a| {
        Ok(base64::engine::general_purpose::STANDARD
            .encode(a.s(0))
            .into())
    }),
    def(&["b64dec"], S1, None, |a| {
        Ok(
            match base64::engine::general_purpose::STANDARD.decode(a.s(0)) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => b64_error(a.s(0), &e),
            }
            .into(),
        )
    }),
    def(&["b32enc"], S1, None, |a| {
        Ok(b32enc(a.s(0).as_bytes()).into())
    }),
    def(&["b32dec"], S1, None, |a| Ok(b32dec(a.s(0)).into())),
    def(&["sha1sum"], S1, None, |a| {
        Ok(hex::encode(crate::hash::sha1(a.s(0).as_bytes())).into())
    }),
    def(&["sha256sum"], S1, None, |a| {
        Ok(hex::encode(sha2::Sha256::digest(a.s(0).as_bytes())).into())
    }),
    def(&["adler32sum"], S1, None, |a| {
        Ok(crate::hash::adler32(a.s(0).as_bytes()).to_string().into())
    }),
    def(&["toJson", "mustToJson"], ANY1, None, |a| {
        to_json(a, true, false)
    }),
    def(&["toRawJson", "mustToRawJson"], ANY1, None, |a| {
        to_json(a, false, false)
    }),
    def(&["toPrettyJson", "mustToPrettyJson"], ANY1, None, |a| {
        to_json(a, true, true)
    }),
    def(&["fromJson"], S1, None, |a| {
        a.size(json_nodes(a.s(0)) * 2 * NODE)?;
        Ok(crate::json::decode(a.s(0)).unwrap_or_else(|_| Value::Map(Map::new())))
    }),
    def(&["mustFromJson"], S1, None, |a| {
        a.size(json_nodes(a.s(0)) * 2 * NODE)?;
        crate::json::decode(a.s(0))
    }),
];

fn to_json(a: &Args<'_, '_>, html: bool, pretty: bool) -> Result<Value, String> {
    match crate::json::encode(a.v(0), html, pretty, a.max_value()) {
        Some(s) => Ok(s.into()),
        None => a.size(u128::MAX).map(|()| Value::Nil),
    }
}

/// An upper bound of the values a JSON text decodes to.
fn json_nodes(s: &str) -> u128 {
    1 + s.bytes().filter(|b| b",:[{".contains(b)).count() as u128
}

fn b64_error(s: &str, e: &base64::DecodeError) -> String {
    let off = match e {
        base64::DecodeError::InvalidByte(i, _) => *i,
        base64::DecodeError::InvalidLength(i) => *i,
        base64::DecodeError::InvalidLastSymbol(i, _) => *i,
        base64::DecodeError::InvalidPadding => s.len(),
    };
    format!("illegal base64 data at input byte {off}")
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn b32enc(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = buf.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        let nchars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < nchars {
                out.push(char::from(B32[((v >> (35 - i * 5)) & 31) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b32dec(s: &str) -> String {
    let mut bits: u64 = 0;
    let mut nbits = 0;
    let mut out = Vec::new();
    let trimmed = s.trim_end_matches('=');
    for (i, c) in trimmed.bytes().enumerate() {
        let Some(v) = B32.iter().position(|&x| x == c) else {
            return format!("illegal base32 data at input byte {i}");
        };
        bits = (bits << 5) | v as u64;
        nbits += 5;
        if nbits >= 8 {
            nbits -= 8;
            out.push(((bits >> nbits) & 0xff) as u8);
        }
    }
    if !s.len().is_multiple_of(8) {
        return format!("illegal base32 data at input byte {}", s.len() / 8 * 8);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32() {
        assert_eq!(b32enc(b"hello"), "NBSWY3DP");
        assert_eq!(b32dec("NBSWY3DP"), "hello");
    }
}

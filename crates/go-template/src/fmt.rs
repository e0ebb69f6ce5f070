//! Go's `fmt` printing rules for [`Value`]s: `Sprint`, `Sprintln`, and `Sprintf`;
//! [`strconv`] holds Go's float formatting and quoting.

mod strconv;

use strconv::{can_backquote, quote_rune, quote_with};
pub(crate) use strconv::{format_float, is_print, quote};

use crate::value::{Object, Value};

#[derive(Clone, Copy, Default)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

struct Printer {
    buf: String,
    f: Flags,
    /// Bytes `buf` may grow to; past it printing stops and `over` is set.
    max: usize,
    over: bool,
}

/// Go's `tooLarge`: widths and precisions beyond a million are refused.
fn too_large(n: i64) -> bool {
    !(-1_000_000..=1_000_000).contains(&n)
}

/// Go's `fmt.Sprint`.
pub(crate) fn sprint(args: &[Value]) -> String {
    let mut p = Printer::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Value::String(_));
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
        prev_string = is_string;
    }
    p.buf
}

/// Go's `fmt.Sprintln`.
pub(crate) fn sprintln(args: &[Value]) -> String {
    let mut p = Printer::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
    }
    p.buf.push('\n');
    p.buf
}

/// `%v` of one value (what `{{ . }}` and Sprig's `toString` print).
pub(crate) fn sprint_value(v: &Value) -> String {
    if let Value::String(s) = v {
        return s.clone();
    }
    let mut p = Printer::new();
    p.print_arg(v, 'v');
    p.buf
}

/// A `*` width or precision: the next argument when it is an int within bounds; the
/// argument is used up either way (as Go's `fmt` does).
fn star_arg(args: &[Value], arg_num: &mut usize) -> Option<i64> {
    let n = match args.get(*arg_num) {
        Some(Value::Int(n)) if !too_large(*n) => Some(*n),
        _ => None,
    };
    if *arg_num < args.len() {
        *arg_num += 1;
    }
    n
}

/// Go's `fmt.Sprintf` (argument indexes `%[n]d` are not supported).
#[cfg(test)]
pub(crate) fn sprintf(format: &str, args: &[Value]) -> String {
    sprintf_limited(format, args, usize::MAX).unwrap_or_default()
}

/// Go's `fmt.Sprintf`, or `None` when the text would be longer than `max` bytes (checked
/// before padding is written, so `%9999999d` over a long list allocates nothing large).
pub(crate) fn sprintf_limited(format: &str, args: &[Value], max: usize) -> Option<String> {
    let mut p = Printer::new();
    p.max = max;
    let b = format.as_bytes();
    let end = b.len();
    let mut arg_num = 0usize;
    let mut i = 0usize;
    'outer: while i < end {
        let last = i;
        while i < end && b[i] != b'%' {
            i += 1;
        }
        if i > last {
            p.buf.push_str(&format[last..i]);
        }
        if i >= end {
            break;
        }
        i += 1;
        p.f = Flags::default();
        while i < end {
            match b[i] {
                b'#' => p.f.sharp = true,
                b'0' => p.f.zero = !p.f.minus,
                b'+' => p.f.plus = true,
                b'-' => {
                    p.f.minus = true;
                    p.f.zero = false;
                }
                b' ' => p.f.space = true,
                _ => break,
            }
            i += 1;
        }
        // Width.
        if i < end && b[i] == b'*' {
            i += 1;
            match star_arg(args, &mut arg_num) {
                Some(n) => {
                    if n < 0 {
                        p.f.minus = true;
                        p.f.zero = false;
                    }
                    p.f.wid = usize::try_from(n.unsigned_abs()).ok();
                }
                None => p.buf.push_str("%!(BADWIDTH)"),
            }
        } else {
            let (n, ni) = parse_num(b, i);
            p.f.wid = n;
            i = ni;
        }
        // Precision.
        if i + 1 < end && b[i] == b'.' {
            i += 1;
            if i < end && b[i] == b'*' {
                i += 1;
                match star_arg(args, &mut arg_num).filter(|n| *n >= 0) {
                    Some(n) => p.f.prec = usize::try_from(n).ok(),
                    None => p.buf.push_str("%!(BADPREC)"),
                }
            } else {
                let (n, ni) = parse_num(b, i);
                p.f.prec = Some(n.unwrap_or(0));
                i = ni;
            }
        }
        if i >= end {
            p.buf.push_str("%!(NOVERB)");
            break 'outer;
        }
        if p.over || p.buf.len() > max {
            return None;
        }
        let Some(verb) = format[i..].chars().next() else {
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            p.buf.push('%');
            continue;
        }
        let Some(arg) = args.get(arg_num) else {
            p.buf.push_str("%!");
            p.buf.push(verb);
            p.buf.push_str("(MISSING)");
            continue;
        };
        if verb == 'v' {
            p.f.sharp_v = p.f.sharp;
            p.f.sharp = false;
            p.f.plus_v = p.f.plus;
            p.f.plus = false;
        }
        p.print_arg(arg, verb);
        arg_num += 1;
    }
    if arg_num < args.len() {
        p.f = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (k, a) in args[arg_num..].iter().enumerate() {
            if k > 0 {
                p.buf.push_str(", ");
            }
            if matches!(a, Value::Nil) {
                p.buf.push_str("<nil>");
            } else {
                p.buf.push_str(&a.type_name());
                p.buf.push('=');
                p.print_arg(a, 'v');
            }
        }
        p.buf.push(')');
    }
    if p.over || p.buf.len() > max {
        return None;
    }
    Some(p.buf)
}

fn parse_num(b: &[u8], mut i: usize) -> (Option<usize>, usize) {
    let start = i;
    let mut n: usize = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        // Go gives up on a number past a million: no width, and the verb is lost.
        if n > 1_000_000 {
            return (None, b.len());
        }
        n = n * 10 + usize::from(b[i] - b'0');
        i += 1;
    }
    if i == start { (None, i) } else { (Some(n), i) }
}

impl Printer {
    fn new() -> Self {
        Printer {
            buf: String::new(),
            f: Flags::default(),
            max: usize::MAX,
            over: false,
        }
    }

    /// Whether `n` more bytes fit; marks the printer full when not.
    fn room(&mut self, n: usize) -> bool {
        if self.over || self.buf.len().saturating_add(n) > self.max {
            self.over = true;
            return false;
        }
        true
    }

    fn print_arg(&mut self, v: &Value, verb: char) {
        if let Value::Nil = v {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(v, verb),
            }
            return;
        }
        if verb == 'T' {
            let t = v.type_name();
            self.fmt_s(&t);
            return;
        }
        self.print_value(v, verb, 0);
    }

    fn print_value(&mut self, v: &Value, verb: char, depth: usize) {
        if !self.room(0) {
            return;
        }
        match v {
            Value::Nil => {
                if depth == 0 {
                    self.pad("<invalid reflect.Value>");
                } else {
                    self.pad("<nil>");
                }
            }
            Value::Bool(b) => match verb {
                't' | 'v' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(v, verb),
            },
            Value::Int(i) => self.fmt_int(*i, verb, v),
            Value::Float(x) => self.fmt_float_verb(*x, verb, v),
            Value::String(s) => self.fmt_string(s, verb, v),
            Value::List(items) => {
                // `%#v` prints a Go slice literal, the others `[a b]`.
                let (open, separator, close) = if self.f.sharp_v {
                    ("[]interface {}{", ", ", "}")
                } else {
                    ("[", " ", "]")
                };
                self.buf.push_str(open);
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        self.buf.push_str(separator);
                    }
                    self.print_value(x, verb, depth + 1);
                }
                self.buf.push_str(close);
            }
            Value::Map(m) => {
                if self.f.sharp_v {
                    self.buf.push_str(m.type_name());
                    self.buf.push('{');
                } else {
                    self.buf.push_str("map[");
                }
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        self.buf.push_str(if self.f.sharp_v { ", " } else { " " });
                    }
                    self.print_value(k, verb, depth + 1);
                    self.buf.push(':');
                    self.print_value(x, verb, depth + 1);
                }
                self.buf.push(if self.f.sharp_v { '}' } else { ']' });
            }
            Value::Object(o) => self.fmt_object(o, verb, depth),
        }
    }

    fn fmt_object(&mut self, o: &Object, verb: char, depth: usize) {
        if let Some(d) = o.display_string()
            && !self.f.sharp_v
            && matches!(verb, 'v' | 's' | 'x' | 'X' | 'q')
        {
            let d = d.to_string();
            self.fmt_string(&d, verb, &Value::Nil);
            return;
        }
        if self.f.sharp_v {
            self.buf.push_str(o.type_name());
        }
        self.buf.push('{');
        for (i, fld) in o.raw_fields().iter().enumerate() {
            if i > 0 {
                self.buf.push_str(if self.f.sharp_v { ", " } else { " " });
            }
            if self.f.plus_v || self.f.sharp_v {
                self.buf.push_str(&fld.name);
                self.buf.push(':');
            }
            self.print_value(&fld.value, verb, depth + 1);
        }
        self.buf.push('}');
    }

    fn bad_verb(&mut self, v: &Value, verb: char) {
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if let Value::Nil = v {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(&v.type_name());
            self.buf.push('=');
            let saved = self.f;
            self.f = Flags::default();
            self.f.wid = saved.wid;
            self.f.prec = saved.prec;
            self.f.minus = saved.minus;
            self.f.zero = saved.zero;
            self.print_value(v, 'v', 0);
            self.f = saved;
        }
        self.buf.push(')');
    }

    fn write_padding(&mut self, n: usize) {
        if !self.room(n) {
            return;
        }
        let c = if self.f.zero { '0' } else { ' ' };
        for _ in 0..n {
            self.buf.push(c);
        }
    }

    fn pad(&mut self, s: &str) {
        let Some(w) = self.f.wid else {
            self.buf.push_str(s);
            return;
        };
        let n = s.chars().count();
        if n >= w {
            self.buf.push_str(s);
            return;
        }
        if self.f.minus {
            self.buf.push_str(s);
            let z = self.f.zero;
            self.f.zero = false;
            self.write_padding(w - n);
            self.f.zero = z;
        } else {
            self.write_padding(w - n);
            self.buf.push_str(s);
        }
    }

    fn truncate<'s>(&self, s: &'s str) -> &'s str {
        if let Some(p) = self.f.prec
            && let Some((i, _)) = s.char_indices().nth(p)
        {
            return &s[..i];
        }
        s
    }

    fn fmt_s(&mut self, s: &str) {
        let t = self.truncate(s).to_string();
        self.pad(&t);
    }

    fn fmt_string(&mut self, s: &str, verb: char, v: &Value) {
        match verb {
            'v' => {
                if self.f.sharp_v {
                    self.fmt_q(s);
                } else {
                    self.fmt_s(s);
                }
            }
            's' => self.fmt_s(s),
            'x' => self.fmt_sx(s.as_bytes(), "0123456789abcdef"),
            'X' => self.fmt_sx(s.as_bytes(), "0123456789ABCDEF"),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(v, verb),
        }
    }

    fn fmt_q(&mut self, s: &str) {
        let s = self.truncate(s).to_string();
        let q = if self.f.sharp && can_backquote(&s) {
            format!("`{s}`")
        } else if self.f.plus {
            quote_with(&s, true)
        } else {
            quote(&s)
        };
        self.pad(&q);
    }

    fn fmt_sx(&mut self, bytes: &[u8], digits: &str) {
        let d = digits.as_bytes();
        let n = match self.f.prec {
            Some(p) if p < bytes.len() => p,
            _ => bytes.len(),
        };
        let mut out = String::new();
        for (i, b) in bytes[..n].iter().enumerate() {
            if i > 0 && self.f.space {
                out.push(' ');
            }
            if self.f.sharp && (i == 0 || self.f.space) {
                out.push('0');
                out.push(if digits.starts_with("0123456789a") {
                    'x'
                } else {
                    'X'
                });
            }
            out.push(char::from(d[usize::from(b >> 4)]));
            out.push(char::from(d[usize::from(b & 15)]));
        }
        self.pad(&out);
    }

    fn fmt_int(&mut self, i: i64, verb: char, v: &Value) {
        match verb {
            'v' | 'd' => self.fmt_integer(i, 10, verb, "0123456789abcdefx"),
            'b' => self.fmt_integer(i, 2, verb, "0123456789abcdefx"),
            'o' | 'O' => self.fmt_integer(i, 8, verb, "0123456789abcdefx"),
            'x' => self.fmt_integer(i, 16, verb, "0123456789abcdefx"),
            'X' => self.fmt_integer(i, 16, verb, "0123456789ABCDEFX"),
            'c' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                self.pad(&c.to_string());
            }
            'q' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                let q = quote_rune(c, self.f.plus);
                self.pad(&q);
            }
            'U' => {
                let mut s = format!("U+{:04X}", i);
                if self.f.sharp
                    && let Some(c) = u32::try_from(i).ok().and_then(char::from_u32)
                    && is_print(c)
                {
                    s.push_str(&format!(" '{c}'"));
                }
                self.pad(&s);
            }
            _ => self.bad_verb(v, verb),
        }
    }

    fn fmt_integer(&mut self, i: i64, base: u32, verb: char, digits: &str) {
        let negative = i < 0;
        let mut u = i.unsigned_abs();
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let z = self.f.zero;
                self.f.zero = false;
                let w = self.f.wid.unwrap_or(0);
                self.write_padding(w);
                self.f.zero = z;
                return;
            }
        } else if self.f.zero
            && let Some(w) = self.f.wid
        {
            prec = w;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let d = digits.as_bytes();
        let mut out: Vec<u8> = Vec::new();
        if u == 0 {
            out.push(b'0');
        }
        while u > 0 {
            out.push(d[(u % u64::from(base)) as usize]);
            u /= u64::from(base);
        }
        if !self.room(prec) {
            return;
        }
        while out.len() < prec {
            out.push(b'0');
        }
        if self.f.sharp {
            match base {
                2 => {
                    out.push(b'b');
                    out.push(b'0');
                }
                8 if out.last() != Some(&b'0') => out.push(b'0'),
                16 => {
                    out.push(d[16]);
                    out.push(b'0');
                }
                _ => {}
            }
        }
        if verb == 'O' {
            out.push(b'o');
            out.push(b'0');
        }
        if negative {
            out.push(b'-');
        } else if self.f.plus {
            out.push(b'+');
        } else if self.f.space {
            out.push(b' ');
        }
        out.reverse();
        let s = String::from_utf8_lossy(&out).into_owned();
        let z = self.f.zero;
        self.f.zero = false;
        self.pad(&s);
        self.f.zero = z;
    }

    fn fmt_float_verb(&mut self, x: f64, verb: char, v: &Value) {
        match verb {
            'v' => self.fmt_float(x, 'g', None),
            'g' | 'G' => self.fmt_float(x, verb, self.f.prec),
            'e' | 'E' | 'f' => self.fmt_float(x, verb, Some(self.f.prec.unwrap_or(6))),
            'F' => self.fmt_float(x, 'f', Some(self.f.prec.unwrap_or(6))),
            _ => self.bad_verb(v, verb),
        }
    }

    fn fmt_float(&mut self, x: f64, verb: char, prec: Option<usize>) {
        if !self.room(prec.unwrap_or(0)) {
            return;
        }
        let s = format_float(x, verb, prec);
        let mut num = if s.starts_with('-') || s.starts_with('+') {
            s
        } else {
            format!("+{s}")
        };
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(0..1, " ");
        }
        if num[1..].starts_with('I') || num[1..].starts_with('N') {
            let z = self.f.zero;
            self.f.zero = false;
            if num[1..].starts_with('N') && !self.f.space && !self.f.plus {
                num.remove(0);
            }
            self.pad(&num);
            self.f.zero = z;
            return;
        }
        if self.f.plus || !num.starts_with('+') {
            if self.f.zero
                && let Some(w) = self.f.wid
                && w > num.len()
            {
                self.buf.push_str(&num[..1]);
                self.write_padding(w - num.len());
                self.buf.push_str(&num[1..]);
                return;
            }
            self.pad(&num);
            return;
        }
        let rest = num[1..].to_string();
        self.pad(&rest);
    }
}

#[cfg(test)]
mod tests;

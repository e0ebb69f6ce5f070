//! `spec.filterTags`: a Go RE2 pattern (unanchored) and a Go `Regexp.Expand` template.
//!
//! Patterns are read with Go's syntax. They are first translated lexically into the equivalent
//! Rust spelling: `\` before ASCII punctuation is that literal character (so `\<` is `<`, not
//! a word boundary); `\Q...\E` quotes; a `{` that does not start a `{n}`, `{n,}` or `{n,m}`
//! repetition is literal; inside brackets `[`, `&` and `~` are literal (Go classes neither nest
//! nor have set operations). The result is then checked for what Go rejects but Rust accepts
//! (look-around, backreferences, possessive and other stacked repetitions such as `a*+` and
//! `a**`, counts above 1000, the flags `x`, `u` and `R`, `\u`/`\U` escapes, `--` in classes,
//! group names outside `[A-Za-z0-9_]`) and compiled once with fancy-regex. The Go differential
//! test checks both directions. Known differences: Go also accepts group names that start with
//! a digit, duplicate names, and a repetition right after a flag group (`(?U)?`), which we
//! reject; `\d`, `\w`, `\s`, `\b` are ASCII in Go and Unicode here (identical on OCI tags,
//! which are ASCII).

use regex_syntax::ast::{self, Ast, Visitor};

/// A compiled tag filter.
#[derive(Debug, Clone)]
pub struct TagFilter {
    regex: fancy_regex::Regex,
    /// Pre-parsed `extract` template; `None` when empty (the tag itself is the value).
    template: Option<Template>,
}

/// Why a pattern is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression pattern '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

/// Matching failed at run time (fancy-regex's backtracking limit; cannot happen for the
/// RE2 subset we accept, but the API is fallible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to match tag {tag:?}: {reason}")]
pub struct MatchError {
    pub tag: String,
    pub reason: String,
}

struct GoSyntax;

impl GoSyntax {
    fn check_flags(flags: &ast::Flags) -> Result<(), String> {
        for item in &flags.items {
            if let ast::FlagsItemKind::Flag(f) = item.kind {
                match f {
                    ast::Flag::CaseInsensitive
                    | ast::Flag::MultiLine
                    | ast::Flag::DotMatchesNewLine
                    | ast::Flag::SwapGreed => {}
                    ast::Flag::Unicode | ast::Flag::CRLF | ast::Flag::IgnoreWhitespace => {
                        return Err(format!(
                            "flag group `(?{flags})`: Go supports only the flags i, m, s and U",
                            flags = flag_text(flags)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_literal(lit: &ast::Literal) -> Result<(), String> {
        match &lit.kind {
            ast::LiteralKind::HexFixed(k) | ast::LiteralKind::HexBrace(k)
                if *k != ast::HexLiteralKind::X =>
            {
                Err("escape sequences \\u and \\U are not Go syntax (use \\x{...})".into())
            }
            _ => Ok(()),
        }
    }
}

fn flag_text(flags: &ast::Flags) -> String {
    flags
        .items
        .iter()
        .map(|i| match i.kind {
            ast::FlagsItemKind::Negation => '-',
            ast::FlagsItemKind::Flag(f) => match f {
                ast::Flag::CaseInsensitive => 'i',
                ast::Flag::MultiLine => 'm',
                ast::Flag::DotMatchesNewLine => 's',
                ast::Flag::SwapGreed => 'U',
                ast::Flag::Unicode => 'u',
                ast::Flag::CRLF => 'R',
                ast::Flag::IgnoreWhitespace => 'x',
            },
        })
        .collect()
}

const GO_MAX_REPEAT: u32 = 1000;

impl Visitor for GoSyntax {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), String> {
        match ast {
            Ast::Flags(set) => Self::check_flags(&set.flags),
            Ast::Literal(lit) => Self::check_literal(lit),
            Ast::Assertion(a) => match a.kind {
                ast::AssertionKind::StartLine
                | ast::AssertionKind::EndLine
                | ast::AssertionKind::StartText
                | ast::AssertionKind::EndText
                | ast::AssertionKind::WordBoundary
                | ast::AssertionKind::NotWordBoundary => Ok(()),
                _ => Err("word-boundary assertions \\b{...} are not Go syntax".into()),
            },
            Ast::Repetition(rep) => {
                if matches!(*rep.ast, Ast::Repetition(_)) {
                    return Err(
                        "invalid nested repetition operator (possessive or stacked quantifiers are not Go syntax)"
                            .into(),
                    );
                }
                if let ast::RepetitionKind::Range(r) = &rep.op.kind {
                    let (lo, hi) = match *r {
                        ast::RepetitionRange::Exactly(n) => (n, n),
                        ast::RepetitionRange::AtLeast(n) => (n, n),
                        ast::RepetitionRange::Bounded(a, b) => (a, b),
                    };
                    if lo > GO_MAX_REPEAT || hi > GO_MAX_REPEAT {
                        return Err(format!(
                            "invalid repeat count: Go allows at most {GO_MAX_REPEAT}"
                        ));
                    }
                }
                Ok(())
            }
            Ast::Group(g) => match &g.kind {
                ast::GroupKind::NonCapturing(flags) => Self::check_flags(flags),
                ast::GroupKind::CaptureName { name, .. } => {
                    if name
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        Ok(())
                    } else {
                        Err(format!(
                            "invalid named capture `{}`: Go allows only [A-Za-z0-9_]",
                            name.name
                        ))
                    }
                }
                ast::GroupKind::CaptureIndex(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn visit_class_set_item_pre(&mut self, item: &ast::ClassSetItem) -> Result<(), String> {
        match item {
            ast::ClassSetItem::Bracketed(_) => {
                Err("nested character classes are not Go syntax (Go reads `[` literally)".into())
            }
            ast::ClassSetItem::Literal(lit) => Self::check_literal(lit),
            ast::ClassSetItem::Range(r) => {
                Self::check_literal(&r.start)?;
                Self::check_literal(&r.end)
            }
            _ => Ok(()),
        }
    }

    fn visit_class_set_binary_op_pre(&mut self, _op: &ast::ClassSetBinaryOp) -> Result<(), String> {
        Err("character class set operations (&&, --, ~~) are not Go syntax".into())
    }
}

/// Checks that `pattern` is valid Go RE2 syntax and returns its Rust spelling (see the module
/// documentation).
pub fn check_go_syntax(pattern: &str) -> Result<String, String> {
    let rust = go_to_rust_syntax(pattern)?;
    let ast = ast::parse::Parser::new()
        .parse(&rust)
        .map_err(|e| describe_parse_error(&e))?;
    ast::visit(&ast, GoSyntax)?;
    // The translation step catches what the AST allows but a regex cannot hold (e.g. invalid
    // Unicode class names, `(?-u)` byte classes).
    regex_syntax::hir::translate::Translator::new()
        .translate(&rust, &ast)
        .map_err(|e| e.kind().to_string())?;
    Ok(rust)
}

fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() || !c.is_ascii() {
        out.push(c);
    } else {
        // Valid in and out of brackets, whatever the character means to Rust.
        out.push_str(&format!("\\x{{{:02X}}}", u32::from(c)));
    }
}

/// A `{n}`, `{n,}` or `{n,m}` repetition at the start of `s`: its length.
fn repetition_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if b.first() != Some(&b'{') || !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    (b.get(i) == Some(&b'}')).then_some(i + 1)
}

/// The lexical differences between Go's and Rust's syntax, translated.
fn go_to_rust_syntax(p: &str) -> Result<String, String> {
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut class_first = false;
    let mut i = 0;
    while let Some(c) = p[i..].chars().next() {
        let rest = &p[i..];
        let first = std::mem::replace(&mut class_first, false);
        match c {
            '\\' => {
                let Some(n) = rest[1..].chars().next() else {
                    return Err("trailing backslash at end of expression".into());
                };
                if n == 'Q' && !in_class {
                    let body = &rest[2..];
                    let (quoted, used) = match body.find("\\E") {
                        Some(e) => (&body[..e], 2 + e + 2),
                        None => (body, rest.len()),
                    };
                    quoted.chars().for_each(|q| push_literal(&mut out, q));
                    i += used;
                    continue;
                }
                if n.is_ascii() && !n.is_ascii_alphanumeric() {
                    push_literal(&mut out, n);
                    i += 1 + n.len_utf8();
                    continue;
                }
                out.push('\\');
                out.push(n);
                let mut used = 1 + n.len_utf8();
                // `\p{..}`, `\x{..}`: copy the braces as they are.
                if matches!(n, 'p' | 'P' | 'x') && rest[used..].starts_with('{') {
                    let end = rest[used..].find('}').map_or(rest.len(), |e| used + e + 1);
                    out.push_str(&rest[used..end]);
                    used = end;
                }
                i += used;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if p[i..].starts_with('^') {
                    out.push('^');
                    i += 1;
                }
                class_first = true;
                continue;
            }
            '[' => {
                // Go classes do not nest; only `[:name:]` is special inside one.
                if let Some(end) = rest.find(":]").filter(|_| rest.starts_with("[:")) {
                    out.push_str(&rest[..end + 2]);
                    i += end + 2;
                    continue;
                }
                push_literal(&mut out, '[');
            }
            ']' if in_class && first => push_literal(&mut out, ']'),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => push_literal(&mut out, c),
            '{' if !in_class => match repetition_len(rest) {
                Some(n) => {
                    out.push_str(&rest[..n]);
                    i += n;
                    continue;
                }
                None => push_literal(&mut out, '{'),
            },
            '}' if !in_class => push_literal(&mut out, '}'),
            _ => out.push(c),
        }
        i += c.len_utf8();
    }
    Ok(out)
}

fn describe_parse_error(e: &ast::Error) -> String {
    match e.kind() {
        ast::ErrorKind::UnsupportedLookAround => {
            "look-around ((?=, (?!, (?<=, (?<!) is not supported by Go's RE2 syntax".into()
        }
        ast::ErrorKind::UnsupportedBackreference => {
            "backreferences (\\1, \\k<name>) are not supported by Go's RE2 syntax".into()
        }
        kind => format!("{kind} at offset {}", e.span().start.offset),
    }
}

impl TagFilter {
    /// Compiles `pattern` (Go syntax, unanchored) and parses the `extract` template.
    pub fn new(pattern: &str, extract: &str) -> Result<Self, PatternError> {
        let err = |reason: String| PatternError {
            pattern: pattern.to_owned(),
            reason,
        };
        let rust = check_go_syntax(pattern).map_err(err)?;
        let regex = fancy_regex::Regex::new(&rust).map_err(|e| err(e.to_string()))?;
        let template = (!extract.is_empty()).then(|| Template::parse(extract, &regex));
        Ok(TagFilter { regex, template })
    }

    /// Applies the filter to `tag`: `Ok(false)` when it does not match; otherwise the value to
    /// compare is written into `out` (cleared first) and `Ok(true)` is returned. Without a
    /// template the value is the tag itself.
    pub fn apply(&self, tag: &str, out: &mut String) -> Result<bool, MatchError> {
        let merr = |e: fancy_regex::Error| MatchError {
            tag: tag.to_owned(),
            reason: e.to_string(),
        };
        out.clear();
        let Some(template) = &self.template else {
            let matched = self.regex.is_match(tag).map_err(merr)?;
            if matched {
                out.push_str(tag);
            }
            return Ok(matched);
        };
        let Some(caps) = self.regex.captures(tag).map_err(merr)? else {
            return Ok(false);
        };
        for piece in &template.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Groups(groups) => {
                    // Go: the first group of that name which took part in the match.
                    if let Some(m) = groups.iter().find_map(|&g| caps.get(g)) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        Ok(true)
    }
}

/// A Go `Regexp.Expand` template, resolved against the pattern's groups once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// Candidate group indexes (in order); empty when the reference names no group.
    Groups(Vec<usize>),
}

impl Template {
    /// Parses `template` with Go's rules: `$$` is `$`; `$name` takes the longest run of
    /// letters, digits and `_`; `${name}` needs the closing brace; a number without a leading
    /// zero (below 1e8) is a group index, anything else a group name; unknown groups expand to
    /// nothing; a `$` not followed by a valid reference is kept as text.
    pub fn parse(template: &str, regex: &fancy_regex::Regex) -> Self {
        let names: Vec<Option<&str>> = regex.capture_names().collect();
        let group_count = names.len();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = template;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                lit.push('$');
                rest = after;
                continue;
            }
            let Some((name, after)) = extract_name(rest) else {
                lit.push('$');
                continue;
            };
            rest = after;
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            let groups = match group_number(name) {
                Some(n) if n < group_count => vec![n],
                Some(_) => Vec::new(),
                None => names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n == Some(name))
                    .map(|(i, _)| i)
                    .collect(),
            };
            pieces.push(Piece::Groups(groups));
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Template { pieces }
    }
}

/// Go's `extract`: the name after `$` (and the rest), or `None` when malformed.
fn extract_name(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let len: usize = body
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let mut rest = &body[len..];
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    Some((name, rest))
}

fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    let mut n: usize = 0;
    for b in name.bytes() {
        if n >= 100_000_000 {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests;

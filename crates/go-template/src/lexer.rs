//! Tokeniser following the rules of Go's `text/template/parse` lexer.

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Bool(bool),
    CharConst(String),
    Declare,
    Assign,
    Field(String),
    Identifier(String),
    Keyword(Kw),
    LeftParen,
    RightParen,
    Pipe,
    Number(String),
    Str(String),
    RawStr(String),
    Variable(String),
    Dot,
    Nil,
    Space,
    Char(char),
    Eof,
    Error(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kw {
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

impl Kw {
    fn name(self) -> &'static str {
        match self {
            Kw::Block => "block",
            Kw::Break => "break",
            Kw::Continue => "continue",
            Kw::Define => "define",
            Kw::Else => "else",
            Kw::End => "end",
            Kw::If => "if",
            Kw::Range => "range",
            Kw::Template => "template",
            Kw::With => "with",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
    pub(crate) line: usize,
}

impl Item {
    /// Go's `item.String()`, used in "unexpected X in Y" messages.
    pub(crate) fn describe(&self) -> String {
        let val: String = match &self.tok {
            Tok::Eof => return "EOF".to_string(),
            Tok::Error(e) => return e.clone(),
            Tok::Keyword(k) => return format!("<{}>", k.name()),
            Tok::Text(s)
            | Tok::CharConst(s)
            | Tok::Field(s)
            | Tok::Identifier(s)
            | Tok::Number(s)
            | Tok::Str(s)
            | Tok::RawStr(s)
            | Tok::Variable(s) => s.clone(),
            Tok::LeftDelim => "{{".into(),
            Tok::RightDelim => "}}".into(),
            Tok::Bool(b) => b.to_string(),
            Tok::Declare => ":=".into(),
            Tok::Assign => "=".into(),
            Tok::LeftParen => "(".into(),
            Tok::RightParen => ")".into(),
            Tok::Pipe => "|".into(),
            Tok::Dot => ".".into(),
            Tok::Nil => "nil".into(),
            Tok::Space => " ".into(),
            Tok::Char(c) => c.to_string(),
        };
        if val.chars().count() > 10 {
            let short: String = val.chars().take(10).collect();
            format!("{}...", crate::fmt::quote(&short))
        } else {
            crate::fmt::quote(&val)
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";

struct Lexer<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    items: Vec<Item>,
    paren_depth: i32,
    line: usize,
    start_line: usize,
}

/// Tokenises the whole input; an error becomes the final `Tok::Error` item.
pub(crate) fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        items: Vec::new(),
        paren_depth: 0,
        line: 1,
        start_line: 1,
    };
    l.run();
    l.items
}

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s str {
        &self.input[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn backup(&mut self, c: char) {
        self.pos -= c.len_utf8();
        if c == '\n' {
            self.line -= 1;
        }
    }

    fn advance_to(&mut self, pos: usize) {
        self.line += self.input[self.pos..pos].matches('\n').count();
        self.pos = pos;
    }

    fn emit(&mut self, tok: Tok) {
        self.items.push(Item {
            tok,
            pos: self.start,
            line: self.start_line,
        });
        self.ignore();
    }

    fn ignore(&mut self) {
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn error(&mut self, msg: String) {
        self.items.push(Item {
            tok: Tok::Error(msg),
            pos: self.start,
            line: self.start_line,
        });
    }

    fn run(&mut self) {
        loop {
            // Text state.
            match self.rest().find(LEFT) {
                Some(off) => {
                    let delim_at = self.pos + off;
                    let after = &self.input[delim_at + LEFT.len()..];
                    let trim = has_left_trim(after);
                    let text_end = if trim {
                        delim_at - trim_right_len(&self.input[self.pos..delim_at])
                    } else {
                        delim_at
                    };
                    self.advance_to(text_end);
                    if self.pos > self.start {
                        let t = self.input[self.start..self.pos].to_string();
                        self.emit(Tok::Text(t));
                    }
                    self.advance_to(delim_at);
                    self.ignore();
                    if !self.left_delim(trim) {
                        return;
                    }
                }
                None => {
                    self.advance_to(self.input.len());
                    if self.pos > self.start {
                        let t = self.input[self.start..self.pos].to_string();
                        self.emit(Tok::Text(t));
                    }
                    self.emit(Tok::Eof);
                    return;
                }
            }
        }
    }

    /// At `{{`. Returns false when lexing must stop (error or EOF emitted).
    fn left_delim(&mut self, trim: bool) -> bool {
        let mut p = self.pos + LEFT.len();
        if trim {
            p += 2;
        }
        if self.input[p..].starts_with("/*") {
            self.advance_to(p);
            self.ignore();
            return self.comment();
        }
        self.advance_to(self.pos + LEFT.len());
        self.emit(Tok::LeftDelim);
        if trim {
            self.advance_to(self.pos + 2);
            self.ignore();
        }
        self.paren_depth = 0;
        self.inside_action()
    }

    fn comment(&mut self) -> bool {
        let Some(end) = self.rest().find("*/") else {
            self.error("unclosed comment".into());
            return false;
        };
        self.advance_to(self.pos + end + 2);
        let (delim, trim) = self.at_right_delim();
        if !delim {
            self.error("comment ends before closing delimiter".into());
            return false;
        }
        let mut p = self.pos + RIGHT.len();
        if trim {
            p += 2;
        }
        self.advance_to(p);
        if trim {
            let n = trim_left_len(self.rest());
            self.advance_to(self.pos + n);
        }
        self.ignore();
        true
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let r = self.rest();
        if has_right_trim(r) && r[2..].starts_with(RIGHT) {
            return (true, true);
        }
        (r.starts_with(RIGHT), false)
    }

    fn inside_action(&mut self) -> bool {
        loop {
            let (delim, trim) = self.at_right_delim();
            if delim {
                if self.paren_depth == 0 {
                    if trim {
                        self.advance_to(self.pos + 2);
                        self.ignore();
                    }
                    self.advance_to(self.pos + RIGHT.len());
                    self.emit(Tok::RightDelim);
                    if trim {
                        let n = trim_left_len(self.rest());
                        self.advance_to(self.pos + n);
                        self.ignore();
                    }
                    return true;
                }
                self.error("unclosed left paren".into());
                return false;
            }
            let Some(c) = self.next() else {
                self.error("unclosed action".into());
                return false;
            };
            let ok = match c {
                c if is_space(c) => {
                    self.backup(c);
                    self.space();
                    true
                }
                '=' => {
                    self.emit(Tok::Assign);
                    true
                }
                ':' => {
                    if self.next() != Some('=') {
                        self.error("expected :=".into());
                        return false;
                    }
                    self.emit(Tok::Declare);
                    true
                }
                '|' => {
                    self.emit(Tok::Pipe);
                    true
                }
                '"' => self.quote(),
                '`' => self.raw_quote(),
                '$' => self.field_or_variable(true),
                '\'' => self.char_const(),
                '.' => {
                    let is_digit = self.peek().is_some_and(|d| d.is_ascii_digit());
                    if is_digit {
                        self.backup('.');
                        self.number()
                    } else {
                        self.field_or_variable(false)
                    }
                }
                '+' | '-' | '0'..='9' => {
                    self.backup(c);
                    self.number()
                }
                c if is_alnum(c) => {
                    self.backup(c);
                    self.identifier()
                }
                '(' => {
                    self.emit(Tok::LeftParen);
                    self.paren_depth += 1;
                    true
                }
                ')' => {
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        self.error(format!("unexpected right paren {}", unicode_plus(c)));
                        return false;
                    }
                    self.emit(Tok::RightParen);
                    true
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    self.emit(Tok::Char(c));
                    true
                }
                c => {
                    self.error(format!(
                        "unrecognized character in action: {}",
                        unicode_plus(c)
                    ));
                    false
                }
            };
            if !ok {
                return false;
            }
        }
    }

    fn space(&mut self) {
        let mut n = 0;
        while let Some(c) = self.peek() {
            if !is_space(c) {
                break;
            }
            self.next();
            n += 1;
        }
        // A space directly before `-}}` belongs to the trim marker.
        let prev = &self.input[self.pos - 1..];
        if has_right_trim(prev) && prev[2..].starts_with(RIGHT) {
            let c = prev.chars().next().unwrap_or(' ');
            self.backup(c);
            if n == 1 {
                return;
            }
        }
        self.emit(Tok::Space);
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.rest().starts_with(RIGHT),
        }
    }

    fn identifier(&mut self) -> bool {
        while let Some(c) = self.peek() {
            if !is_alnum(c) {
                break;
            }
            self.next();
        }
        let word = &self.input[self.start..self.pos];
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            self.error(format!("bad character {}", unicode_plus(c)));
            return false;
        }
        let tok = match word {
            "block" => Tok::Keyword(Kw::Block),
            "break" => Tok::Keyword(Kw::Break),
            "continue" => Tok::Keyword(Kw::Continue),
            "define" => Tok::Keyword(Kw::Define),
            "else" => Tok::Keyword(Kw::Else),
            "end" => Tok::Keyword(Kw::End),
            "if" => Tok::Keyword(Kw::If),
            "range" => Tok::Keyword(Kw::Range),
            "template" => Tok::Keyword(Kw::Template),
            "with" => Tok::Keyword(Kw::With),
            "nil" => Tok::Nil,
            "true" => Tok::Bool(true),
            "false" => Tok::Bool(false),
            w => Tok::Identifier(w.to_string()),
        };
        self.emit(tok);
        true
    }

    fn field_or_variable(&mut self, var: bool) -> bool {
        if self.at_terminator() {
            self.emit(if var {
                Tok::Variable("$".into())
            } else {
                Tok::Dot
            });
            return true;
        }
        while let Some(c) = self.peek() {
            if !is_alnum(c) {
                break;
            }
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            self.error(format!("bad character {}", unicode_plus(c)));
            return false;
        }
        let s = self.input[self.start..self.pos].to_string();
        self.emit(if var { Tok::Variable(s) } else { Tok::Field(s) });
        true
    }

    fn quote(&mut self) -> bool {
        self.escaped_until('"', "unterminated quoted string", Tok::Str)
    }

    /// Scans up to the closing `delim`, skipping backslash escapes; Go rejects a newline or
    /// the end of input before it with `unterminated`.
    fn escaped_until(&mut self, delim: char, unterminated: &str, tok: fn(String) -> Tok) -> bool {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(c) = self.next()
                        && c != '\n'
                    {
                        continue;
                    }
                    self.error(unterminated.into());
                    return false;
                }
                None | Some('\n') => {
                    self.error(unterminated.into());
                    return false;
                }
                Some(c) if c == delim => break,
                _ => {}
            }
        }
        let s = self.input[self.start..self.pos].to_string();
        self.emit(tok(s));
        true
    }

    fn raw_quote(&mut self) -> bool {
        match self.rest().find('`') {
            Some(off) => {
                self.advance_to(self.pos + off + 1);
                let s = self.input[self.start..self.pos].to_string();
                self.emit(Tok::RawStr(s));
                true
            }
            None => {
                self.error("unterminated raw quoted string".into());
                false
            }
        }
    }

    fn char_const(&mut self) -> bool {
        self.escaped_until('\'', "unterminated character constant", Tok::CharConst)
    }

    fn accept(&mut self, valid: &str) -> bool {
        if let Some(c) = self.peek()
            && valid.contains(c)
        {
            self.next();
            return true;
        }
        false
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn number(&mut self) -> bool {
        // `self.start` is at the first character (a leading '.' was consumed already).
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(c) = self.peek()
            && is_alnum(c)
        {
            self.next();
            let s = self.input[self.start..self.pos].to_string();
            self.error(format!("bad number syntax: {}", crate::fmt::quote(&s)));
            return false;
        }
        let s = self.input[self.start..self.pos].to_string();
        self.emit(Tok::Number(s));
        true
    }
}

/// Go's `%#U` of a rune: `U+0041 'A'`.
fn unicode_plus(c: char) -> String {
    format!("U+{:04X} '{}'", c as u32, c)
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

fn trim_right_len(s: &str) -> usize {
    s.len() - s.trim_end_matches(is_space).len()
}

fn trim_left_len(s: &str) -> usize {
    s.len() - s.trim_start_matches(is_space).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).into_iter().map(|i| i.tok).collect()
    }

    #[test]
    fn trims_and_comments() {
        assert_eq!(
            toks("a  {{- .X -}}  b{{/* c */}}d"),
            vec![
                Tok::Text("a".into()),
                Tok::LeftDelim,
                Tok::Field(".X".into()),
                Tok::RightDelim,
                Tok::Text("b".into()),
                Tok::Text("d".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers_and_vars() {
        assert_eq!(
            toks("{{$x := -3 | f 1.5 $}}"),
            vec![
                Tok::LeftDelim,
                Tok::Variable("$x".into()),
                Tok::Space,
                Tok::Declare,
                Tok::Space,
                Tok::Number("-3".into()),
                Tok::Space,
                Tok::Pipe,
                Tok::Space,
                Tok::Identifier("f".into()),
                Tok::Space,
                Tok::Number("1.5".into()),
                Tok::Space,
                Tok::Variable("$".into()),
                Tok::RightDelim,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(toks("{{ .X ").last(), Some(Tok::Error(e)) if e == "unclosed action"));
        assert!(matches!(toks("{{/* x").last(), Some(Tok::Error(e)) if e == "unclosed comment"));
    }
}

//! Parser producing a tree shaped like Go's `text/template/parse` nodes.
//!
//! [`ast`] holds the nodes and [`literals`] Go's string and number syntax.

mod ast;
mod literals;

use std::collections::HashMap;

pub(crate) use ast::{Arg, Branch, Cmd, Node, Number, Pipe};
pub(crate) use literals::parse_go_int;
use literals::{parse_number, unquote};

use crate::lexer::{Item, Kw, Tok, lex};

/// What the parser returns: the named trees found in one text.
pub(crate) type Trees = HashMap<String, Vec<Node>>;

enum Ctl {
    Node(Node),
    End,
    Else,
}

struct Parser<'f> {
    items: Vec<Item>,
    idx: usize,
    line: usize,
    name: String,
    vars: Vec<String>,
    range_depth: usize,
    /// Nesting of control structures, blocks and parenthesized pipelines.
    depth: usize,
    action_line: usize,
    has_func: &'f dyn Fn(&str) -> bool,
    trees: Trees,
}

type PResult<T> = Result<T, String>;

/// Nesting the parser accepts: controls (`if`/`range`/`with`/`block`, and each `else if`)
/// and parenthesized pipelines together. Go caps parentheses at 10000 and leaves controls
/// to its growable stacks; a Rust thread has a fixed stack (2 MiB for tokio's), which 10000
/// levels overflow, so one limit far above real templates covers both.
pub(crate) const MAX_PARSE_DEPTH: usize = 100;

/// Parses `text` as template `name`; every identifier must satisfy `has_func`.
pub(crate) fn parse(name: &str, text: &str, has_func: &dyn Fn(&str) -> bool) -> PResult<Trees> {
    let mut p = Parser {
        items: lex(text),
        idx: 0,
        line: 1,
        name: name.to_string(),
        vars: vec!["$".into()],
        range_depth: 0,
        depth: 0,
        action_line: 0,
        has_func,
        trees: HashMap::new(),
    };
    let root = p.parse_root()?;
    add_tree(&mut p.trees, name, root).map_err(|m| p.err_msg(&m))?;
    Ok(p.trees)
}

fn is_empty_tree(list: &[Node]) -> bool {
    list.iter()
        .all(|n| matches!(n, Node::Text(t) if t.chars().all(char::is_whitespace)))
}

fn add_tree(trees: &mut Trees, name: &str, list: Vec<Node>) -> Result<(), String> {
    match trees.get(name) {
        Some(existing) if !is_empty_tree(existing) => {
            if !is_empty_tree(&list) {
                return Err(format!(
                    "template: multiple definition of template {}",
                    crate::fmt::quote(name)
                ));
            }
            Ok(())
        }
        _ => {
            trees.insert(name.to_string(), list);
            Ok(())
        }
    }
}

impl Parser<'_> {
    fn err_msg(&self, msg: &str) -> String {
        format!("template: {}:{}: {}", self.name, self.line, msg)
    }

    fn err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(self.err_msg(&msg.into()))
    }

    fn next(&mut self) -> Item {
        let it = self.items.get(self.idx).cloned().unwrap_or(Item {
            tok: Tok::Eof,
            pos: 0,
            line: self.line,
        });
        if self.idx < self.items.len() {
            self.idx += 1;
        }
        self.line = it.line;
        it
    }

    fn backup(&mut self) {
        self.idx = self.idx.saturating_sub(1);
    }

    fn peek(&self) -> Item {
        self.items.get(self.idx).cloned().unwrap_or(Item {
            tok: Tok::Eof,
            pos: 0,
            line: self.line,
        })
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let it = self.next();
            if it.tok != Tok::Space {
                return it;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let it = self.next_non_space();
        self.backup();
        it
    }

    fn unexpected<T>(&self, item: &Item, context: &str) -> PResult<T> {
        if let Tok::Error(e) = &item.tok {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != item.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if e.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.err(format!("{e}{extra}"));
        }
        self.err(format!("unexpected {} in {}", item.describe(), context))
    }

    fn expect(&mut self, want: &Tok, context: &str) -> PResult<Item> {
        let it = self.next_non_space();
        if &it.tok != want {
            return self.unexpected(&it, context);
        }
        Ok(it)
    }

    fn parse_root(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().tok != Tok::Eof {
            if self.peek().tok == Tok::LeftDelim {
                let save = self.idx;
                self.next();
                if self.next_non_space().tok == Tok::Keyword(Kw::Define) {
                    self.parse_definition()?;
                    continue;
                }
                self.idx = save;
            }
            match self.text_or_action()? {
                Ctl::Node(n) => root.push(n),
                Ctl::End => return self.err("unexpected {{end}}"),
                Ctl::Else => return self.err("unexpected {{else}}"),
            }
        }
        Ok(root)
    }

    fn parse_template_name(&mut self, it: &Item, context: &str) -> PResult<String> {
        match &it.tok {
            Tok::Str(q) | Tok::RawStr(q) => match unquote(q) {
                Some(s) => Ok(s),
                None => self.err(format!("invalid syntax: {q}")),
            },
            _ => self.unexpected(it, context),
        }
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let context = "define clause";
        let it = self.next_non_space();
        let name = self.parse_template_name(&it, context)?;
        self.expect(&Tok::RightDelim, context)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if !matches!(end, Ctl::End) {
            return self.err("unexpected {{else}} in define clause");
        }
        add_tree(&mut self.trees, &name, list).map_err(|m| self.err_msg(&m))
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Ctl)> {
        let mut list = Vec::new();
        while self.peek_non_space().tok != Tok::Eof {
            match self.text_or_action()? {
                Ctl::Node(n) => list.push(n),
                other => return Ok((list, other)),
            }
        }
        self.err("unexpected EOF")
    }

    fn text_or_action(&mut self) -> PResult<Ctl> {
        let it = self.next_non_space();
        match it.tok {
            Tok::Text(t) => Ok(Ctl::Node(Node::Text(t))),
            Tok::LeftDelim => {
                self.action_line = it.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => self.unexpected(&it, "input"),
        }
    }

    fn action(&mut self) -> PResult<Ctl> {
        let it = self.next_non_space();
        match it.tok {
            Tok::Keyword(Kw::Block) => return self.block_control().map(Ctl::Node),
            Tok::Keyword(Kw::Break) => {
                self.loop_control(&it, "{{break}}")?;
                return Ok(Ctl::Node(Node::Break(it.pos)));
            }
            Tok::Keyword(Kw::Continue) => {
                self.loop_control(&it, "{{continue}}")?;
                return Ok(Ctl::Node(Node::Continue(it.pos)));
            }
            Tok::Keyword(Kw::Else) => {
                // `{{else if ...}}` leaves the `if` for the caller.
                let peek = self.peek_non_space();
                if peek.tok == Tok::Keyword(Kw::If) {
                    return Ok(Ctl::Else);
                }
                self.expect(&Tok::RightDelim, "else")?;
                return Ok(Ctl::Else);
            }
            Tok::Keyword(Kw::End) => {
                self.expect(&Tok::RightDelim, "end")?;
                return Ok(Ctl::End);
            }
            Tok::Keyword(Kw::If) => return self.control("if").map(|b| Ctl::Node(Node::If(b))),
            Tok::Keyword(Kw::Range) => {
                return self.control("range").map(|b| Ctl::Node(Node::Range(b)));
            }
            Tok::Keyword(Kw::With) => {
                return self.control("with").map(|b| Ctl::Node(Node::With(b)));
            }
            Tok::Keyword(Kw::Template) => return self.template_control().map(Ctl::Node),
            _ => {}
        }
        self.backup();
        let pipe = self.pipeline("command", &Tok::RightDelim)?;
        Ok(Ctl::Node(Node::Action(pipe)))
    }

    fn loop_control(&mut self, it: &Item, what: &str) -> PResult<()> {
        let t = self.next_non_space();
        if t.tok != Tok::RightDelim {
            return self.unexpected(&t, what);
        }
        if self.range_depth == 0 {
            self.line = it.line;
            return self.err(format!("{what} outside {{{{range}}}}"));
        }
        Ok(())
    }

    /// Runs `f` one nesting level deeper, within [`MAX_PARSE_DEPTH`] (Go's wording).
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_PARSE_DEPTH {
            return self.err("max expression depth exceeded");
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn control(&mut self, context: &str) -> PResult<Branch> {
        let nvars = self.vars.len();
        let r = self.nested(|p| p.control_inner(context));
        self.vars.truncate(nvars);
        r
    }

    fn control_inner(&mut self, context: &str) -> PResult<Branch> {
        let pipe = self.pipeline(context, &Tok::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let r = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, next) = r?;
        let mut else_list = None;
        match next {
            Ctl::End => {}
            Ctl::Else => {
                if context == "if" && self.peek_non_space().tok == Tok::Keyword(Kw::If) {
                    self.next_non_space();
                    let inner = self.control("if")?;
                    else_list = Some(vec![Node::If(inner)]);
                } else {
                    let (l, n) = self.item_list()?;
                    match n {
                        Ctl::End => {}
                        Ctl::Else => return self.err("expected end; found {{else}}"),
                        Ctl::Node(_) => {}
                    }
                    else_list = Some(l);
                }
            }
            Ctl::Node(_) => {}
        }
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    /// The position and the quoted name that follow `{{template` or `{{block`.
    fn named_control(&mut self, context: &str) -> PResult<(usize, String)> {
        let it = self.next_non_space();
        let name = self.parse_template_name(&it, context)?;
        Ok((it.pos, name))
    }

    fn template_control(&mut self) -> PResult<Node> {
        let context = "template clause";
        let (pos, name) = self.named_control(context)?;
        let mut pipe = None;
        if self.next_non_space().tok != Tok::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, &Tok::RightDelim)?);
        }
        Ok(Node::Template { pos, name, pipe })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let context = "block clause";
        let (pos, name) = self.named_control(context)?;
        let pipe = self.pipeline(context, &Tok::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let r = self.nested(Self::item_list);
        self.vars = saved_vars;
        let (list, end) = r?;
        if !matches!(end, Ctl::End) {
            return self.err("unexpected {{else}} in block clause");
        }
        add_tree(&mut self.trees, &name, list).map_err(|m| self.err_msg(&m))?;
        let pipe = Some(pipe);
        Ok(Node::Template { pos, name, pipe })
    }

    fn pipeline(&mut self, context: &str, end: &Tok) -> PResult<Pipe> {
        let first = self.peek_non_space();
        let mut pipe = Pipe {
            pos: first.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations or assignments.
        loop {
            let v = self.peek_non_space();
            let Tok::Variable(name) = &v.tok else { break };
            let save = self.idx;
            self.next_non_space();
            let next = self.peek_non_space();
            match &next.tok {
                Tok::Assign | Tok::Declare => {
                    pipe.is_assign = next.tok == Tok::Assign;
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name.clone());
                }
                Tok::Char(',') => {
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name.clone());
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().tok {
                            Tok::Variable(_) | Tok::RightDelim | Tok::RightParen => continue,
                            _ => return self.err("range can only initialize variables"),
                        }
                    }
                    return self.err(format!("too many declarations in {context}"));
                }
                _ => self.idx = save,
            }
            break;
        }
        loop {
            let it = self.next_non_space();
            if &it.tok == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match it.tok {
                Tok::Bool(_)
                | Tok::CharConst(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Identifier(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::RawStr(_)
                | Tok::Str(_)
                | Tok::Variable(_)
                | Tok::LeftParen => {
                    self.backup();
                    let c = self.command()?;
                    pipe.cmds.push(c);
                }
                _ => return self.unexpected(&it, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return self.err(format!("missing value for {context}"));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str { .. })
            ) {
                return self.err(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Cmd> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let it = self.next();
            match it.tok {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RightParen => self.backup(),
                Tok::Pipe => {}
                _ => return self.unexpected(&it, "operand"),
            }
            break;
        }
        if args.is_empty() {
            return self.err("empty command");
        }
        Ok(Cmd { pos, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if let Tok::Field(_) = self.peek().tok {
            let chain_pos = self.peek().pos;
            let mut fields = Vec::new();
            while let Tok::Field(f) = self.peek().tok {
                self.next();
                fields.push(f[1..].to_string());
            }
            return match node {
                Arg::Field { mut idents, .. } => {
                    idents.extend(fields);
                    Ok(Some(Arg::Field {
                        pos: chain_pos,
                        idents,
                    }))
                }
                Arg::Variable { mut idents, .. } => {
                    idents.extend(fields);
                    Ok(Some(Arg::Variable {
                        pos: chain_pos,
                        idents,
                    }))
                }
                Arg::Bool(..) | Arg::Str { .. } | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_) => {
                    let s = node.to_string();
                    self.err(format!("unexpected . after term {}", crate::fmt::quote(&s)))
                }
                other => Ok(Some(Arg::Chain {
                    pos: chain_pos,
                    node: Box::new(other),
                    fields,
                })),
            };
        }
        Ok(Some(node))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let it = self.next_non_space();
        let pos = it.pos;
        Ok(Some(match it.tok {
            Tok::Identifier(name) => {
                if !(self.has_func)(&name) {
                    return self.err(format!("function {} not defined", crate::fmt::quote(&name)));
                }
                Arg::Ident { pos, name }
            }
            Tok::Dot => Arg::Dot(pos),
            Tok::Nil => Arg::Nil(pos),
            Tok::Variable(v) => {
                if !self.vars.iter().any(|x| x == &v) {
                    return self.err(format!("undefined variable {}", crate::fmt::quote(&v)));
                }
                Arg::Variable {
                    pos,
                    idents: vec![v],
                }
            }
            Tok::Field(f) => Arg::Field {
                pos,
                idents: vec![f[1..].to_string()],
            },
            Tok::Bool(b) => Arg::Bool(pos, b),
            Tok::CharConst(t) | Tok::Number(t) => {
                let is_char = t.starts_with('\'');
                match parse_number(&t, is_char) {
                    Ok(n) => Arg::Number(pos, Box::new(n)),
                    Err(e) => return self.err(e),
                }
            }
            Tok::LeftParen => {
                let p = self.nested(|p| p.pipeline("parenthesized pipeline", &Tok::RightParen))?;
                Arg::Pipe(Box::new(p))
            }
            Tok::Str(q) | Tok::RawStr(q) => match unquote(&q) {
                Some(text) => Arg::Str {
                    pos,
                    quoted: q,
                    text,
                },
                None => return self.err("invalid syntax"),
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

#[cfg(test)]
mod tests;

//! Execution, mirroring the structure of Go's `text/template/exec.go` so that results and error
//! messages (including the node and position they name) match.
//!
//! [`eval`] evaluates pipelines, commands and fields; [`call`] calls functions.

mod call;
mod eval;

use std::borrow::Cow;

use crate::Error;
use crate::funcs::{self, Args, Imp, Sig, Ty};
use crate::limits::{Budget, FnBudget, LimitExceeded, Limits, weight};
use crate::parse::{Arg, Branch, Cmd, Node, Number, Pipe, Trees};
use crate::value::Value;

/// A value during execution; `None` is Go's invalid `reflect.Value` (prints `<no value>`).
pub(crate) type Ev<'a> = Option<Cow<'a, Value>>;

pub(crate) enum Flow {
    Break,
    Continue,
    Err(Error),
}

type R<T> = Result<T, Flow>;

#[derive(Clone, Copy)]
enum At<'a> {
    None,
    Arg(&'a Arg),
    Cmd(&'a Cmd),
    Pipe(&'a Pipe),
    Node(&'a Node),
    Branch(&'a Branch, &'static str),
}

const MUTATORS: &[&str] = &[
    "set",
    "unset",
    "merge",
    "mergeOverwrite",
    "mustMerge",
    "mustMergeOverwrite",
];

pub(crate) struct State<'a> {
    trees: &'a Trees,
    text: &'a str,
    parse_name: &'a str,
    name: &'a str,
    out: String,
    vars: Vec<(&'a str, Ev<'a>)>,
    at: At<'a>,
    depth: usize,
    budget: Budget,
}

pub(crate) fn execute<'a>(
    trees: &'a Trees,
    text: &'a str,
    name: &'a str,
    data: &'a Value,
    limits: Limits,
) -> Result<String, Error> {
    let dot: Ev<'a> = match data {
        Value::Nil => None,
        v => Some(Cow::Borrowed(v)),
    };
    let mut s = State {
        trees,
        text,
        parse_name: name,
        name,
        out: String::new(),
        vars: vec![("$", dot.clone())],
        at: At::None,
        depth: 0,
        budget: Budget::new(limits),
    };
    let Some(root) = trees.get(name) else {
        return Err(Error::Exec(format!(
            "template: {name}: {} is an incomplete or empty template",
            crate::fmt::quote(name)
        )));
    };
    match s.walk_list(&dot, root) {
        Ok(()) => Ok(s.out),
        Err(Flow::Err(e)) => Err(e),
        Err(Flow::Break | Flow::Continue) => Ok(s.out),
    }
}

fn borrow_sub<'a>(recv: Cow<'a, Value>, f: impl Fn(&Value) -> Option<&Value>) -> Ev<'a> {
    match recv {
        Cow::Borrowed(v) => f(v).map(Cow::Borrowed),
        Cow::Owned(v) => f(&v).map(|x| Cow::Owned(x.clone())),
    }
}

fn is_true(v: &Ev<'_>) -> bool {
    v.as_deref().is_some_and(Value::is_true)
}

impl<'a> State<'a> {
    fn errorf<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(Flow::Err(Error::Exec(self.located(&msg.into()))))
    }

    /// A limit ran out at the current node.
    fn limit<T>(&self, exceeded: LimitExceeded) -> R<T> {
        Err(Flow::Err(Error::Limit {
            exceeded,
            message: self.located(&exceeded.to_string()),
        }))
    }

    fn step(&mut self) -> R<()> {
        match self.budget.steps(1) {
            Ok(()) => Ok(()),
            Err(e) => self.limit(e),
        }
    }

    /// Charges a copy of an owned value (variables keep theirs until the scope ends).
    fn charge_copy(&mut self, v: &Ev<'a>) -> R<()> {
        let Some(Cow::Owned(v)) = v else {
            return Ok(());
        };
        match self.budget.allocate_value(v) {
            Ok(()) => Ok(()),
            Err(e) => self.limit(e),
        }
    }

    /// Appends to the output within `max_output_bytes`.
    fn emit(&mut self, s: &str) -> R<()> {
        let limit = self.budget.limits.max_output_bytes;
        if self.out.len().saturating_add(s.len()) > limit {
            return self.limit(LimitExceeded::Output { limit });
        }
        self.out.push_str(s);
        Ok(())
    }

    /// `msg` prefixed like Go's execution errors: template, line, column, action.
    fn located(&self, msg: &str) -> String {
        match self.at {
            At::None => format!("template: {}: {msg}", self.name),
            at => {
                let (pos, ctx) = match at {
                    At::Arg(a) => (a.pos(), a.to_string()),
                    At::Cmd(c) => (c.pos, c.to_string()),
                    At::Pipe(p) => (p.pos, p.to_string()),
                    At::Node(n) => (node_pos(n), n.to_string()),
                    At::Branch(b, kw) => (b.pos, branch_string(b, kw)),
                    At::None => (0, String::new()),
                };
                let pos = pos.min(self.text.len());
                let before = &self.text[..pos];
                let line = 1 + before.matches('\n').count();
                let col = match before.rfind('\n') {
                    Some(i) => pos - (i + 1),
                    None => pos,
                };
                format!(
                    "template: {}:{}:{}: executing {} at <{}>: {msg}",
                    self.parse_name,
                    line,
                    col,
                    crate::fmt::quote(self.name),
                    ctx
                )
            }
        }
    }

    fn walk_list(&mut self, dot: &Ev<'a>, list: &'a [Node]) -> R<()> {
        for n in list {
            self.walk(dot, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Ev<'a>, node: &'a Node) -> R<()> {
        self.at = At::Node(node);
        self.step()?;
        match node {
            Node::Text(t) => self.emit(t)?,
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = At::Node(node);
                    match v {
                        None => self.emit("<no value>")?,
                        Some(v) => {
                            let text = match &*v {
                                Value::String(s) => Cow::Borrowed(s.as_str()),
                                other => Cow::Owned(crate::fmt::sprint_value(other)),
                            };
                            self.emit(&text)?;
                        }
                    }
                }
            }
            Node::Break(_) => return Err(Flow::Break),
            Node::Continue(_) => return Err(Flow::Continue),
            Node::If(b) => self.walk_if_or_with(dot, b, false)?,
            Node::With(b) => self.walk_if_or_with(dot, b, true)?,
            Node::Range(b) => self.walk_range(dot, b)?,
            Node::Template { name, pipe, .. } => {
                let Some(tree) = self.trees.get(name) else {
                    return self
                        .errorf(format!("template {} not defined", crate::fmt::quote(name)));
                };
                let new_dot = match pipe {
                    Some(p) => self.eval_pipeline(dot, p)?,
                    None => None,
                };
                self.charge_copy(&new_dot)?;
                let saved_vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
                let saved_name = std::mem::replace(&mut self.name, name.as_str());
                let r = self.nested(|s| s.walk_list(&new_dot, tree));
                self.name = saved_name;
                self.vars = saved_vars;
                r?;
            }
        }
        Ok(())
    }

    /// Runs `f` one level deeper: template calls, controls and parenthesized pipelines all
    /// recurse, and together they are bounded so that the stack is.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        let limit = self.budget.limits.max_template_depth;
        if self.depth >= limit {
            return self.limit(LimitExceeded::Depth { limit });
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn walk_if_or_with(&mut self, dot: &Ev<'a>, b: &'a Branch, with: bool) -> R<()> {
        self.nested(|s| s.walk_if_or_with_inner(dot, b, with))
    }

    fn walk_if_or_with_inner(&mut self, dot: &Ev<'a>, b: &'a Branch, with: bool) -> R<()> {
        let mark = self.vars.len();
        let r = (|| {
            let v = self.eval_pipeline(dot, &b.pipe)?;
            if is_true(&v) {
                if with {
                    self.walk_list(&v, &b.list)
                } else {
                    self.walk_list(dot, &b.list)
                }
            } else if let Some(e) = &b.else_list {
                self.walk_list(dot, e)
            } else {
                Ok(())
            }
        })();
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Ev<'a>, b: &'a Branch) -> R<()> {
        self.at = At::Branch(b, "range");
        let outer = self.vars.len();
        let r = self.nested(|s| s.walk_range_inner(dot, b));
        self.vars.truncate(outer);
        r
    }

    fn walk_range_inner(&mut self, dot: &Ev<'a>, b: &'a Branch) -> R<()> {
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let mark = self.vars.len();
        let mut items: Vec<(Value, Ev<'a>)> = Vec::new();
        match val {
            None => {}
            Some(Cow::Borrowed(Value::List(l))) => {
                for (i, e) in l.iter().enumerate() {
                    items.push((Value::from(i), Some(Cow::Borrowed(e))));
                }
            }
            Some(Cow::Borrowed(Value::Map(m))) => {
                for (k, v) in m.iter() {
                    items.push((k.clone(), Some(Cow::Borrowed(v))));
                }
            }
            Some(Cow::Owned(Value::List(l))) => {
                for (i, e) in l.into_iter().enumerate() {
                    items.push((Value::from(i), Some(Cow::Owned(e))));
                }
            }
            Some(Cow::Owned(Value::Map(m))) => {
                for (k, v) in m.iter() {
                    items.push((k.clone(), Some(Cow::Owned(v.clone()))));
                }
            }
            Some(other) => {
                let shown = crate::fmt::sprint_value(&other);
                return self.errorf(format!("range can't iterate over {shown}"));
            }
        }
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                return self.walk_list(dot, e);
            }
            return Ok(());
        }
        let nd = b.pipe.decl.len();
        for (index, elem) in items {
            self.at = At::Branch(b, "range");
            self.step()?;
            if nd > 0 {
                let top = mark - 1;
                if nd > 1 {
                    self.vars[top].1 = elem.clone();
                    self.vars[top - 1].1 = Some(Cow::Owned(index));
                } else {
                    self.vars[top].1 = elem.clone();
                }
            }
            let r = self.walk_list(&elem, &b.list);
            self.vars.truncate(mark);
            match r {
                Ok(()) | Err(Flow::Continue) => {}
                Err(Flow::Break) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn var_value(&self, name: &str) -> R<Ev<'a>> {
        for (n, v) in self.vars.iter().rev() {
            if *n == name {
                return Ok(v.clone());
            }
        }
        self.errorf(format!("undefined variable: {name}"))
    }

    fn set_var(&mut self, name: &str, v: Ev<'a>) -> R<()> {
        for (n, slot) in self.vars.iter_mut().rev() {
            if *n == name {
                *slot = v;
                return Ok(());
            }
        }
        self.errorf(format!("undefined variable: {name}"))
    }
}

fn object_has_method(o: &crate::Object, name: &str) -> bool {
    crate::value::has_method(o, name)
}

fn node_pos(n: &Node) -> usize {
    match n {
        Node::Text(_) => 0,
        Node::Action(p) => p.pos,
        Node::If(b) | Node::Range(b) | Node::With(b) => b.pos,
        Node::Template { pos, .. } | Node::Break(pos) | Node::Continue(pos) => *pos,
    }
}

fn branch_string(b: &Branch, kw: &str) -> String {
    let n = match kw {
        "range" => Node::Range(b.clone()),
        "with" => Node::With(b.clone()),
        _ => Node::If(b.clone()),
    };
    n.to_string()
}

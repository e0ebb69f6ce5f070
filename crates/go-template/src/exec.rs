//! Execution, mirroring the structure of Go's `text/template/exec.go` so that results and error
//! messages (including the node and position they name) match.

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

    fn eval_pipeline(&mut self, dot: &Ev<'a>, pipe: &'a Pipe) -> R<Ev<'a>> {
        self.at = At::Pipe(pipe);
        let mut value: Option<Ev<'a>> = None;
        for cmd in &pipe.cmds {
            let v = self.eval_command(dot, cmd, value.take())?;
            // A nil interface result becomes an invalid value, as in Go.
            value = Some(match v {
                Some(c) if matches!(*c, Value::Nil) => None,
                other => other,
            });
        }
        let value = value.unwrap_or(None);
        for d in &pipe.decl {
            self.charge_copy(&value)?;
            if pipe.is_assign {
                self.set_var(d, value.clone())?;
            } else {
                self.vars.push((d.as_str(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, args: &'a [Arg], final_: &Option<Ev<'a>>) -> R<()> {
        if args.len() > 1 || final_.is_some() {
            return self.errorf(format!(
                "can't give argument to non-function {}",
                args.first().map(|a| a.to_string()).unwrap_or_default()
            ));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Ev<'a>, cmd: &'a Cmd, final_: Option<Ev<'a>>) -> R<Ev<'a>> {
        let Some(first) = cmd.args.first() else {
            return self.errorf("empty command");
        };
        match first {
            Arg::Field { idents, .. } => {
                return self.eval_field_node(dot, first, idents, Some(&cmd.args), final_);
            }
            Arg::Chain { node, fields, .. } => {
                return self.eval_chain(dot, first, node, fields, Some(&cmd.args), final_);
            }
            Arg::Ident { name, .. } => {
                return self.eval_function(dot, first, name, At::Cmd(cmd), Some(&cmd.args), final_);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &final_)?;
                return self.nested(|s| s.eval_pipeline(dot, p));
            }
            Arg::Variable { idents, .. } => {
                return self.eval_variable(dot, first, idents, Some(&cmd.args), final_);
            }
            _ => {}
        }
        self.at = At::Arg(first);
        self.not_a_function(&cmd.args, &final_)?;
        match first {
            Arg::Bool(_, b) => Ok(Some(Cow::Owned(Value::Bool(*b)))),
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => self.errorf("nil is not a command"),
            Arg::Number(_, n) => self.ideal_constant(first, n),
            Arg::Str { text, .. } => Ok(Some(Cow::Owned(Value::String(text.clone())))),
            _ => self.errorf(format!(
                "can't evaluate command {}",
                crate::fmt::quote(&first.to_string())
            )),
        }
    }

    fn ideal_constant(&mut self, node: &'a Arg, n: &Number) -> R<Ev<'a>> {
        self.at = At::Arg(node);
        let t = n.text.to_ascii_lowercase();
        let is_hex = t.trim_start_matches(['+', '-']).starts_with("0x");
        if n.is_float && !is_hex && !n.text.starts_with('\'') && t.contains(['.', 'e', 'p']) {
            return Ok(Some(Cow::Owned(Value::Float(n.float))));
        }
        if n.is_int {
            return Ok(Some(Cow::Owned(Value::Int(n.int))));
        }
        self.errorf(format!("{} overflows int", n.text))
    }

    fn eval_field_node(
        &mut self,
        dot: &Ev<'a>,
        node: &'a Arg,
        idents: &'a [String],
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(node);
        self.eval_field_chain(dot.clone(), idents, args, final_)
    }

    fn eval_chain(
        &mut self,
        dot: &Ev<'a>,
        chain: &'a Arg,
        inner: &'a Arg,
        fields: &'a [String],
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(chain);
        if matches!(inner, Arg::Nil(_)) {
            return self.errorf(format!("indirection through explicit nil in {chain}"));
        }
        let recv = self.eval_arg(dot, Ty::Untyped, inner)?;
        self.eval_field_chain(recv, fields, args, final_)
    }

    fn eval_variable(
        &mut self,
        _dot: &Ev<'a>,
        node: &'a Arg,
        idents: &'a [String],
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(node);
        let Some(first) = idents.first() else {
            return self.errorf("empty variable");
        };
        let value = self.var_value(first)?;
        if idents.len() == 1 {
            if let Some(a) = args {
                self.not_a_function(a, &final_)?;
            } else if final_.is_some() {
                return self.errorf(format!("can't give argument to non-function {node}"));
            }
            return Ok(value);
        }
        self.eval_field_chain(value, &idents[1..], args, final_)
    }

    fn eval_field_chain(
        &mut self,
        mut recv: Ev<'a>,
        idents: &'a [String],
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        let n = idents.len();
        for id in &idents[..n.saturating_sub(1)] {
            recv = self.eval_field(id, None, None, recv)?;
        }
        match idents.last() {
            Some(last) => self.eval_field(last, args, final_, recv),
            None => Ok(recv),
        }
    }

    fn eval_field(
        &mut self,
        name: &str,
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
        recv: Ev<'a>,
    ) -> R<Ev<'a>> {
        let Some(recv) = recv else {
            return Ok(None);
        };
        let has_args = args.is_some_and(|a| a.len() > 1) || final_.is_some();
        let nargs = args.map_or(0, |a| a.len().saturating_sub(1)) + usize::from(final_.is_some());
        match &*recv {
            Value::Nil => self.errorf(format!("nil pointer evaluating interface {{}}.{name}")),
            Value::Object(o) => {
                let is_method = object_has_method(o, name);
                if is_method && has_args {
                    return self.errorf(format!(
                        "wrong number of args for {name}: want 0 got {nargs}"
                    ));
                }
                let found = if name == "String"
                    && o.lookup("String").is_none()
                    && o.string_method().is_some()
                {
                    o.string_method()
                        .map(|s| Cow::Owned(Value::String(s.to_string())))
                } else {
                    borrow_sub(recv.clone(), |v| match v {
                        Value::Object(o) => o.lookup(name),
                        _ => None,
                    })
                };
                match found {
                    Some(v) => {
                        if has_args && !is_method {
                            return self.errorf(format!(
                                "{name} has arguments but cannot be invoked as function"
                            ));
                        }
                        Ok(Some(v))
                    }
                    None => self.errorf(format!(
                        "can't evaluate field {name} in type {}",
                        o.type_name()
                    )),
                }
            }
            Value::Map(m) => {
                let string_keys = match m.iter().next() {
                    Some((k, _)) => matches!(k, Value::String(_)),
                    None => !m.has_explicit_type() || m.type_name().starts_with("map[string]"),
                };
                if !string_keys {
                    return self.errorf(format!(
                        "can't evaluate field {name} in type {}",
                        m.type_name()
                    ));
                }
                if has_args {
                    return self.errorf(format!("{name} is not a method but has arguments"));
                }
                Ok(borrow_sub(recv, |v| match v {
                    Value::Map(m) => m.get_str(name),
                    _ => None,
                }))
            }
            other => self.errorf(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Ev<'a>,
        ident: &'a Arg,
        name: &str,
        node: At<'a>,
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(ident);
        let Some(sig) = funcs::lookup(name) else {
            return self.errorf(format!(
                "{} is not a defined function",
                crate::fmt::quote(name)
            ));
        };
        self.eval_call(dot, sig, node, name, args, final_)
    }

    fn eval_call(
        &mut self,
        dot: &Ev<'a>,
        sig: &Sig,
        node: At<'a>,
        name: &str,
        args: Option<&'a [Arg]>,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        self.step()?;
        let args: &'a [Arg] = match args {
            Some(a) if !a.is_empty() => &a[1..],
            _ => &[],
        };
        let num_in = args.len() + usize::from(final_.is_some());
        let num_fixed = sig.params.len();
        if sig.variadic.is_some() {
            if num_in < num_fixed {
                return self.errorf(format!(
                    "wrong number of args for {name}: want at least {num_fixed} got {}",
                    args.len()
                ));
            }
        } else if num_in != num_fixed {
            return self.errorf(format!(
                "wrong number of args for {name}: want {num_fixed} got {num_in}"
            ));
        }
        if let Imp::AndOr(is_or) = sig.imp {
            let mut v: Ev<'a> = None;
            for a in args {
                v = self.eval_arg(dot, Ty::Refl, a)?;
                if is_true(&v) == is_or {
                    return Ok(v);
                }
            }
            if let Some(f) = final_ {
                v = f;
            }
            return Ok(v);
        }
        let mut argv: Vec<Ev<'a>> = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            let ty = if i < num_fixed {
                sig.params[i]
            } else {
                sig.variadic.unwrap_or(Ty::Any)
            };
            argv.push(self.eval_arg(dot, ty, a)?);
        }
        if let Some(f) = final_ {
            let ty = if sig.variadic.is_some() && num_in > num_fixed {
                sig.variadic.unwrap_or(Ty::Any)
            } else {
                sig.params.get(num_in - 1).copied().unwrap_or(Ty::Any)
            };
            argv.push(self.validate_type(f, ty)?);
        }
        let limits = self.budget.limits;
        // Variadic functions (other than Go's comparison and index builtins) copy their
        // arguments: `list $a $a $a ...` must not multiply a large value.
        if sig.variadic.is_some_and(|t| t != Ty::Refl) {
            let max = limits.max_value_bytes;
            let mut total = 0usize;
            for v in argv.iter().flatten() {
                total = total.saturating_add(weight(v, max));
                if total > max {
                    self.at = node;
                    return self.limit(LimitExceeded::ValueSize { limit: max });
                }
            }
        }
        let fn_budget = FnBudget::new(
            limits.max_value_bytes,
            self.budget.remaining_steps(),
            limits.max_steps,
        );
        let result = match sig.imp {
            Imp::F(f) => f(&Args(argv, &fn_budget)),
            Imp::Unsupported => Err(format!(
                "function {name} is not supported by this implementation"
            )),
            Imp::AndOr(_) => Ok(Value::Nil),
        };
        let charged = match fn_budget.exceeded.get() {
            Some(e) => Err(e),
            None => self.budget.steps(fn_budget.work.get()),
        };
        let charged = charged.and_then(|()| match &result {
            Ok(v) => self.budget.allocate_value(v),
            Err(_) => Ok(()),
        });
        if let Err(e) = charged {
            self.at = node;
            return self.limit(e);
        }
        match result {
            Ok(v) => {
                // Go maps are references: Sprig's set/unset/merge mutate their first argument.
                // Values here are immutable, so write the result back into the variable.
                if MUTATORS.contains(&name)
                    && let Some(Arg::Variable { idents, .. }) = args.first()
                {
                    self.write_back(idents, &v)?;
                }
                Ok(Some(Cow::Owned(v)))
            }
            Err(e) => {
                self.at = node;
                self.errorf(format!("error calling {name}: {e}"))
            }
        }
    }

    fn write_back(&mut self, idents: &[String], v: &Value) -> R<()> {
        let Some((name, path)) = idents.split_first() else {
            return Ok(());
        };
        let Some(cur) = self
            .vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
        else {
            return Ok(());
        };
        if let Err(e) = self.budget.allocate_value(cur) {
            return self.limit(e);
        }
        let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) else {
            return Ok(());
        };
        let Some(cur) = slot.1.as_deref() else {
            return Ok(());
        };
        let mut root = cur.clone();
        let mut target = &mut root;
        for key in path {
            match target {
                Value::Map(m) => match m.get_str_mut(key) {
                    Some(next) => target = next,
                    None => return Ok(()),
                },
                _ => return Ok(()),
            }
        }
        if !matches!(target, Value::Map(_)) {
            return Ok(());
        }
        *target = v.clone();
        slot.1 = Some(Cow::Owned(root));
        Ok(())
    }

    fn eval_arg(&mut self, dot: &Ev<'a>, ty: Ty, n: &'a Arg) -> R<Ev<'a>> {
        self.at = At::Arg(n);
        match n {
            Arg::Dot(_) => return self.validate_type(dot.clone(), ty),
            Arg::Nil(_) => {
                return match ty {
                    Ty::Refl | Ty::Untyped => Ok(None),
                    Ty::Any => Ok(Some(Cow::Owned(Value::Nil))),
                    Ty::List => Ok(Some(Cow::Owned(Value::List(Vec::new())))),
                    Ty::StrMap => Ok(Some(Cow::Owned(Value::Map(crate::Map::new())))),
                    _ => self.errorf(format!("cannot assign nil to {}", ty.go_name())),
                };
            }
            Arg::Field { idents, .. } => {
                let v = self.eval_field_node(dot, n, idents, None, None)?;
                return self.validate_type(v, ty);
            }
            Arg::Variable { idents, .. } => {
                let v = self.eval_variable(dot, n, idents, None, None)?;
                return self.validate_type(v, ty);
            }
            Arg::Pipe(p) => {
                let v = self.nested(|s| s.eval_pipeline(dot, p))?;
                return self.validate_type(v, ty);
            }
            Arg::Ident { name, .. } => {
                let v = self.eval_function(dot, n, name, At::Arg(n), None, None)?;
                return self.validate_type(v, ty);
            }
            Arg::Chain { node, fields, .. } => {
                let v = self.eval_chain(dot, n, node, fields, None, None)?;
                return self.validate_type(v, ty);
            }
            _ => {}
        }
        match ty {
            Ty::Bool => match n {
                Arg::Bool(_, b) => Ok(Some(Cow::Owned(Value::Bool(*b)))),
                _ => self.errorf(format!("expected bool; found {n}")),
            },
            Ty::Float => match n {
                Arg::Number(_, num) if num.is_float => {
                    Ok(Some(Cow::Owned(Value::Float(num.float))))
                }
                _ => self.errorf(format!("expected float; found {n}")),
            },
            Ty::Int => match n {
                Arg::Number(_, num) if num.is_int => Ok(Some(Cow::Owned(Value::Int(num.int)))),
                _ => self.errorf(format!("expected integer; found {n}")),
            },
            Ty::Uint32 => match n {
                Arg::Number(_, num) if num.is_int && num.int >= 0 => {
                    Ok(Some(Cow::Owned(Value::Int(num.int))))
                }
                _ => self.errorf(format!("expected unsigned integer; found {n}")),
            },
            Ty::Str => match n {
                Arg::Str { text, .. } => Ok(Some(Cow::Owned(Value::String(text.clone())))),
                _ => self.errorf(format!("expected string; found {n}")),
            },
            Ty::Any | Ty::Refl | Ty::Untyped => match n {
                Arg::Bool(_, b) => Ok(Some(Cow::Owned(Value::Bool(*b)))),
                Arg::Number(_, num) => self.ideal_constant(n, num),
                Arg::Str { text, .. } => Ok(Some(Cow::Owned(Value::String(text.clone())))),
                _ => self.errorf(format!(
                    "can't handle assignment of {n} to empty interface argument"
                )),
            },
            Ty::List | Ty::StrMap | Ty::Other(_) => {
                self.errorf(format!("can't handle {n} for arg of type {}", ty.go_name()))
            }
        }
    }

    fn validate_type(&mut self, v: Ev<'a>, ty: Ty) -> R<Ev<'a>> {
        let Some(v) = v else {
            return match ty {
                Ty::Untyped | Ty::Refl => Ok(None),
                Ty::Any => Ok(Some(Cow::Owned(Value::Nil))),
                Ty::List => Ok(Some(Cow::Owned(Value::List(Vec::new())))),
                Ty::StrMap => Ok(Some(Cow::Owned(Value::Map(crate::Map::new())))),
                _ => self.errorf(format!("invalid value; expected {}", ty.go_name())),
            };
        };
        let ok = match ty {
            Ty::Untyped | Ty::Any | Ty::Refl => true,
            Ty::Str => matches!(*v, Value::String(_)),
            Ty::Int | Ty::Uint32 => matches!(*v, Value::Int(_)),
            Ty::Float => matches!(*v, Value::Float(_)),
            Ty::Bool => matches!(*v, Value::Bool(_)),
            Ty::List => matches!(*v, Value::List(_)),
            Ty::StrMap => {
                matches!(&*v, Value::Map(m) if m.type_name() == "map[string]interface {}")
            }
            Ty::Other(_) => false,
        };
        if ok {
            return Ok(Some(v));
        }
        let got = match &*v {
            Value::Nil => "interface {}".to_string(),
            other => other.type_name(),
        };
        self.errorf(format!(
            "wrong type for value; expected {}; got {got}",
            ty.go_name()
        ))
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

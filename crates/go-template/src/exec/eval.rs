//! Evaluation of pipelines, commands, variables and field chains (Go's `evalPipeline`,
//! `evalCommand`, `evalField` and friends).

use super::*;

/// A command's arguments after the callee and the piped-in final value, if any.
pub(super) type CallArgs<'a> = (Option<&'a [Arg]>, Option<Ev<'a>>);

impl<'a> State<'a> {
    pub(super) fn eval_pipeline(&mut self, dot: &Ev<'a>, pipe: &'a Pipe) -> R<Ev<'a>> {
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

    pub(super) fn not_a_function(&self, args: &'a [Arg], final_: &Option<Ev<'a>>) -> R<()> {
        if args.len() > 1 || final_.is_some() {
            return self.errorf(format!(
                "can't give argument to non-function {}",
                args.first().map(|a| a.to_string()).unwrap_or_default()
            ));
        }
        Ok(())
    }

    pub(super) fn eval_command(
        &mut self,
        dot: &Ev<'a>,
        cmd: &'a Cmd,
        final_: Option<Ev<'a>>,
    ) -> R<Ev<'a>> {
        let Some(first) = cmd.args.first() else {
            return self.errorf("empty command");
        };
        match first {
            Arg::Field { idents, .. } => {
                return self.eval_field_node(dot, first, idents, (Some(&cmd.args), final_));
            }
            Arg::Chain { node, fields, .. } => {
                return self.eval_chain(dot, first, node, fields, (Some(&cmd.args), final_));
            }
            Arg::Ident { name, .. } => {
                return self.eval_function(dot, first, name, At::Cmd(cmd), Some(&cmd.args), final_);
            }
            Arg::Pipe(p) => {
                self.not_a_function(&cmd.args, &final_)?;
                return self.nested(|s| s.eval_pipeline(dot, p));
            }
            Arg::Variable { idents, .. } => {
                return self.eval_variable(first, idents, (Some(&cmd.args), final_));
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

    pub(super) fn ideal_constant(&mut self, node: &'a Arg, n: &Number) -> R<Ev<'a>> {
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

    pub(super) fn eval_field_node(
        &mut self,
        dot: &Ev<'a>,
        node: &'a Arg,
        idents: &'a [String],
        (args, final_): CallArgs<'a>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(node);
        self.eval_field_chain(dot.clone(), idents, args, final_)
    }

    pub(super) fn eval_chain(
        &mut self,
        dot: &Ev<'a>,
        chain: &'a Arg,
        inner: &'a Arg,
        fields: &'a [String],
        (args, final_): CallArgs<'a>,
    ) -> R<Ev<'a>> {
        self.at = At::Arg(chain);
        if matches!(inner, Arg::Nil(_)) {
            return self.errorf(format!("indirection through explicit nil in {chain}"));
        }
        let recv = self.eval_arg(dot, Ty::Untyped, inner)?;
        self.eval_field_chain(recv, fields, args, final_)
    }

    pub(super) fn eval_variable(
        &mut self,
        node: &'a Arg,
        idents: &'a [String],
        (args, final_): CallArgs<'a>,
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

    pub(super) fn eval_field_chain(
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

    pub(super) fn eval_field(
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
}

//! Function calls: argument counting and evaluation against the Go signature, the call
//! within the limits, write-back of Sprig's mutators, and Go's argument type checks
//! (`evalCall`, `evalArg`, `validateType`).

use super::*;

impl<'a> State<'a> {
    pub(super) fn eval_function(
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

    pub(super) fn eval_call(
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

    pub(super) fn write_back(&mut self, idents: &[String], v: &Value) -> R<()> {
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

    pub(super) fn eval_arg(&mut self, dot: &Ev<'a>, ty: Ty, n: &'a Arg) -> R<Ev<'a>> {
        self.at = At::Arg(n);
        match n {
            Arg::Dot(_) => return self.validate_type(dot.clone(), ty),
            Arg::Nil(_) => {
                return match nil_value(ty) {
                    Some(value) => Ok(value),
                    None => self.errorf(format!("cannot assign nil to {}", ty.go_name())),
                };
            }
            Arg::Field { idents, .. } => {
                let v = self.eval_field_node(dot, n, idents, (None, None))?;
                return self.validate_type(v, ty);
            }
            Arg::Variable { idents, .. } => {
                let v = self.eval_variable(n, idents, (None, None))?;
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
                let v = self.eval_chain(dot, n, node, fields, (None, None))?;
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

    pub(super) fn validate_type(&mut self, v: Ev<'a>, ty: Ty) -> R<Ev<'a>> {
        let Some(v) = v else {
            return match nil_value(ty) {
                Some(value) => Ok(value),
                None => self.errorf(format!("invalid value; expected {}", ty.go_name())),
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

/// What a nil (or missing) value becomes where a `ty` is expected, as Go's reflection has
/// it; `None` when `ty` has no nil (the callers' errors differ).
fn nil_value<'a>(ty: Ty) -> Option<Ev<'a>> {
    match ty {
        Ty::Refl | Ty::Untyped => Some(None),
        Ty::Any => Some(Some(Cow::Owned(Value::Nil))),
        Ty::List => Some(Some(Cow::Owned(Value::List(Vec::new())))),
        Ty::StrMap => Some(Some(Cow::Owned(Value::Map(crate::Map::new())))),
        _ => None,
    }
}

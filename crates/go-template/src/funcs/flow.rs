//! Sprig's defaults, flow control and reflection.

use super::*;

pub(super) const FUNCS: &[Func] = &[
    def(&["default"], ANY1, Some(Any), |a| {
        if a.len() < 2 || empty(a.v(1)) {
            Ok(a.v(0).clone())
        } else {
            Ok(a.v(1).clone())
        }
    }),
    def(&["empty"], ANY1, None, |a| Ok(Value::Bool(empty(a.v(0))))),
    def(&["coalesce"], &[], Some(Any), |a| {
        Ok(a.rest(0).find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
    }),
    def(&["all"], &[], Some(Any), |a| {
        Ok(Value::Bool(a.rest(0).all(|v| !empty(v))))
    }),
    def(&["any"], &[], Some(Any), |a| {
        Ok(Value::Bool(a.rest(0).any(|v| !empty(v))))
    }),
    def(&["ternary"], &[Any, Any, TB], None, |a| {
        Ok(if a.b(2) {
            a.v(0).clone()
        } else {
            a.v(1).clone()
        })
    }),
    def(&["fail"], S1, None, |a| Err(a.s(0).to_string())),
    def(&["typeOf"], ANY1, None, |a| Ok(a.v(0).type_name().into())),
    def(&["typeIs"], &[TS, Any], None, |a| {
        Ok(Value::Bool(a.s(0) == a.v(1).type_name()))
    }),
    def(&["typeIsLike"], &[TS, Any], None, |a| {
        let t = a.v(1).type_name();
        Ok(Value::Bool(a.s(0) == t || format!("*{}", a.s(0)) == t))
    }),
    def(&["kindOf"], ANY1, None, |a| Ok(a.v(0).kind_name().into())),
    def(&["kindIs"], &[TS, Any], None, |a| {
        Ok(Value::Bool(a.s(0) == a.v(1).kind_name()))
    }),
    def(&["deepEqual"], &[Any, Any], None, |a| {
        Ok(Value::Bool(a.v(0) == a.v(1)))
    }),
    def(&["deepCopy", "mustDeepCopy"], ANY1, None, |a| {
        Ok(a.v(0).clone())
    }),
];

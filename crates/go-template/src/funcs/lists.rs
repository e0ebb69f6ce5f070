//! Sprig's list functions.

use super::*;

pub(super) const FUNCS: &[Func] = &[
    def(&["list", "tuple"], &[], Some(Any), |a| {
        Ok(Value::List(a.rest(0).cloned().collect()))
    }),
    def(&["first", "mustFirst"], ANY1, None, |a| {
        let l = as_list(a.v(0), "Cannot find first on type")?;
        Ok(l.first().cloned().unwrap_or(Value::Nil))
    }),
    def(&["last", "mustLast"], ANY1, None, |a| {
        let l = as_list(a.v(0), "Cannot find last on type")?;
        Ok(l.last().cloned().unwrap_or(Value::Nil))
    }),
    def(&["rest", "mustRest"], ANY1, None, |a| {
        let l = as_list(a.v(0), "Cannot find rest on type")?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::List(l[1..].to_vec())
        })
    }),
    def(&["initial", "mustInitial"], ANY1, None, |a| {
        let l = as_list(a.v(0), "Cannot find initial on type")?;
        Ok(if l.is_empty() {
            Value::Nil
        } else {
            Value::List(l[..l.len() - 1].to_vec())
        })
    }),
    def(
        &["append", "push", "mustAppend", "mustPush"],
        &[Any, Any],
        None,
        |a| {
            let mut l = as_list(a.v(0), "Cannot push on type")?.to_vec();
            l.push(a.v(1).clone());
            Ok(Value::List(l))
        },
    ),
    def(&["prepend", "mustPrepend"], &[Any, Any], None, |a| {
        let mut l = vec![a.v(1).clone()];
        l.extend_from_slice(as_list(a.v(0), "Cannot prepend on type")?);
        Ok(Value::List(l))
    }),
    def(&["concat"], &[], Some(Any), |a| {
        let mut out = Vec::new();
        for v in a.rest(0) {
            match v {
                Value::List(l) => out.extend_from_slice(l),
                other => {
                    return Err(format!("Cannot concat type {} as list", other.kind_name()));
                }
            }
        }
        Ok(Value::List(out))
    }),
    def(&["reverse", "mustReverse"], ANY1, None, |a| {
        let mut l = as_list(a.v(0), "Cannot find reverse on type")?.to_vec();
        l.reverse();
        Ok(Value::List(l))
    }),
    def(&["uniq", "mustUniq"], ANY1, None, |a| {
        let mut out: Vec<Value> = Vec::new();
        for v in as_list(a.v(0), "Cannot find uniq on type")? {
            a.work(out.len() as u128)?;
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        Ok(Value::List(out))
    }),
    def(&["without", "mustWithout"], ANY1, Some(Any), |a| {
        let omit: Vec<&Value> = a.rest(1).collect();
        let l = as_list(a.v(0), "Cannot find without on type")?;
        a.work(l.len() as u128 * omit.len() as u128)?;
        Ok(Value::List(
            l.iter().filter(|v| !omit.contains(v)).cloned().collect(),
        ))
    }),
    def(&["has", "mustHas"], &[Any, Any], None, |a| match a.v(1) {
        Value::Nil => Ok(Value::Bool(false)),
        Value::List(l) => Ok(Value::Bool(l.contains(a.v(0)))),
        other => Err(format!("Cannot find has on type {}", other.kind_name())),
    }),
    def(&["compact", "mustCompact"], ANY1, None, |a| {
        let l = as_list(a.v(0), "Cannot compact on type")?;
        Ok(Value::List(
            l.iter().filter(|v| !empty(v)).cloned().collect(),
        ))
    }),
    def(&["chunk", "mustChunk"], &[TI, Any], None, |a| {
        let size = usize::try_from(a.i(0)).unwrap_or(0).max(1);
        let l = as_list(a.v(1), "Cannot chunk type")?;
        Ok(Value::List(
            l.chunks(size).map(|c| Value::List(c.to_vec())).collect(),
        ))
    }),
    // Sprig's `slice` replaces Go's builtin of the same name.
    def(&["slice", "mustSlice"], ANY1, Some(Any), sprig_slice),
];

fn sprig_slice(a: &Args<'_, '_>) -> Result<Value, String> {
    let l = match a.v(0) {
        Value::List(l) => l,
        Value::Nil => {
            return Err("runtime error: invalid memory address or nil pointer dereference".into());
        }
        other => {
            return Err(format!(
                "list should be type of slice or array but {}",
                other.kind_name()
            ));
        }
    };
    let n = l.len();
    if n == 0 {
        return Ok(Value::Nil);
    }
    let start = a.valid(1).map_or(0, to_int64);
    let end = if a.len() < 3 {
        n as i64
    } else {
        to_int64(a.v(2))
    };
    if start < 0 || end < start || end > n as i64 {
        return Err("reflect.Value.Slice: slice index out of bounds".into());
    }
    Ok(Value::List(l[start as usize..end as usize].to_vec()))
}

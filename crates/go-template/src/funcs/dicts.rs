//! Sprig's dict functions.

use std::borrow::Cow;

use super::*;
use crate::value::Map;

pub(super) const FUNCS: &[Func] = &[
    def(&["dict"], &[], Some(Any), |a| {
        let n = a.len();
        let mut pairs = Vec::with_capacity(n.div_ceil(2));
        let mut i = 0;
        while i < n {
            let k = strval(a.v(i));
            let v = if i + 1 < n {
                a.v(i + 1).clone()
            } else {
                Value::String(String::new())
            };
            pairs.push((k, v));
            i += 2;
        }
        Ok(Value::Map(pairs.into_iter().collect()))
    }),
    def(&["get"], &[TM, TS], None, |a| {
        Ok(dict(a.v(0))
            .get_str(a.s(1))
            .cloned()
            .unwrap_or_else(|| "".into()))
    }),
    def(&["set"], &[TM, TS, Any], None, |a| {
        let mut m = dict(a.v(0)).into_owned();
        m.insert(a.s(1), a.v(2).clone());
        Ok(Value::Map(m))
    }),
    def(&["unset"], &[TM, TS], None, |a| {
        let mut m = dict(a.v(0)).into_owned();
        m.remove(&Value::from(a.s(1)));
        Ok(Value::Map(m))
    }),
    def(&["hasKey"], &[TM, TS], None, |a| {
        Ok(Value::Bool(dict(a.v(0)).get_str(a.s(1)).is_some()))
    }),
    def(&["keys"], &[], Some(TM), |a| {
        let mut out = Vec::new();
        for d in a.rest(0) {
            for (k, _) in dict(d).iter() {
                out.push(k.clone());
            }
        }
        Ok(Value::List(out))
    }),
    def(&["values"], &[TM], None, |a| {
        Ok(Value::List(
            dict(a.v(0)).iter().map(|(_, v)| v.clone()).collect(),
        ))
    }),
    def(&["pluck"], &[TS], Some(TM), |a| {
        Ok(Value::List(
            a.rest(1)
                .filter_map(|d| dict(d).get_str(a.s(0)).cloned())
                .collect(),
        ))
    }),
    def(&["pick"], &[TM], Some(TS), |a| {
        let src = dict(a.v(0));
        let mut picked = Vec::new();
        for k in a.rest(1) {
            if let Value::String(k) = k
                && let Some(v) = src.get_str(k)
            {
                picked.push((k.as_str(), v.clone()));
            }
        }
        Ok(Value::Map(picked.into_iter().collect()))
    }),
    def(&["omit"], &[TM], Some(TS), |a| {
        let omit: Vec<&Value> = a.rest(1).collect();
        a.work(dict(a.v(0)).len() as u128 * omit.len() as u128)?;
        Ok(Value::Map(
            dict(a.v(0))
                .iter()
                .filter(|(k, _)| !omit.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
    }),
    def(&["merge", "mustMerge"], &[TM], Some(TM), |a| {
        merge(a, false)
    }),
    def(
        &["mergeOverwrite", "mustMergeOverwrite"],
        &[TM],
        Some(TM),
        |a| merge(a, true),
    ),
    def(&["dig"], &[], Some(Any), |a| {
        let n = a.len();
        if n < 3 {
            return Err("dig needs at least three arguments".into());
        }
        let Value::Map(mut cur) = a.v(n - 1).clone() else {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                a.v(n - 1).type_name()
            ));
        };
        let def = a.v(n - 2).clone();
        for i in 0..n - 2 {
            let Value::String(k) = a.v(i) else {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not string",
                    a.v(i).type_name()
                ));
            };
            match cur.get_str(k).cloned() {
                None => return Ok(def),
                Some(v) if i == n - 3 => return Ok(v),
                Some(Value::Map(m)) => cur = m,
                Some(other) => {
                    return Err(format!(
                        "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                        other.type_name()
                    ));
                }
            }
        }
        Ok(def)
    }),
];

fn dict(v: &Value) -> Cow<'_, Map> {
    match v {
        Value::Map(m) => Cow::Borrowed(m),
        _ => Cow::Owned(Map::new()),
    }
}

fn merge(a: &Args<'_, '_>, overwrite: bool) -> Result<Value, String> {
    fn deep(dst: &mut Map, src: &Map, overwrite: bool, a: &Args<'_, '_>) -> Result<(), String> {
        for (k, v) in src.iter() {
            // An insert shifts the sorted entries after it.
            a.work(1 + dst.len() as u128 / 8)?;
            match (dst.get(k).cloned(), v) {
                (Some(Value::Map(mut d)), Value::Map(s)) => {
                    deep(&mut d, s, overwrite, a)?;
                    dst.insert(k.clone(), Value::Map(d));
                }
                (Some(existing), _) => {
                    if overwrite && !empty(v) || empty(&existing) {
                        dst.insert(k.clone(), v.clone());
                    }
                }
                (None, _) => dst.insert(k.clone(), v.clone()),
            }
        }
        Ok(())
    }
    let mut dst = dict(a.v(0)).into_owned();
    for s in a.rest(1) {
        deep(&mut dst, &dict(s), overwrite, a)?;
    }
    Ok(Value::Map(dst))
}

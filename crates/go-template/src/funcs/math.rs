//! Sprig's conversions and integer math.

use super::*;

pub(super) const FUNCS: &[Func] = &[
    def(&["atoi"], S1, None, |a| {
        Ok(Value::Int(a.s(0).parse::<i64>().unwrap_or(0)))
    }),
    def(&["int", "int64"], ANY1, None, |a| {
        Ok(Value::Int(to_int64(a.v(0))))
    }),
    def(&["float64"], ANY1, None, |a| {
        Ok(Value::Float(to_float64(a.v(0))))
    }),
    def(&["toDecimal"], ANY1, None, |a| {
        Ok(Value::Int(
            i64::from_str_radix(&strval(a.v(0)), 8).unwrap_or(0),
        ))
    }),
    def(&["add"], &[], Some(Any), |a| {
        Ok(Value::Int(
            a.rest(0).map(to_int64).fold(0i64, i64::wrapping_add),
        ))
    }),
    def(&["add1"], ANY1, None, |a| {
        Ok(Value::Int(to_int64(a.v(0)).wrapping_add(1)))
    }),
    def(&["sub"], &[Any, Any], None, |a| {
        Ok(Value::Int(to_int64(a.v(0)).wrapping_sub(to_int64(a.v(1)))))
    }),
    def(&["mul"], ANY1, Some(Any), |a| {
        Ok(Value::Int(
            a.rest(0).map(to_int64).fold(1i64, i64::wrapping_mul),
        ))
    }),
    def(&["div"], &[Any, Any], None, |a| {
        let d = to_int64(a.v(1));
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_int64(a.v(0)).wrapping_div(d)))
    }),
    def(&["mod"], &[Any, Any], None, |a| {
        let d = to_int64(a.v(1));
        if d == 0 {
            return Err("runtime error: integer divide by zero".into());
        }
        Ok(Value::Int(to_int64(a.v(0)).wrapping_rem(d)))
    }),
    def(&["max", "biggest"], ANY1, Some(Any), |a| {
        Ok(Value::Int(a.rest(0).map(to_int64).max().unwrap_or(0)))
    }),
    def(&["min"], ANY1, Some(Any), |a| {
        Ok(Value::Int(a.rest(0).map(to_int64).min().unwrap_or(0)))
    }),
    // Sprig computes these with arbitrary-precision decimals; not reproduced here.
    undef(&["add1f"], ANY1, None),
    undef(&["addf"], &[], Some(Any)),
    undef(&["subf", "mulf", "divf", "maxf", "minf"], ANY1, Some(Any)),
    def(&["ceil"], ANY1, None, |a| {
        Ok(Value::Float(to_float64(a.v(0)).ceil()))
    }),
    def(&["floor"], ANY1, None, |a| {
        Ok(Value::Float(to_float64(a.v(0)).floor()))
    }),
    def(&["round"], &[Any, TI], Some(TF), |a| {
        let on = match a.valid(2) {
            Some(Value::Float(f)) => *f,
            _ => 0.5,
        };
        Ok(Value::Float(round(to_float64(a.v(0)), a.i(1), on)))
    }),
    def(&["until"], &[TI], None, |a| {
        let n = a.i(0);
        let step = if n < 0 { -1 } else { 1 };
        a.size(until_step_count(0, n, step) * NODE)?;
        Ok(Value::list(until_step(0, n, step)))
    }),
    def(&["untilStep"], &[TI, TI, TI], None, |a| {
        a.size(until_step_count(a.i(0), a.i(1), a.i(2)) * NODE)?;
        Ok(Value::list(until_step(a.i(0), a.i(1), a.i(2))))
    }),
    def(&["seq"], &[], Some(TI), |a| {
        seq(
            a,
            &a.rest(0)
                .map(|v| match v {
                    Value::Int(i) => *i,
                    _ => 0,
                })
                .collect::<Vec<_>>(),
        )
    }),
    undef(&["randInt"], &[TI, TI], None),
];

fn round(x: f64, places: i64, on: f64) -> f64 {
    let pow = 10f64.powf(places as f64);
    let digit = pow * x;
    let div = digit.fract();
    let r = if div >= on {
        digit.ceil()
    } else {
        digit.floor()
    };
    r / pow
}

fn until_step(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut v = Vec::new();
    if stop < start {
        if step >= 0 {
            return v;
        }
        let mut i = start;
        while i > stop {
            v.push(i);
            // Go wraps around (and loops until memory runs out); stop instead.
            let Some(next) = i.checked_add(step) else {
                break;
            };
            i = next;
        }
        return v;
    }
    if step <= 0 {
        return v;
    }
    let mut i = start;
    while i < stop {
        v.push(i);
        let Some(next) = i.checked_add(step) else {
            break;
        };
        i = next;
    }
    v
}

/// How many numbers `until_step(start, stop, step)` returns.
fn until_step_count(start: i64, stop: i64, step: i64) -> u128 {
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    let count = if stop < start {
        if step >= 0 {
            return 0;
        }
        (start - stop + (-step) - 1) / -step
    } else {
        if step <= 0 {
            return 0;
        }
        (stop - start + step - 1) / step
    };
    u128::try_from(count).unwrap_or(0)
}

fn seq(a: &Args<'_, '_>, p: &[i64]) -> Result<Value, String> {
    let counted = |start: i64, stop: i64, step: i64| -> Result<Vec<i64>, String> {
        a.size(until_step_count(start, stop, step) * NODE)?;
        Ok(until_step(start, stop, step))
    };
    let join = |v: Vec<i64>| -> Value {
        v.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(" ")
            .into()
    };
    Ok(match p {
        [] => "".into(),
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            join(counted(1, end.wrapping_add(inc), inc)?)
        }
        [start, end] => {
            let inc = if end < start { -1 } else { 1 };
            join(counted(*start, end.wrapping_add(inc), inc)?)
        }
        [start, step, end] => {
            if end < start {
                if *step >= 0 {
                    return Ok("".into());
                }
            } else if *step <= 0 {
                return Ok("".into());
            }
            let sign = if end < start { -1 } else { 1 };
            join(counted(*start, end.wrapping_add(sign), *step)?)
        }
        _ => "".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round(2.345, 2, 0.5), 2.35);
    }
}

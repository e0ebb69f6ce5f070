//! Resource limits for one execution: templates come from users who may not be trusted with the
//! controller's memory or CPU (a `{{ range until 100000000 }}` must not take the process down).
//!
//! Four budgets, all checked before the work or the allocation they guard:
//! - **output**: bytes written to the rendered text;
//! - **values**: the size of any one value a function builds (a `repeat`, an `until` list, a
//!   `printf` padding, a `join`) and of the arguments of a variadic call, plus the total of
//!   everything the template allocates;
//! - **steps**: nodes walked, range iterations, function calls and the inner work of functions
//!   whose cost grows faster than their input (`uniq`, `without`, `dict`);
//! - **time**: wall-clock time, checked in the step counter.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::value::{Map, Object, Value};

/// Limits for one [`crate::Template::execute_with`]. [`Limits::default`] suits commit messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of rendered text.
    pub max_output_bytes: usize,
    /// Size of one value a function builds, and of all arguments of one call.
    pub max_value_bytes: usize,
    /// Total size of the values a template builds or copies during one execution.
    pub max_allocated_bytes: usize,
    /// Evaluation steps: actions and text walked, range iterations, function calls and the
    /// comparisons of quadratic functions.
    pub max_steps: u64,
    /// Wall-clock time of one execution.
    pub max_duration: Duration,
    /// Nested `template` calls (Go allows 100000; each level costs stack here).
    pub max_template_depth: usize,
}

impl Limits {
    /// The defaults. A commit message listing 5,000 changes is about 500 KiB, so 1 MiB of
    /// output never stops a real template; the other budgets are far above what Flux's
    /// documented templates use (a few hundred steps per change, a few KiB of values).
    pub const DEFAULT: Limits = Limits {
        max_output_bytes: 1024 * 1024,
        max_value_bytes: 8 * 1024 * 1024,
        max_allocated_bytes: 64 * 1024 * 1024,
        max_steps: 2_000_000,
        max_duration: Duration::from_secs(5),
        max_template_depth: 100,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which limit stopped an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("output limit exceeded: the rendered text would be longer than {limit} bytes")]
    Output { limit: usize },
    #[error("value size limit exceeded: a value would be larger than {limit} bytes")]
    ValueSize { limit: usize },
    #[error("allocation limit exceeded: the template would allocate more than {limit} bytes")]
    Allocation { limit: usize },
    #[error(
        "step limit exceeded: more than {limit} evaluation steps (actions, range iterations, \
         function calls)"
    )]
    Steps { limit: u64 },
    #[error("time limit exceeded: rendering took longer than {} ms", limit.as_millis())]
    Time { limit: Duration },
    /// Go's wording.
    #[error("exceeded maximum template depth ({limit})")]
    Depth { limit: usize },
    #[error("value nesting limit exceeded: a value would nest deeper than {limit} levels")]
    ValueDepth { limit: usize },
}

impl LimitExceeded {
    /// The limit's name, as in [`Limits`] (e.g. `max_output_bytes`).
    pub fn limit_name(&self) -> &'static str {
        match self {
            LimitExceeded::Output { .. } => "max_output_bytes",
            LimitExceeded::ValueSize { .. } => "max_value_bytes",
            LimitExceeded::Allocation { .. } => "max_allocated_bytes",
            LimitExceeded::Steps { .. } => "max_steps",
            LimitExceeded::Time { .. } => "max_duration",
            LimitExceeded::Depth { .. } => "max_template_depth",
            LimitExceeded::ValueDepth { .. } => "MAX_VALUE_DEPTH",
        }
    }
}

/// The running counters of one execution.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    steps: u64,
    allocated: usize,
    deadline: Instant,
}

/// How many steps pass between clock reads (a read costs about as much as a step).
const CLOCK_EVERY: u64 = 16;

impl Budget {
    pub(crate) fn new(limits: Limits) -> Self {
        let now = Instant::now();
        Budget {
            limits,
            steps: 0,
            allocated: 0,
            deadline: now.checked_add(limits.max_duration).unwrap_or(now),
        }
    }

    /// Counts `n` steps; checks the clock now and then.
    pub(crate) fn steps(&mut self, n: u64) -> Result<(), LimitExceeded> {
        let before = self.steps;
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.limits.max_steps {
            return Err(LimitExceeded::Steps {
                limit: self.limits.max_steps,
            });
        }
        if before / CLOCK_EVERY != self.steps / CLOCK_EVERY && Instant::now() >= self.deadline {
            return Err(LimitExceeded::Time {
                limit: self.limits.max_duration,
            });
        }
        Ok(())
    }

    pub(crate) fn remaining_steps(&self) -> u64 {
        self.limits.max_steps.saturating_sub(self.steps)
    }

    /// Charges `bytes` of newly built or copied values.
    pub(crate) fn allocate(&mut self, bytes: usize) -> Result<(), LimitExceeded> {
        self.allocated = self.allocated.saturating_add(bytes);
        if self.allocated > self.limits.max_allocated_bytes {
            return Err(LimitExceeded::Allocation {
                limit: self.limits.max_allocated_bytes,
            });
        }
        Ok(())
    }

    /// Checks one value's size against `max_value_bytes` and charges it.
    pub(crate) fn allocate_value(&mut self, v: &Value) -> Result<(), LimitExceeded> {
        let max = self.limits.max_value_bytes;
        let size = weight(v, max);
        if size == usize::MAX {
            return Err(LimitExceeded::ValueDepth {
                limit: MAX_VALUE_DEPTH,
            });
        }
        if size > max {
            return Err(LimitExceeded::ValueSize { limit: max });
        }
        self.allocate(size)
    }
}

/// What a function may build, and where it reports a limit it hit (functions return Go's
/// error strings; the limit travels beside them so the caller can report it as a limit).
#[derive(Debug)]
pub(crate) struct FnBudget {
    pub(crate) max_value_bytes: usize,
    /// Steps the function may spend on superlinear work.
    pub(crate) max_work: u64,
    pub(crate) work: Cell<u64>,
    /// For the error message.
    max_steps: u64,
    pub(crate) exceeded: Cell<Option<LimitExceeded>>,
}

impl FnBudget {
    pub(crate) fn new(max_value_bytes: usize, max_work: u64, max_steps: u64) -> Self {
        FnBudget {
            max_value_bytes,
            max_work,
            work: Cell::new(0),
            max_steps,
            exceeded: Cell::new(None),
        }
    }

    /// Checks that a value of `bytes` may be built (before building it).
    pub(crate) fn check_size(&self, bytes: u128) -> Result<(), String> {
        if bytes > self.max_value_bytes as u128 {
            let e = LimitExceeded::ValueSize {
                limit: self.max_value_bytes,
            };
            self.exceeded.set(Some(e));
            return Err(e.to_string());
        }
        Ok(())
    }

    /// Charges `n` steps of work (before doing it).
    pub(crate) fn work(&self, n: u128) -> Result<(), String> {
        let total = u128::from(self.work.get()).saturating_add(n);
        if total > u128::from(self.max_work) {
            let e = LimitExceeded::Steps {
                limit: self.max_steps,
            };
            self.exceeded.set(Some(e));
            return Err(e.to_string());
        }
        self.work.set(u64::try_from(total).unwrap_or(u64::MAX));
        Ok(())
    }
}

/// Values nest at most this deep (deeper ones would overflow the stack when printed, compared
/// or dropped; Flux's data nests 6 levels, `fromJson` at most 128).
pub const MAX_VALUE_DEPTH: usize = 200;

/// The approximate bytes `v` occupies (each node plus its heap data), counted until it passes
/// `cap`, or `usize::MAX` when it nests deeper than [`MAX_VALUE_DEPTH`].
pub(crate) fn weight(v: &Value, cap: usize) -> usize {
    let mut total = 0usize;
    if add_weight(v, cap, 0, &mut total) {
        total
    } else {
        usize::MAX
    }
}

/// False when `v` nests too deep.
fn add_weight(v: &Value, cap: usize, depth: usize, total: &mut usize) -> bool {
    if depth > MAX_VALUE_DEPTH {
        return false;
    }
    *total = total.saturating_add(size_of::<Value>());
    match v {
        Value::String(s) => *total = total.saturating_add(s.len()),
        Value::List(l) => {
            for x in l {
                if *total > cap {
                    break;
                }
                if !add_weight(x, cap, depth + 1, total) {
                    return false;
                }
            }
        }
        Value::Map(m) => return map_weight(m, cap, depth, total),
        Value::Object(o) => return object_weight(o, cap, depth, total),
        Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
    }
    true
}

fn map_weight(m: &Map, cap: usize, depth: usize, total: &mut usize) -> bool {
    *total = total.saturating_add(m.type_name().len());
    for (k, x) in m.iter() {
        if *total > cap {
            break;
        }
        if !add_weight(k, cap, depth + 1, total) || !add_weight(x, cap, depth + 1, total) {
            return false;
        }
    }
    true
}

fn object_weight(o: &Object, cap: usize, depth: usize, total: &mut usize) -> bool {
    *total = total
        .saturating_add(o.type_name().len())
        .saturating_add(o.display_string().map_or(0, str::len));
    for f in o.raw_fields() {
        if *total > cap {
            break;
        }
        *total = total.saturating_add(f.name.len());
        if !add_weight(&f.value, cap, depth + 1, total) {
            return false;
        }
    }
    for (name, value) in o.raw_methods() {
        if *total > cap {
            break;
        }
        *total = total.saturating_add(name.len());
        if !add_weight(value, cap, depth + 1, total) {
            return false;
        }
    }
    true
}

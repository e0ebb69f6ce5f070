//! Per-object metric families kept compactly and written straight to the Prometheus text
//! format, in the exact form `prometheus::TextEncoder` writes (label pairs sorted by name,
//! `le` last, values formatted as Rust formats an `f64`).
//!
//! Why not the `prometheus` crate's vectors for per-object series: each of its series owns
//! a copy of the family's description (name, help text, label names) and protobuf label
//! pairs, about a kilobyte, and `/metrics` copies every series into protobuf messages again
//! before encoding. With 5,000 ImageRepositories and their policies that was over 100 MiB
//! of the reflector's memory; here a series is its label values and a number (or a
//! histogram's counts), and encoding allocates only the text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A family's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    Counter,
    Gauge,
    Histogram,
}

impl FamilyType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Label values in the family's declared label order, in one allocation: joined by
/// [`SEPARATOR`] (a value holding one has it replaced; no Kubernetes name, namespace, image
/// or tag can).
type Labels = Box<str>;

const SEPARATOR: char = '\u{0}';

fn label_values(key: &str) -> impl Iterator<Item = &str> {
    key.split(SEPARATOR)
}

#[derive(Debug, Clone, PartialEq)]
enum Sample {
    Value(f64),
    /// Cumulative counts per bucket bound, the sum and the count.
    Histogram {
        buckets: Box<[u64]>,
        sum: f64,
        count: u64,
    },
}

/// One metric family of per-object series.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    type_: FamilyType,
    labels: &'static [&'static str],
    /// Label positions in name order (the text encoder sorts label pairs by name).
    order: Box<[usize]>,
    bounds: Box<[f64]>,
    series: Mutex<BTreeMap<Labels, Sample>>,
}

impl Family {
    fn new(
        name: &'static str,
        help: &'static str,
        type_: FamilyType,
        labels: &'static [&'static str],
        bounds: Vec<f64>,
    ) -> Self {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by_key(|i| labels[*i]);
        Self {
            name,
            help,
            type_,
            labels,
            order: order.into(),
            bounds: bounds.into(),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self::new(name, help, FamilyType::Counter, labels, Vec::new())
    }

    pub fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self::new(name, help, FamilyType::Gauge, labels, Vec::new())
    }

    /// A histogram with these bucket upper bounds (`+Inf` is implied).
    pub fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: Vec<f64>,
    ) -> Self {
        Self::new(name, help, FamilyType::Histogram, labels, bounds)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Labels, Sample>> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key for `values`; `None` (and nothing recorded) when the count of values does
    /// not match the family's labels, which is a programming error.
    fn key(&self, values: &[&str]) -> Option<Labels> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        if values.len() != self.labels.len() {
            return None;
        }
        let mut key = String::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                key.push(SEPARATOR);
            }
            key.extend(
                value
                    .chars()
                    .map(|c| if c == SEPARATOR { '\u{fffd}' } else { c }),
            );
        }
        Some(key.into())
    }

    /// Sets a counter's or gauge's series.
    pub fn set(&self, values: &[&str], value: f64) {
        if let Some(key) = self.key(values) {
            self.lock().insert(key, Sample::Value(value));
        }
    }

    /// Adds to a counter's or gauge's series (created at 0).
    pub fn add(&self, values: &[&str], delta: f64) {
        if let Some(key) = self.key(values) {
            let mut series = self.lock();
            let sample = series.entry(key).or_insert(Sample::Value(0.0));
            if let Sample::Value(v) = sample {
                *v += delta;
            }
        }
    }

    /// Observes `value` in a histogram's series.
    pub fn observe(&self, values: &[&str], value: f64) {
        let Some(key) = self.key(values) else { return };
        let mut series = self.lock();
        let sample = series.entry(key).or_insert_with(|| Sample::Histogram {
            buckets: vec![0; self.bounds.len()].into(),
            sum: 0.0,
            count: 0,
        });
        if let Sample::Histogram {
            buckets,
            sum,
            count,
        } = sample
        {
            for (bound, bucket) in self.bounds.iter().zip(buckets.iter_mut()) {
                if value <= *bound {
                    *bucket += 1;
                }
            }
            *sum += value;
            *count += 1;
        }
    }

    /// A counter's or gauge's value (a histogram's count).
    pub fn get(&self, values: &[&str]) -> Option<f64> {
        let key = self.key(values)?;
        self.lock().get(&key).map(|sample| match sample {
            Sample::Value(v) => *v,
            Sample::Histogram { count, .. } => *count as f64,
        })
    }

    pub fn remove(&self, values: &[&str]) {
        if let Some(key) = self.key(values) {
            self.lock().remove(&key);
        }
    }

    /// Removes the series whose labels include all of `wanted` (`(label, value)`).
    pub fn remove_matching(&self, wanted: &[(&str, &str)]) {
        let positions: Vec<(usize, &str)> = wanted
            .iter()
            .filter_map(|(label, value)| {
                Some((self.labels.iter().position(|l| l == label)?, *value))
            })
            .collect();
        if positions.len() != wanted.len() {
            return; // A label this family lacks matches nothing.
        }
        self.lock().retain(|key, _| {
            let values: Vec<&str> = label_values(key).collect();
            !positions.iter().all(|(i, v)| values.get(*i) == Some(v))
        });
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the family in the text format (nothing when it has no series, as the
    /// `prometheus` registry leaves empty families out).
    pub fn encode(&self, out: &mut String) {
        let series = self.lock();
        if series.is_empty() {
            return;
        }
        write_header(out, self.name, self.help, self.type_);
        for (key, sample) in series.iter() {
            match sample {
                Sample::Value(v) => {
                    write_sample(out, self.name, "", &self.pairs(key), None, *v);
                }
                Sample::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let pairs = self.pairs(key);
                    let mut bound_text = String::new();
                    for (bound, bucket) in self.bounds.iter().zip(buckets.iter()) {
                        bound_text.clear();
                        let _ = write!(bound_text, "{bound}");
                        let le = Some(("le", bound_text.as_str()));
                        write_sample(out, self.name, "_bucket", &pairs, le, *bucket as f64);
                    }
                    let inf = Some(("le", "+Inf"));
                    write_sample(out, self.name, "_bucket", &pairs, inf, *count as f64);
                    write_sample(out, self.name, "_sum", &pairs, None, *sum);
                    write_sample(out, self.name, "_count", &pairs, None, *count as f64);
                }
            }
        }
    }

    fn pairs<'a>(&self, key: &'a str) -> Vec<(&'static str, &'a str)> {
        let values: Vec<&str> = label_values(key).collect();
        self.order
            .iter()
            .map(|i| (self.labels[*i], values.get(*i).copied().unwrap_or_default()))
            .collect()
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn write_header(out: &mut String, name: &str, help: &str, type_: FamilyType) {
    if !help.is_empty() {
        let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
    }
    let _ = writeln!(out, "# TYPE {name} {}", type_.as_str());
}

/// One sample line: `pairs` in the order given (sorted by name), then `extra` (`le`).
pub fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    pairs: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut separator = '{';
    for (label, value) in pairs.iter().chain(extra.iter()) {
        out.push(separator);
        let _ = write!(out, "{label}=\"{}\"", escape(value, true));
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// The text format's escaping: `\` and newline, and `"` in label values.
fn escape(text: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    let needs = text.contains(['\\', '\n']) || (quotes && text.contains('"'));
    if !needs {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus::Encoder as _;

    /// The same series through the `prometheus` crate and through [`Family`] give the
    /// same text, byte for byte.
    #[test]
    fn text_matches_the_prometheus_encoder() {
        let registry = prometheus::Registry::new();
        let labels: &'static [&'static str] = &["zone", "app", "kind"];
        let gauge = prometheus::GaugeVec::new(
            prometheus::Opts::new("g", "A gauge \\ with\nescapes."),
            labels,
        )
        .unwrap();
        let counter =
            prometheus::IntCounterVec::new(prometheus::Opts::new("c_total", "Counts."), labels)
                .unwrap();
        let histogram = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new("h_seconds", "Times.").buckets(vec![0.01, 0.5, 2.0]),
            labels,
        )
        .unwrap();
        registry.register(Box::new(gauge.clone())).unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        registry.register(Box::new(histogram.clone())).unwrap();
        let (g, c, h) = (
            Family::gauge("g", "A gauge \\ with\nescapes.", labels),
            Family::counter("c_total", "Counts.", labels),
            Family::histogram("h_seconds", "Times.", labels, vec![0.01, 0.5, 2.0]),
        );
        let values = ["eu \"1\"", "a\\b\nc", "K"];
        gauge.with_label_values(&values).set(1.5);
        g.set(&values, 1.5);
        counter.with_label_values(&values).inc_by(3);
        c.add(&values, 1.0);
        c.add(&values, 2.0);
        for v in [0.005, 0.5, 1.0, 30.0] {
            histogram.with_label_values(&values).observe(v);
            h.observe(&values, v);
        }
        let mut expected = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut expected)
            .unwrap();
        let mut text = String::new();
        for family in [&c, &g, &h] {
            family.encode(&mut text);
        }
        assert_eq!(text, String::from_utf8(expected).unwrap());
        assert_eq!(h.get(&values), Some(4.0));
    }

    #[test]
    fn removes_by_partial_labels_and_skips_empty_families() {
        let f = Family::gauge("g", "G.", &["namespace", "name", "result"]);
        f.set(&["ns", "a", "ok"], 1.0);
        f.set(&["ns", "a", "failed"], 1.0);
        f.set(&["ns", "b", "ok"], 1.0);
        f.remove_matching(&[("namespace", "ns"), ("name", "a")]);
        assert_eq!(f.len(), 1);
        f.remove_matching(&[("missing", "x")]);
        assert_eq!(f.len(), 1);
        f.remove(&["ns", "b", "ok"]);
        // The key's separator inside a value is replaced, not taken for a label boundary.
        f.set(&["ns", "a\u{0}b", "ok"], 1.0);
        let mut text = String::new();
        f.encode(&mut text);
        assert!(
            text.contains("name=\"a\u{fffd}b\",namespace=\"ns\",result=\"ok\""),
            "{text}"
        );
        f.clear();
        let mut text = String::new();
        f.encode(&mut text);
        assert_eq!(text, "");
    }
}

//! Property: for random YAML documents with markers, the output differs from the input only
//! inside the marked scalars, and parses to the same structure except those values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use api_types::ImageRef;
use image_automation::setters::{Setters, rewrite};
use proptest::prelude::*;
use serde_json::{Map, Value};

const PLAIN: &[&str] = &[
    "app:1.0",
    "v1",
    "hello",
    "ghcr.io/x/y:1.2.3",
    "abc-def",
    "x_y",
    "a b",
];
const QUOTED: &[&str] = &[
    "1.10",
    "true",
    "",
    "a: b",
    "it's",
    "# no",
    "2024-06-27",
    "v1",
    "~",
    "x\\y",
];
const NAMES: &[&str] = &["reg.io/app", "ghcr.io/team/api", "nginx"];
const TAGS: &[&str] = &[
    "1.10",
    "v2.0.0",
    "2024-06-27",
    "yes",
    "0x1F",
    "1_000",
    "1.0",
    "v1",
];
const FIELDS: &[&str] = &["", ":tag", ":name", ":digest"];

#[derive(Clone, Debug)]
struct Leaf {
    style: u8,
    value: usize,
    /// (policy 0..=3, where 3 does not exist; field 0..4)
    marker: Option<(usize, usize)>,
    head: bool,
    comment: bool,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(Leaf),
    Map(Vec<(Fmt, Node)>, bool),
    Seq(Vec<(Fmt, Node)>, bool),
}

/// Formatting around one entry.
#[derive(Clone, Debug)]
struct Fmt {
    blank_before: bool,
    comment_before: bool,
}

#[derive(Clone, Debug)]
struct Doc {
    root: Node,
    crlf: bool,
    leading_separator: bool,
    indent: usize,
    wide: bool,
}

fn leaf() -> impl Strategy<Value = Node> {
    (
        0u8..3,
        0usize..16,
        prop::option::of((0usize..4, 0usize..4)),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(style, value, marker, head, comment)| {
            Node::Leaf(Leaf {
                style,
                value,
                marker,
                head,
                comment,
            })
        })
}

fn fmt() -> impl Strategy<Value = Fmt> {
    (prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(
        |(blank_before, comment_before)| Fmt {
            blank_before,
            comment_before,
        },
    )
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            (
                prop::collection::vec((fmt(), inner.clone()), 1..5),
                prop::bool::weighted(0.2)
            )
                .prop_map(|(v, flow)| Node::Map(v, flow)),
            (
                prop::collection::vec((fmt(), inner), 1..5),
                prop::bool::weighted(0.2)
            )
                .prop_map(|(v, flow)| Node::Seq(v, flow)),
        ]
    })
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        prop_oneof![
            4 => prop::collection::vec((fmt(), node()), 1..6).prop_map(|v| Node::Map(v, false)),
            1 => prop::collection::vec((fmt(), node()), 1..4).prop_map(|v| Node::Seq(v, false)),
        ],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(2usize), Just(4usize)],
        any::<bool>(),
    )
        .prop_map(|(root, crlf, leading_separator, indent, wide)| Doc {
            root,
            crlf,
            leading_separator,
            indent,
            wide,
        })
}

fn policies() -> Vec<ImageRef> {
    vec![
        ImageRef {
            name: NAMES[0].into(),
            tag: TAGS[0].into(),
            digest: None,
        },
        ImageRef {
            name: NAMES[1].into(),
            tag: TAGS[2].into(),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
        },
        ImageRef {
            name: NAMES[2].into(),
            tag: TAGS[3].into(),
            digest: None,
        },
    ]
}

fn setters() -> Setters {
    let mut s = Setters::new("ns");
    for (i, p) in policies().into_iter().enumerate() {
        s.add(&format!("p{i}"), Some(p)).unwrap();
    }
    s
}

impl Leaf {
    fn text(&self) -> &'static str {
        if self.style == 0 {
            PLAIN[self.value % PLAIN.len()]
        } else {
            QUOTED[self.value % QUOTED.len()]
        }
    }

    fn source(&self) -> String {
        let v = self.text();
        match self.style {
            0 => v.to_owned(),
            1 => format!("'{}'", v.replace('\'', "''")),
            _ => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    fn marker_comment(&self) -> Option<String> {
        self.marker
            .map(|(p, f)| format!("# {{\"$imagepolicy\": \"ns:p{p}{}\"}}", FIELDS[f]))
    }

    /// The value after the update.
    fn updated(&self) -> String {
        let Some((p, f)) = self.marker else {
            return self.text().to_owned();
        };
        let Some(image) = policies().get(p).cloned() else {
            return self.text().to_owned();
        };
        match f {
            0 => image.to_string(),
            1 => image.tag,
            2 => image.name,
            _ => image.digest.unwrap_or_default(),
        }
    }
}

/// Drops what the generator cannot express: markers inside flow collections except on the last
/// leaf, head markers outside block sequences, comments on head-marked items.
fn normalise(node: &mut Node, in_block_seq: bool) {
    let is_seq = matches!(node, Node::Seq(..));
    match node {
        Node::Leaf(l) => {
            if !in_block_seq || l.marker.is_none() {
                l.head = false;
            }
            if l.head {
                l.comment = false;
            }
        }
        Node::Map(entries, flow) | Node::Seq(entries, flow) => {
            if *flow && !entries.iter().all(|(_, n)| matches!(n, Node::Leaf(_))) {
                *flow = false;
            }
            let flow = *flow;
            let n = entries.len();
            for (i, (fmt, child)) in entries.iter_mut().enumerate() {
                if flow {
                    fmt.blank_before = false;
                    fmt.comment_before = false;
                    if let Node::Leaf(l) = child
                        && i + 1 != n
                    {
                        l.marker = None;
                        l.comment = false;
                    }
                }
                normalise(child, !flow && is_seq);
                // A comment line right above a head marker would make a two-line head comment.
                if let Node::Leaf(l) = child
                    && l.head
                {
                    fmt.comment_before = false;
                }
            }
        }
    }
}

struct Renderer {
    out: String,
    nl: &'static str,
    step: usize,
    wide: bool,
    /// Byte spans of scalars expected to change.
    changed: Vec<(usize, usize)>,
    changes: usize,
}

impl Renderer {
    fn scalar(&mut self, l: &Leaf) {
        let start = self.out.len();
        self.out.push_str(&l.source());
        if l.updated() != l.text() {
            self.changed.push((start, self.out.len()));
            self.changes += 1;
        }
    }

    fn line_end(&mut self, l: Option<&Leaf>) {
        if let Some(l) = l.filter(|l| !l.head) {
            if let Some(m) = l.marker_comment() {
                self.out.push(' ');
                self.out.push_str(&m);
            } else if l.comment {
                self.out.push_str(" # note");
            }
        }
        self.out.push_str(self.nl);
    }

    fn before(&mut self, fmt: &Fmt, ind: usize) {
        if fmt.blank_before {
            self.out.push_str(self.nl);
        }
        if fmt.comment_before {
            self.out.push_str(&" ".repeat(ind));
            self.out.push_str("# note");
            self.out.push_str(self.nl);
        }
    }

    fn flow(&mut self, node: &Node) -> Option<Leaf> {
        let (entries, open, close, map) = match node {
            Node::Map(e, _) => (e, '{', '}', true),
            Node::Seq(e, _) => (e, '[', ']', false),
            Node::Leaf(_) => return None,
        };
        self.out.push(open);
        let mut last = None;
        for (i, (_, child)) in entries.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            if map {
                self.out.push_str(&format!("k{i}: "));
            }
            if let Node::Leaf(l) = child {
                self.scalar(l);
                last = Some(l.clone());
            }
        }
        self.out.push(close);
        last
    }

    fn map(&mut self, entries: &[(Fmt, Node)], ind: usize, first_inline: bool) {
        for (i, (fmt, child)) in entries.iter().enumerate() {
            let inline = first_inline && i == 0;
            if !inline {
                self.before(fmt, ind);
                self.out.push_str(&" ".repeat(ind));
            }
            self.out.push_str(&format!("k{i}:"));
            match child {
                Node::Leaf(l) => {
                    self.out.push(' ');
                    self.scalar(l);
                    self.line_end(Some(l));
                }
                Node::Map(_, true) | Node::Seq(_, true) => {
                    self.out.push(' ');
                    let last = self.flow(child);
                    self.line_end(last.as_ref());
                }
                Node::Map(e, false) => {
                    self.out.push_str(self.nl);
                    self.map(e, ind + self.step, false);
                }
                Node::Seq(e, false) => {
                    self.out.push_str(self.nl);
                    let seq_ind = if self.wide { ind + self.step } else { ind };
                    self.seq(e, seq_ind);
                }
            }
        }
    }

    fn seq(&mut self, items: &[(Fmt, Node)], ind: usize) {
        for (fmt, child) in items {
            self.before(fmt, ind);
            if let Node::Leaf(l) = child
                && l.head
                && let Some(m) = l.marker_comment()
            {
                self.out.push_str(&" ".repeat(ind));
                self.out.push_str(&m);
                self.out.push_str(self.nl);
            }
            self.out.push_str(&" ".repeat(ind));
            self.out.push('-');
            match child {
                Node::Leaf(l) => {
                    self.out.push(' ');
                    self.scalar(l);
                    self.line_end(Some(l));
                }
                Node::Map(_, true) | Node::Seq(_, true) => {
                    self.out.push(' ');
                    let last = self.flow(child);
                    self.line_end(last.as_ref());
                }
                Node::Map(e, false) => {
                    self.out.push(' ');
                    self.map(e, ind + 2, true);
                }
                Node::Seq(e, false) => {
                    self.out.push_str(self.nl);
                    self.seq(e, ind + 2);
                }
            }
        }
    }
}

fn expected(node: &Node, updated: bool) -> Value {
    match node {
        Node::Leaf(l) => Value::String(if updated {
            l.updated()
        } else {
            l.text().to_owned()
        }),
        Node::Map(e, _) => Value::Object(
            e.iter()
                .enumerate()
                .map(|(i, (_, n))| (format!("k{i}"), expected(n, updated)))
                .collect::<Map<_, _>>(),
        ),
        Node::Seq(e, _) => Value::Array(e.iter().map(|(_, n)| expected(n, updated)).collect()),
    }
}

fn render(docs: &[Doc]) -> Renderer {
    let mut r = Renderer {
        out: String::new(),
        nl: if docs[0].crlf { "\r\n" } else { "\n" },
        step: docs[0].indent,
        wide: docs[0].wide,
        changed: Vec::new(),
        changes: 0,
    };
    for (i, d) in docs.iter().enumerate() {
        r.step = d.indent;
        r.wide = d.wide;
        if i > 0 || d.leading_separator {
            r.out.push_str("---");
            r.out.push_str(r.nl);
        }
        match &d.root {
            Node::Map(e, _) => r.map(e, 0, false),
            Node::Seq(e, _) => r.seq(e, 0),
            Node::Leaf(_) => {}
        }
    }
    r
}

static CHANGED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn only_marked_scalars_change(mut docs in prop::collection::vec(doc(), 1..3)) {
        for d in &mut docs {
            normalise(&mut d.root, false);
        }
        let r = render(&docs);
        let input = r.out.clone();

        // The generator is right about the input's structure.
        let before: Vec<Value> = serde_saphyr::from_multiple(&input)
            .map_err(|e| TestCaseError::fail(format!("generated YAML invalid: {e}\n{input}")))?;
        let want_before: Vec<Value> = docs.iter().map(|d| expected(&d.root, false)).collect();
        prop_assert_eq!(&before, &want_before, "generator mismatch:\n{}", input);

        let result = rewrite("gen.yaml", &input, &setters());
        let output = result.output.clone().unwrap_or_else(|| input.clone());
        let changes: usize = result.objects.iter().map(|o| o.changes.len()).sum();
        prop_assert_eq!(changes, r.changes, "input:\n{}\noutput:\n{}\n{:?}", input, output, result.unmatched);

        // Outside the changed spans, the bytes are identical and in order.
        let mut at_in = 0;
        let mut at_out = 0;
        for (start, end) in &r.changed {
            let segment = &input[at_in..*start];
            prop_assert!(output[at_out..].starts_with(segment), "prefix differs:\n{}\n---\n{}", input, output);
            at_out += segment.len();
            // The replacement runs up to the next unchanged segment.
            let next_end = r.changed.iter().find(|(s, _)| s > start).map_or(input.len(), |(s, _)| *s);
            let next_segment = &input[*end..next_end];
            let found = if next_segment.is_empty() {
                output.len() - at_out
            } else {
                output[at_out..].find(next_segment).unwrap()
            };
            prop_assert!(!output[at_out..at_out + found].contains('\n'), "replacement spans lines");
            at_out += found;
            at_in = *end;
        }
        prop_assert_eq!(&output[at_out..], &input[at_in..]);

        // And the output means the same, except for the updated values.
        let after: Vec<Value> = serde_saphyr::from_multiple(&output)
            .map_err(|e| TestCaseError::fail(format!("output YAML invalid: {e}\n{output}")))?;
        let want_after: Vec<Value> = docs.iter().map(|d| expected(&d.root, true)).collect();
        prop_assert_eq!(&after, &want_after, "output:\n{}", output);
        CHANGED.fetch_add(r.changes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The generator must actually produce changes, or the property above proves nothing.
#[test]
fn generator_produces_changes() {
    only_marked_scalars_change();
    assert!(CHANGED.load(std::sync::atomic::Ordering::Relaxed) > 100);
}

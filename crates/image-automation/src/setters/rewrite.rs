//! The pure part of the setters: one file's text in, edits out.
//!
//! We walk granit-parser's event stream, which carries byte spans for every node and comment,
//! and attach comments to scalars the way yaml.v3 does for Flux: the comment at the end of a
//! scalar value's line (its line comment) or, only when there is no line comment and the scalar
//! is a sequence item, the comment line directly above it (its head comment). Mapping keys are
//! never rewritten. Each edit replaces exactly the bytes of one scalar.

use std::borrow::Cow;

use granit_parser::{Event, Parser, Placement, ScalarStyle, Span};

use super::marker::{self, Parsed, TOKEN};
use super::scalar::{self, Style};
use super::{Change, ObjectChanges, ObjectId, Setters, Unmatched, UnmatchedReason};

/// The outcome for one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRewrite {
    /// The new text, when at least one value changed.
    pub output: Option<String>,
    /// Changes grouped by object, objects in order of their first change.
    pub objects: Vec<ObjectChanges>,
    /// Markers not applied, in file order.
    pub unmatched: Vec<Unmatched>,
}

/// Applies `setters` to the YAML `text` of the file at `path` (used only in reports).
pub fn rewrite(path: &str, text: &str, setters: &Setters) -> FileRewrite {
    let mut walker = Walker::new(path, text, setters);
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next() {
            None => break,
            Some(Ok((event, span))) => {
                if matches!(event, Event::StreamEnd) {
                    walker.finish_document();
                    break;
                }
                walker.event(event, span);
            }
            Some(Err(err)) => {
                let marker = err.marker();
                return FileRewrite {
                    output: None,
                    objects: Vec::new(),
                    unmatched: vec![Unmatched {
                        path: path.to_owned(),
                        line: Some(marker.line()),
                        reason: UnmatchedReason::UnparseableFile,
                        setter: None,
                        message: format!(
                            "not valid YAML, markers in this file are ignored: {}",
                            err.info()
                        ),
                    }],
                };
            }
        }
    }
    walker.into_result()
}

/// A collection being walked.
struct Frame<'a> {
    mapping: bool,
    flow: bool,
    /// In a mapping: whether the next node is a key.
    expect_key: bool,
    /// In a mapping: the current key (when it is a scalar).
    key: Option<Cow<'a, str>>,
    /// In a sequence: the index the next item gets.
    next_index: usize,
}

/// A comment line with its position.
struct Comment<'a> {
    text: Cow<'a, str>,
    line: usize,
}

/// A scalar waiting for its line comment.
struct Pending<'a> {
    value: Cow<'a, str>,
    style: ScalarStyle,
    start: usize,
    end: usize,
    line: usize,
    end_line: usize,
    is_key: bool,
    in_flow: bool,
    /// An explicit tag other than `!!str`.
    foreign_tag: bool,
    /// The index in the top-level `items` sequence, for `kind: List` documents.
    item: Option<usize>,
    head: Vec<Comment<'a>>,
    line_comment: Option<Comment<'a>>,
}

impl Pending<'_> {
    /// An empty plain value (`key:`); granit puts its zero-length span on the `:`.
    fn is_empty_value(&self, text: &str) -> bool {
        self.start == self.end && text.as_bytes().get(self.start) == Some(&b':')
    }
}

/// Identity fields of one document (or of one item of a `kind: List`).
#[derive(Default)]
struct Ident {
    id: ObjectId,
}

impl Ident {
    fn set(&mut self, field: &str, value: &str) {
        let slot = match field {
            "apiVersion" => &mut self.id.api_version,
            "kind" => &mut self.id.kind,
            "name" => &mut self.id.name,
            "namespace" => &mut self.id.namespace,
            _ => return,
        };
        value.clone_into(slot);
    }
}

struct Walker<'a, 's> {
    path: &'a str,
    text: &'a str,
    setters: &'s Setters,
    frames: Vec<Frame<'a>>,
    pending: Option<Pending<'a>>,
    heads: Vec<Comment<'a>>,
    edits: Vec<(usize, usize, String)>,
    unmatched: Vec<Unmatched>,
    /// This document's changes, with the `items` index they were found under.
    doc_changes: Vec<(Option<usize>, Change)>,
    doc_ident: Ident,
    item_idents: Vec<(usize, Ident)>,
    /// All changes of the file, by object.
    changes: Vec<(ObjectId, Change)>,
}

impl<'a, 's> Walker<'a, 's> {
    fn new(path: &'a str, text: &'a str, setters: &'s Setters) -> Self {
        Self {
            path,
            text,
            setters,
            frames: Vec::new(),
            pending: None,
            heads: Vec::new(),
            edits: Vec::new(),
            unmatched: Vec::new(),
            doc_changes: Vec::new(),
            doc_ident: Ident::default(),
            item_idents: Vec::new(),
            changes: Vec::new(),
        }
    }

    fn event(&mut self, event: Event<'a>, span: Span) {
        match event {
            Event::Comment(text, placement) => self.comment(text, placement, span),
            Event::Scalar(value, style, _anchor, tag) => {
                self.flush_pending();
                let foreign_tag = tag.as_ref().is_some_and(|t| t.suffix() != "str");
                self.scalar(value, style, foreign_tag, span);
            }
            Event::SequenceStart(style, _, _) | Event::MappingStart(style, _, _) => {
                self.flush_pending();
                let mapping = matches!(event, Event::MappingStart(..));
                if mapping {
                    // A comment above a mapping is the mapping's (or its first key's) head
                    // comment; Flux never reads it as a marker.
                    self.drop_heads();
                }
                // A comment above a block sequence stays pending for the first item.
                self.node_started();
                self.frames.push(Frame {
                    mapping,
                    flow: matches!(style, granit_parser::StructureStyle::Flow),
                    expect_key: true,
                    key: None,
                    next_index: 0,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                // Not flushed: a line comment may still follow a flow collection's closer.
                self.frames.pop();
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                self.flush_pending();
                self.drop_heads();
                self.node_started();
            }
            Event::DocumentEnd => self.finish_document(),
            _ => {}
        }
    }

    /// Bookkeeping for a node starting in the current collection; returns whether it is a key.
    fn node_started(&mut self) -> bool {
        let Some(frame) = self.frames.last_mut() else {
            return false;
        };
        if frame.mapping {
            let is_key = frame.expect_key;
            frame.expect_key = !frame.expect_key;
            if is_key {
                frame.key = None;
            }
            is_key
        } else {
            frame.next_index += 1;
            false
        }
    }

    fn scalar(&mut self, value: Cow<'a, str>, style: ScalarStyle, foreign_tag: bool, span: Span) {
        let is_key = self.node_started();
        let is_seq_item = self.frames.last().is_some_and(|f| !f.mapping);
        let in_flow = self.frames.iter().any(|f| f.flow);
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let heads = std::mem::take(&mut self.heads);
        let head = if is_seq_item {
            heads
        } else {
            self.report_comments(
                &heads,
                "a marker on the line above a mapping entry is not read; \
                 put it at the end of the value's line",
            );
            Vec::new()
        };
        if is_key {
            if let Some(frame) = self.frames.last_mut() {
                frame.key = Some(value.clone());
            }
        } else {
            self.record_identity(&value);
        }
        self.pending = Some(Pending {
            item: self.item_index(),
            value,
            style,
            start,
            end,
            line: span.start.line(),
            end_line: span.end.line(),
            is_key,
            in_flow,
            foreign_tag,
            head,
            line_comment: None,
        });
    }

    /// The index under the document's top-level `items` sequence, if inside one.
    fn item_index(&self) -> Option<usize> {
        match self.frames.as_slice() {
            [root, items, ..] if root.mapping && !items.mapping => {
                (root.key.as_deref() == Some("items")).then(|| items.next_index.saturating_sub(1))
            }
            _ => None,
        }
    }

    /// Notes `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` of the document and
    /// of `items[i]` (for `kind: List`).
    fn record_identity(&mut self, value: &str) {
        let key = |f: &Frame<'a>| f.key.as_deref().map(str::to_owned);
        match self.frames.as_slice() {
            [root] if root.mapping => {
                if let Some(k) = key(root) {
                    self.doc_ident.set(&k, value);
                }
            }
            [root, meta] if root.mapping && meta.mapping => {
                if root.key.as_deref() == Some("metadata")
                    && let Some(k) = key(meta)
                    && (k == "name" || k == "namespace")
                {
                    self.doc_ident.set(&k, value);
                }
            }
            [root, items, obj, rest @ ..] if root.mapping && !items.mapping && obj.mapping => {
                if root.key.as_deref() != Some("items") {
                    return;
                }
                let index = items.next_index.saturating_sub(1);
                let field = match rest {
                    [] => key(obj).filter(|k| k == "apiVersion" || k == "kind"),
                    [meta] if meta.mapping && obj.key.as_deref() == Some("metadata") => {
                        key(meta).filter(|k| k == "name" || k == "namespace")
                    }
                    _ => None,
                };
                if let Some(field) = field {
                    match self.item_idents.iter_mut().find(|(i, _)| *i == index) {
                        Some((_, ident)) => ident.set(&field, value),
                        None => {
                            let mut ident = Ident::default();
                            ident.set(&field, value);
                            self.item_idents.push((index, ident));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn comment(&mut self, text: Cow<'a, str>, placement: Placement, span: Span) {
        let line = span.start.line();
        let start = span.start.byte_offset().unwrap_or(0);
        match placement {
            Placement::Right => {
                let attached = self
                    .pending
                    .as_ref()
                    .is_some_and(|p| self.line_comment_attaches(p, start, line));
                if attached {
                    if let Some(p) = self.pending.as_mut() {
                        p.line_comment = Some(Comment { text, line });
                    }
                    self.flush_pending();
                } else {
                    let block_scalar = self.pending.as_ref().is_some_and(|p| {
                        matches!(p.style, ScalarStyle::Literal | ScalarStyle::Folded)
                            && start < p.start
                    });
                    let comment = Comment { text, line };
                    if block_scalar {
                        self.report_one(
                            &comment,
                            UnmatchedReason::UnsupportedScalar,
                            "markers on block scalars (| or >) are not applied",
                        );
                    } else {
                        self.report_one(
                            &comment,
                            UnmatchedReason::NotAttached,
                            "this comment is not at the end of a scalar value's line",
                        );
                    }
                }
            }
            Placement::Above => {
                self.flush_pending();
                if self.heads.last().is_some_and(|h| h.line + 1 != line) {
                    self.drop_heads();
                }
                self.heads.push(Comment { text, line });
            }
            _ => {
                self.flush_pending();
                self.drop_heads();
                self.report_one(
                    &Comment { text, line },
                    UnmatchedReason::NotAttached,
                    "a marker on its own line applies only to the sequence item right below it",
                );
            }
        }
    }

    /// Whether a same-line comment starting at `start` is the line comment of `p`: nothing but
    /// blanks and flow closers between the scalar and the `#`.
    fn line_comment_attaches(&self, p: &Pending<'_>, start: usize, line: usize) -> bool {
        if p.is_key || p.end_line != line {
            return false;
        }
        let from = if p.is_empty_value(self.text) {
            p.start + 1
        } else {
            p.end
        };
        self.text.as_bytes().get(from..start).is_some_and(|gap| {
            gap.iter()
                .all(|b| matches!(b, b' ' | b'\t' | b']' | b'}' | b','))
        })
    }

    /// Reports comments that mention the marker token but are not read as markers.
    fn report_comments(&mut self, comments: &[Comment<'_>], why: &str) {
        for c in comments {
            self.report_one(c, UnmatchedReason::NotAttached, why);
        }
    }

    fn report_one(&mut self, comment: &Comment<'_>, reason: UnmatchedReason, why: &str) {
        if !comment.text.contains(TOKEN) {
            return;
        }
        let setter = match marker::parse(&comment.text) {
            Parsed::Setter(s) => Some(s),
            _ => None,
        };
        self.unmatched.push(Unmatched {
            path: self.path.to_owned(),
            line: Some(comment.line),
            reason,
            setter,
            message: why.to_owned(),
        });
    }

    fn drop_heads(&mut self) {
        let heads = std::mem::take(&mut self.heads);
        self.report_comments(
            &heads,
            "a marker on its own line applies only to the sequence item right below it",
        );
    }

    /// Decides what the pending scalar's comments say and applies its setter.
    fn flush_pending(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if p.is_key {
            return;
        }
        let (text, line): (Cow<'_, str>, usize) = match (&p.line_comment, p.head.as_slice()) {
            (Some(c), heads) => {
                // yaml.v3 hands Flux the head comment only when there is no line comment.
                self.report_comments(
                    heads,
                    "ignored because the item has a comment at the end of its line",
                );
                (c.text.clone(), c.line)
            }
            (None, []) => return,
            (None, [one]) => (one.text.clone(), one.line),
            (None, many) => {
                // yaml.v3 joins the lines; the result is never a single JSON object.
                let joined = many
                    .iter()
                    .map(|c| c.text.as_ref())
                    .collect::<Vec<_>>()
                    .join("\n#");
                (Cow::Owned(joined), many.first().map_or(p.line, |c| c.line))
            }
        };
        let setter = match marker::parse(&text) {
            Parsed::NotAMarker => return,
            Parsed::Invalid(why) => {
                let why = if p.line_comment.is_none() && p.head.len() > 1 {
                    format!(
                        "the comment above the item spans {} lines; only a single-line comment \
                         is read as a marker",
                        p.head.len()
                    )
                } else {
                    why
                };
                self.unmatched.push(Unmatched {
                    path: self.path.to_owned(),
                    line: Some(line),
                    reason: UnmatchedReason::InvalidMarker,
                    setter: None,
                    message: why,
                });
                return;
            }
            Parsed::Setter(setter) => setter,
        };
        let new_value = match self.setters.resolve(&setter) {
            Ok(v) => v,
            Err((reason, message)) => {
                self.unmatched.push(Unmatched {
                    path: self.path.to_owned(),
                    line: Some(line),
                    reason,
                    setter: Some(setter),
                    message,
                });
                return;
            }
        };
        let unsupported = |why: &str| Unmatched {
            path: self.path.to_owned(),
            line: Some(line),
            reason: UnmatchedReason::UnsupportedScalar,
            setter: Some(setter.clone()),
            message: why.to_owned(),
        };
        let style = match p.style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            _ => {
                let u = unsupported("markers on block scalars (| or >) are not applied");
                self.unmatched.push(u);
                return;
            }
        };
        if p.foreign_tag {
            let u = unsupported("the value has an explicit non-string tag (e.g. !!int)");
            self.unmatched.push(u);
            return;
        }
        let empty = p.is_empty_value(self.text);
        if p.start == p.end && !empty {
            let u = unsupported("empty value in a position that cannot be edited in place");
            self.unmatched.push(u);
            return;
        }
        let old_value = if empty { "" } else { p.value.as_ref() };
        if old_value == new_value {
            return;
        }
        let rendered = scalar::render(&new_value, style, p.in_flow);
        if empty {
            self.edits
                .push((p.start + 1, p.start + 1, format!(" {rendered}")));
        } else {
            self.edits.push((p.start, p.end, rendered));
        }
        self.doc_changes.push((
            p.item,
            Change {
                old_value: old_value.to_owned(),
                new_value,
                setter,
                line: p.line,
            },
        ));
    }

    fn finish_document(&mut self) {
        self.flush_pending();
        self.drop_heads();
        self.frames.clear();
        let ident = std::mem::take(&mut self.doc_ident);
        let items = std::mem::take(&mut self.item_idents);
        let is_list = matches!(ident.id.kind.as_str(), "List" | "ResourceList");
        for (item, change) in std::mem::take(&mut self.doc_changes) {
            let id = item
                .filter(|_| is_list)
                .and_then(|i| items.iter().find(|(j, _)| *j == i))
                .map_or_else(|| ident.id.clone(), |(_, ident)| ident.id.clone());
            self.changes.push((id, change));
        }
    }

    fn into_result(self) -> FileRewrite {
        let output = (!self.edits.is_empty()).then(|| {
            let mut out = String::with_capacity(self.text.len() + 64);
            let mut at = 0;
            for (start, end, replacement) in &self.edits {
                // Spans come from the parser and are char boundaries; `get` keeps us panic-free.
                out.push_str(self.text.get(at..*start).unwrap_or_default());
                out.push_str(replacement);
                at = *end;
            }
            out.push_str(self.text.get(at..).unwrap_or_default());
            out
        });
        let mut objects: Vec<ObjectChanges> = Vec::new();
        for (id, change) in self.changes {
            match objects.iter_mut().find(|o| o.id == id) {
                Some(o) => o.changes.push(change),
                None => objects.push(ObjectChanges {
                    id,
                    changes: vec![change],
                }),
            }
        }
        FileRewrite {
            output,
            objects,
            unmatched: self.unmatched,
        }
    }
}

#[cfg(test)]
mod tests;

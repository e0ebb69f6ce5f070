//! Which fields of its data a template reads, found by walking the parse tree (for
//! deprecation checks such as Flux's removed `.Updated`), without executing it.

use std::collections::HashSet;

use crate::parse::{Arg, Node, Pipe, Trees};

/// A field chain read from the data the template is executed with, e.g. `["Updated",
/// "Images"]` for `{{ range .Updated.Images }}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootField {
    /// The field names, outermost first.
    pub chain: Vec<String>,
    /// The template line (1-based) it appears on.
    pub line: usize,
}

/// The root field chains of the tree `name`, in template order.
///
/// Found: `.A.B` wherever dot is still the data (top level, `if` bodies, `else` branches of
/// `with`/`range`, and the pipelines of `if`/`with`/`range` themselves), `$.A.B` in the
/// top-level template, `(.A).B` chains, arguments of function calls and nested pipelines,
/// and templates called with the data (`{{ template "x" . }}`, `{{ block "x" . }}`), walked
/// once each. Not found: reads through a variable holding the data (`{{ $d := . }}{{
/// $d.A }}`), and `.A` inside `with`/`range` bodies, where dot is something else.
pub(crate) fn root_fields(trees: &Trees, name: &str, text: &str) -> Vec<RootField> {
    let mut walk = Walk {
        trees,
        text,
        visited: HashSet::new(),
        found: Vec::new(),
    };
    walk.tree(name);
    walk.found
}

struct Walk<'a> {
    trees: &'a Trees,
    text: &'a str,
    /// Templates already walked with the data as dot (recursion stops there).
    visited: HashSet<&'a str>,
    found: Vec<RootField>,
}

/// Whether dot, and `$`, are the template's data at a point of the walk.
#[derive(Clone, Copy)]
struct Scope {
    dot: bool,
    dollar: bool,
}

impl<'a> Walk<'a> {
    fn tree(&mut self, name: &'a str) {
        if !self.visited.insert(name) {
            return;
        }
        if let Some(list) = self.trees.get(name) {
            self.list(
                list,
                Scope {
                    dot: true,
                    dollar: true,
                },
            );
        }
    }

    fn list(&mut self, nodes: &'a [Node], scope: Scope) {
        for node in nodes {
            match node {
                Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
                Node::Action(pipe) => self.pipe(pipe, scope),
                Node::If(b) => {
                    self.pipe(&b.pipe, scope);
                    self.list(&b.list, scope);
                    if let Some(e) = &b.else_list {
                        self.list(e, scope);
                    }
                }
                Node::With(b) | Node::Range(b) => {
                    self.pipe(&b.pipe, scope);
                    let inner = Scope {
                        dot: false,
                        dollar: scope.dollar,
                    };
                    self.list(&b.list, inner);
                    if let Some(e) = &b.else_list {
                        self.list(e, scope);
                    }
                }
                Node::Template { name, pipe, .. } => {
                    if let Some(pipe) = pipe {
                        self.pipe(pipe, scope);
                        if passes_data(pipe, scope) {
                            self.tree(name);
                        }
                    }
                }
            }
        }
    }

    fn pipe(&mut self, pipe: &'a Pipe, scope: Scope) {
        for cmd in &pipe.cmds {
            for arg in &cmd.args {
                self.arg(arg, scope, &[]);
            }
        }
    }

    /// `arg` followed by the fields `after` (of an enclosing chain).
    fn arg(&mut self, arg: &'a Arg, scope: Scope, after: &[String]) {
        match arg {
            Arg::Field { pos, idents } if scope.dot => self.record(*pos, idents, after),
            Arg::Variable { pos, idents }
                if scope.dollar && idents.first().is_some_and(|v| v == "$") =>
            {
                self.record(*pos, &idents[1..], after);
            }
            Arg::Dot(pos) if scope.dot => self.record(*pos, &[], after),
            // `(.A).B`: a parenthesised single operand continues the chain.
            Arg::Pipe(p) => match (p.decl.is_empty(), p.cmds.as_slice()) {
                (true, [cmd]) if cmd.args.len() == 1 => self.arg(&cmd.args[0], scope, after),
                _ => self.pipe(p, scope),
            },
            Arg::Chain { node, fields, .. } => {
                let mut chain = fields.clone();
                chain.extend_from_slice(after);
                self.arg(node, scope, &chain);
            }
            _ => {}
        }
    }

    fn record(&mut self, pos: usize, idents: &[String], after: &[String]) {
        let chain: Vec<String> = idents.iter().chain(after).cloned().collect();
        if chain.is_empty() {
            return;
        }
        let before = self.text.get(..pos).unwrap_or(self.text);
        self.found.push(RootField {
            chain,
            line: 1 + before.matches('\n').count(),
        });
    }
}

/// Whether a `template` call's argument is the data itself (`.` or `$`).
fn passes_data(pipe: &Pipe, scope: Scope) -> bool {
    let [cmd] = pipe.cmds.as_slice() else {
        return false;
    };
    match cmd.args.as_slice() {
        [Arg::Dot(_)] => scope.dot,
        [Arg::Variable { idents, .. }] => scope.dollar && idents.len() == 1 && idents[0] == "$",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::Template;

    fn chains(text: &str) -> Vec<String> {
        Template::parse("t", text)
            .unwrap()
            .root_fields()
            .into_iter()
            .map(|f| format!("{}@{}", f.chain.join("."), f.line))
            .collect()
    }

    #[test]
    fn top_level_and_control_pipelines() {
        assert_eq!(
            chains("{{ .A.B }}\n{{ if .C }}{{ .D }}{{ else }}{{ .E }}{{ end }}"),
            ["A.B@1", "C@2", "D@2", "E@2"]
        );
        assert_eq!(
            chains("{{ range .Updated.Images }}- {{ . }} {{ .Name }}{{ else }}{{ .X }}{{ end }}"),
            ["Updated.Images@1", "X@1"]
        );
        assert_eq!(
            chains("{{ with .W }}{{ .Inner }}{{ $.Root }}{{ end }}"),
            ["W@1", "Root@1"]
        );
    }

    #[test]
    fn arguments_chains_and_variables() {
        assert_eq!(
            chains("{{ len (.Updated).Files | printf \"%d\" }} {{ $x := .Y }}{{ $x.Z }}"),
            ["Updated.Files@1", "Y@1"]
        );
        assert_eq!(
            chains("{{ range $f, $_ := .Updated.Files }}{{ $f }}{{ end }}"),
            ["Updated.Files@1"]
        );
        // A variable holding the data is not followed.
        assert!(chains("{{ $d := . }}{{ $d.Updated }}").is_empty());
    }

    #[test]
    fn templates_called_with_the_data_once() {
        assert_eq!(
            chains(
                "{{ define \"x\" }}{{ .In }}{{ template \"x\" . }}{{ end }}\
                 {{ template \"x\" . }}{{ template \"x\" .Sub }}"
            ),
            ["In@1", "Sub@1"]
        );
        assert_eq!(chains("{{ block \"b\" $ }}{{ .Blk }}{{ end }}"), ["Blk@1"]);
        // Called with something else: its dot is not the data.
        assert!(chains("{{ define \"y\" }}{{ .Q }}{{ end }}{{ template \"y\" 1 }}").is_empty());
    }
}

//! `image-automation update`: apply policies to a directory without git.
//!
//! The order is chosen so that bad input never leaves a half-updated tree: policies and the
//! template are read and checked first, edits are computed without writing, the message is
//! rendered, and only then are the files written (each atomically).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use api_types::http_api::{ImagePolicyInfo, List};
use serde::Serialize;

use crate::message::{self, MessageError, TemplateInput};
use crate::setters::{self, Applied, FileChanges, SetterError, Setters, Unmatched};

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// For people: changes, unmatched markers, message (and a diff with `--dry-run`).
    #[default]
    Text,
    /// Exactly one JSON object on stdout.
    Json,
}

/// The options of `image-automation update`.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// The directory to update.
    pub path: PathBuf,
    /// JSON or YAML `{"items": [{namespace, name, latestRef}]}`.
    pub policies: PathBuf,
    /// The automation's namespace; only its policies apply.
    pub namespace: String,
    /// The automation's name (for `.AutomationObject`).
    pub automation: String,
    /// A commit message template file.
    pub message_template: Option<PathBuf>,
    /// Write nothing; print a unified diff.
    pub dry_run: bool,
    pub output: OutputFormat,
}

/// Bad input or a failed update; the binary prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("reading policies file {path}: {source}")]
    ReadPolicies {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "policies file {path} is not a policy list ({{\"items\": [{{\"namespace\", \"name\", \
         \"latestRef\": {{\"name\", \"tag\", \"digest\"}}}}]}}) in JSON or YAML: {message}"
    )]
    ParsePolicies { path: String, message: String },
    #[error("reading message template {path}: {source}")]
    ReadTemplate {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--path {path} is not a directory")]
    NotADirectory { path: String },
    #[error(transparent)]
    Setters(#[from] SetterError),
    #[error("message template {path}: {source}")]
    Message {
        path: String,
        #[source]
        source: MessageError,
    },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// The JSON document printed with `--output json`.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    changes: &'a [FileChanges],
    unmatched: &'a [Unmatched],
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// Present with `--dry-run` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<&'a str>,
}

/// Reads a policies file: the reflector API's list shape, JSON or YAML.
pub fn load_policies(path: &Path) -> Result<Vec<ImagePolicyInfo>, UpdateError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpdateError::ReadPolicies {
        path: path.display().to_string(),
        source,
    })?;
    let parse_err = |message: String| UpdateError::ParsePolicies {
        path: path.display().to_string(),
        message,
    };
    // JSON is YAML too, but serde_json's errors are clearer for JSON input.
    let list: List<ImagePolicyInfo> = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| parse_err(e.to_string()))?
    };
    Ok(list.items)
}

/// Runs the command, printing to `out`.
pub fn run(opts: &UpdateOptions, out: &mut dyn Write) -> Result<(), UpdateError> {
    let policies = load_policies(&opts.policies)?;
    let setters = Setters::from_policies(&opts.namespace, &policies);
    let template = match &opts.message_template {
        Some(path) => Some((
            path,
            std::fs::read_to_string(path).map_err(|source| UpdateError::ReadTemplate {
                path: path.display().to_string(),
                source,
            })?,
        )),
        None => None,
    };
    if !opts.path.is_dir() {
        return Err(UpdateError::NotADirectory {
            path: opts.path.display().to_string(),
        });
    }

    let applied = setters::apply(&opts.path, None, &setters, false)?;
    let message = match &template {
        Some((path, text)) => {
            let input = TemplateInput {
                namespace: &opts.namespace,
                name: &opts.automation,
                result: &applied.result,
                values: None,
                setters: &setters,
            };
            Some(
                message::render(text, &input).map_err(|source| UpdateError::Message {
                    path: path.display().to_string(),
                    source,
                })?,
            )
        }
        None => None,
    };
    if !opts.dry_run {
        setters::write_edits(&applied.edits)?;
    }
    let diff = opts.dry_run.then(|| unified_diff(&applied));

    match opts.output {
        OutputFormat::Json => {
            let report = JsonReport {
                changes: &applied.result.files,
                unmatched: &applied.result.unmatched,
                message: message.as_deref(),
                diff: diff.as_deref(),
            };
            serde_json::to_writer_pretty(&mut *out, &report)
                .map_err(|e| UpdateError::Output(e.into()))?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            if let Some(diff) = &diff {
                write!(out, "{diff}")?;
            }
            write_text(out, &applied, opts.dry_run)?;
            if let Some(message) = &message {
                writeln!(out, "\nmessage:\n{message}")?;
            }
        }
    }
    Ok(())
}

/// A unified diff of every changed file, `a/PATH` -> `b/PATH` like git.
pub fn unified_diff(applied: &Applied) -> String {
    let mut out = String::new();
    for edit in &applied.edits {
        let diff = similar::TextDiff::from_lines(&edit.before, &edit.after);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{}", edit.path), &format!("b/{}", edit.path))
            .to_string();
        out.push_str(&text);
        if !text.ends_with('\n') {
            // A last line without newline; diff(1) says so.
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
    out
}

fn write_text(out: &mut dyn Write, applied: &Applied, dry_run: bool) -> std::io::Result<()> {
    let result = &applied.result;
    for file in &result.files {
        writeln!(out, "{}", file.path)?;
        for object in &file.objects {
            let id = &object.id;
            let mut label = [id.api_version.as_str(), id.kind.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let name = match (id.namespace.as_str(), id.name.as_str()) {
                ("", "") => String::new(),
                ("", name) => name.to_owned(),
                (ns, name) => format!("{ns}/{name}"),
            };
            if !name.is_empty() {
                label = format!("{label} {name}");
            }
            if label.trim().is_empty() {
                label = "(not a Kubernetes object)".into();
            }
            writeln!(out, "  {}", label.trim())?;
            for change in &object.changes {
                writeln!(
                    out,
                    "    line {}: {} -> {} ({})",
                    change.line, change.old_value, change.new_value, change.setter
                )?;
            }
        }
    }
    if !result.unmatched.is_empty() {
        writeln!(out, "unmatched:")?;
        for u in &result.unmatched {
            let at = match u.line {
                Some(line) => format!("{}:{line}", u.path),
                None => u.path.clone(),
            };
            let setter = u
                .setter
                .as_deref()
                .map(|s| format!(" {s:?}"))
                .unwrap_or_default();
            writeln!(out, "  {at}: {:?}{setter}: {}", u.reason, u.message)?;
        }
    }
    let changes = result.change_count();
    let files = result.files.len();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for u in &result.unmatched {
        *by_reason.entry(format!("{:?}", u.reason)).or_default() += 1;
    }
    writeln!(
        out,
        "{changes} change{} in {files} file{}{}",
        if changes == 1 { "" } else { "s" },
        if files == 1 { "" } else { "s" },
        if dry_run && files > 0 {
            " (dry run: nothing written)"
        } else {
            ""
        }
    )?;
    Ok(())
}

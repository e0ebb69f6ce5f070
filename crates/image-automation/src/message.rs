//! Commit messages: Flux's template data, rendered with Go `text/template` semantics.
//!
//! The data is built by [`crate::template_data`] (checked against Go by `tests/template_oracle.rs`)
//! and mirrors Flux v1's `source.TemplateData`:
//! - `.AutomationObject`: a `types.NamespacedName` that prints `ns/name` and has `.Namespace`
//!   and `.Name`;
//! - `.Changed`: an `update.Result` with the field `FileChanges` (path -> object identifier ->
//!   changes) and the methods `Objects` (merged per object) and `Changes` (de-duplicated);
//! - `.Values`: `spec.git.commit.messageTemplateValues` as a `map[string]string`.
//!
//! We also provide the v1beta1 `.Updated` data (`Files`, `Objects`, `Images`, with image refs
//! that have `String`, `Identifier`, `Repository`, `Registry`, `Name` and `Policy`), which Flux
//! v1 rejects (Stalled `RemovedTemplateField`) but which templates from older guides use. It is a
//! method, not a field, so printing `{{ . }}` shows exactly Flux's three fields. Its use is a
//! deprecation ([`deprecated_fields`]); [`RemovedFields::Stall`] renders without it, as Flux v1.
//!
//! Ordering: Go iterates maps in sorted key order, so `range` over `FileChanges` and `Objects`
//! is deterministic; `Changes` and the per-object lists of `Objects` are sorted by (setter, old
//! value, new value), as in newer Flux, instead of depending on Go's random map order
//! ([`ChangeOrder::Sorted`]). `.Updated.Images` lists images by path, then object identifier.

use std::collections::BTreeMap;

use crate::template_data::{self as flux, ChangeOrder, LegacyImage};
use api_types::ImageRef;
use api_types::image_update_automation::DEFAULT_MESSAGE_TEMPLATE;
use go_template::{LimitExceeded, Limits, Template, Value};

use crate::setters::{ObjectId, Setters, UpdateResult};

/// Flux names the template "commit message"; Go's error messages include the name.
pub const TEMPLATE_NAME: &str = "commit message";

/// What a commit message template sees.
#[derive(Debug, Clone, Copy)]
pub struct TemplateInput<'a> {
    /// The automation's namespace and name (`.AutomationObject`).
    pub namespace: &'a str,
    pub name: &'a str,
    /// The setters' result (`.Changed`, and the legacy `.Updated`).
    pub result: &'a UpdateResult,
    /// `spec.git.commit.messageTemplateValues` (`.Values`).
    pub values: Option<&'a BTreeMap<String, String>>,
    /// The policies' latest images, for the legacy `.Updated` image refs.
    pub setters: &'a Setters,
}

/// What to do with a template that reads a field Flux v1 removed (`.Updated`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemovedFields {
    /// Render it (the v1beta1 data), and report its use as a deprecation.
    #[default]
    Render,
    /// As Flux v1: rendering stops with [`MessageError::RemovedField`].
    Stall,
}

/// Flux v1's message when a template reads `.Updated` (reason `RemovedTemplateField`).
pub const REMOVED_UPDATED_MESSAGE: &str = "template uses removed '.Updated' field. Please use \
    '.Changed' instead. See: https://fluxcd.io/flux/components/image/imageupdateautomations/#message-template";

/// Go's error for `.Updated` on Flux v1's data, which Flux recognises the removed field by.
const UPDATED_EXEC_ERROR: &str = "can't evaluate field Updated in type source.TemplateData";

/// A template's use of a deprecated field, for a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The field, as written in templates (`.Updated`).
    pub field: &'static str,
    /// The first template line that reads it.
    pub line: usize,
}

impl Deprecation {
    /// A warning naming the spec field, the template field and its replacement.
    pub fn message(&self) -> String {
        format!(
            "spec.git.commit.messageTemplate line {}: the field '{}' is deprecated and Flux v1 \
             removed it (Flux stalls such automations with RemovedTemplateField); it is still \
             rendered here. Please use '.Changed' instead \
             (https://fluxcd.io/flux/components/image/imageupdateautomations/#message-template)",
            self.line, self.field
        )
    }
}

/// The deprecated fields `template` reads from its data: `.Updated` and `$.Updated`, found in
/// the parse tree wherever dot is the data (see [`go_template::RootField`]; a read through a
/// variable holding the data is not found). None for a template that does not parse.
pub fn deprecated_fields(template: &str) -> Vec<Deprecation> {
    let Ok(parsed) = Template::parse(TEMPLATE_NAME, effective(template)) else {
        return Vec::new();
    };
    parsed
        .root_fields()
        .into_iter()
        .find(|f| f.chain.first().is_some_and(|name| name == "Updated"))
        .map(|f| Deprecation {
            field: ".Updated",
            line: f.line,
        })
        .into_iter()
        .collect()
}

/// A template that could not be parsed or rendered; the message is Go's, naming the template
/// line (e.g. `template: commit message:3: function "nosuchfn" not defined`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum MessageError {
    #[error("{0}")]
    Parse(go_template::Error),
    #[error("{0}")]
    Execute(go_template::Error),
    /// Rendering ran out of one of [`Limits`]; the message names the limit and the action.
    #[error("{0}")]
    Limit(go_template::Error),
    /// With [`RemovedFields::Stall`], the template read `.Updated` (Flux's message).
    #[error("{REMOVED_UPDATED_MESSAGE}")]
    RemovedField,
}

impl MessageError {
    /// The rendering limit that stopped the template, if one did.
    pub fn limit_exceeded(&self) -> Option<LimitExceeded> {
        match self {
            MessageError::Limit(e) => e.limit_exceeded(),
            MessageError::Parse(_) | MessageError::Execute(_) | MessageError::RemovedField => None,
        }
    }
}

/// Checks that a template parses (for validating a spec before any work is done).
pub fn validate(template: &str) -> Result<(), MessageError> {
    Template::validate(TEMPLATE_NAME, effective(template)).map_err(MessageError::Parse)
}

/// Renders `template` over the data of `input` within [`Limits::DEFAULT`] (templates come
/// from anyone who may write an automation; one must not exhaust the controller). An empty
/// template means Flux's default (`Update from image update automation`).
pub fn render(template: &str, input: &TemplateInput<'_>) -> Result<String, MessageError> {
    render_with(template, input, &Limits::DEFAULT)
}

/// [`render`] within `limits`.
pub fn render_with(
    template: &str,
    input: &TemplateInput<'_>,
    limits: &Limits,
) -> Result<String, MessageError> {
    render_as(template, input, limits, RemovedFields::Render)
}

/// [`render_with`], with `removed` deciding whether `.Updated` exists. With
/// [`RemovedFields::Stall`] the data is exactly Flux v1's, and a template that reaches
/// `.Updated` fails with [`MessageError::RemovedField`] (as Flux, only when executed).
pub fn render_as(
    template: &str,
    input: &TemplateInput<'_>,
    limits: &Limits,
    removed: RemovedFields,
) -> Result<String, MessageError> {
    let parsed =
        Template::parse(TEMPLATE_NAME, effective(template)).map_err(MessageError::Parse)?;
    let data = match removed {
        RemovedFields::Render => template_data(input),
        RemovedFields::Stall => flux_v1_data(input).into(),
    };
    parsed
        .execute_with(&data, limits)
        .map_err(|e| match e.limit_exceeded() {
            Some(_) => MessageError::Limit(e),
            None if removed == RemovedFields::Stall && e.message().contains(UPDATED_EXEC_ERROR) => {
                MessageError::RemovedField
            }
            None => MessageError::Execute(e),
        })
}

fn effective(template: &str) -> &str {
    if template.is_empty() {
        DEFAULT_MESSAGE_TEMPLATE
    } else {
        template
    }
}

/// The template's dot: Flux's `source.TemplateData` (built by [`crate::template_data`], with
/// sorted changes), plus the legacy `.Updated` as a method.
pub fn template_data(input: &TemplateInput<'_>) -> Value {
    flux_v1_data(input)
        .method("Updated", flux::legacy_result(&legacy_images(input)))
        .into()
}

/// Flux v1's `source.TemplateData`, without `.Updated`.
fn flux_v1_data(input: &TemplateInput<'_>) -> go_template::Object {
    let changes = file_changes(input.result);
    flux::template_object(
        input.namespace,
        input.name,
        &changes,
        input.values,
        ChangeOrder::Sorted,
    )
}

fn flux_id(id: &ObjectId) -> flux::ObjectId {
    flux::ObjectId {
        api_version: id.api_version.clone(),
        kind: id.kind.clone(),
        name: id.name.clone(),
        namespace: id.namespace.clone(),
    }
}

/// The setters' changes in path, then document order.
fn file_changes(result: &UpdateResult) -> Vec<flux::FileChange> {
    let mut out = Vec::new();
    for file in &result.files {
        for object in &file.objects {
            for c in &object.changes {
                out.push(flux::FileChange {
                    file: file.path.clone(),
                    object: flux_id(&object.id),
                    change: flux::Change {
                        old_value: c.old_value.clone(),
                        new_value: c.new_value.clone(),
                        setter: c.setter.clone(),
                    },
                });
            }
        }
    }
    out
}

/// The image ref of the policy a setter names, as v1beta1 recorded it.
fn policy_image<'a>(setters: &'a Setters, setter: &str) -> Option<(&'a ImageRef, String, String)> {
    let mut parts = setter.splitn(3, ':');
    let namespace = parts.next()?;
    let policy = parts.next()?;
    let image = setters.image(policy)?;
    Some((image, namespace.to_owned(), policy.to_owned()))
}

/// go-containerregistry's view of a reference: registry (defaulting to Docker Hub, where
/// single-component repositories live under `library/`) and repository.
fn registry_and_repository(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => {
            (host.to_owned(), rest.to_owned())
        }
        _ => ("index.docker.io".to_owned(), name.to_owned()),
    };
    let registry = if registry == "docker.io" {
        "index.docker.io".to_owned()
    } else {
        registry
    };
    let repository = if registry == "index.docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    (registry, repository)
}

/// A v1beta1 `update.ImageRef`: prints as the reference it wrote.
fn legacy_image(image: &ImageRef, namespace: String, policy: String) -> LegacyImage {
    let (registry, repository) = registry_and_repository(&image.name);
    let digest = image.digest.as_deref().filter(|d| !d.is_empty());
    let (identifier, name) = match digest {
        Some(d) => (d.to_owned(), format!("{registry}/{repository}@{d}")),
        None => (
            image.tag.clone(),
            format!("{registry}/{repository}:{}", image.tag),
        ),
    };
    LegacyImage {
        string: image.to_string(),
        identifier,
        repository,
        registry,
        name,
        policy_namespace: namespace,
        policy_name: policy,
    }
}

/// The inputs of `.Updated`, the v1beta1 `update.Result` (files -> objects -> image refs): one
/// image ref per changed value, like the old setters callback recorded them.
fn legacy_images(input: &TemplateInput<'_>) -> Vec<(String, flux::ObjectId, LegacyImage)> {
    let mut out = Vec::new();
    for file in &input.result.files {
        for object in &file.objects {
            for c in &object.changes {
                if let Some((image, namespace, policy)) = policy_image(input.setters, &c.setter) {
                    out.push((
                        file.path.clone(),
                        flux_id(&object.id),
                        legacy_image(image, namespace, policy),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

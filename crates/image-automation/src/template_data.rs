//! Builders for the data Flux's image-automation-controller hands to commit message templates,
//! with the same Go type names, field order, methods and `String()` displays, so templates
//! (and their error messages) behave as in Flux.
//!
//! Flux computes `.Changed.Objects` and `.Changed.Changes` by ranging over Go maps, so their
//! order is random in Flux; here files are visited in sorted order and objects in Go's `fmtsort`
//! order (APIVersion, Kind, Name, Namespace), which makes the output deterministic
//! ([`ChangeOrder::Visit`]). [`ChangeOrder::Sorted`] instead sorts those lists by (setter, old
//! value, new value), as newer Flux does.

use std::collections::{BTreeMap, HashSet};

use go_template::{Map, Object, Value};

/// Identifies a Kubernetes object in a file (all empty for non-Kubernetes YAML).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    /// `apiVersion`
    pub api_version: String,
    /// `kind`
    pub kind: String,
    /// `metadata.name`
    pub name: String,
    /// `metadata.namespace`
    pub namespace: String,
}

/// One setter change (`update.Change`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Change {
    /// Value before the update.
    pub old_value: String,
    /// Value after the update.
    pub new_value: String,
    /// The setter, e.g. `flux-system:podinfo:tag`.
    pub setter: String,
}

/// The order of `.Changed.Changes` and of the per-object lists of `.Changed.Objects`
/// (`.Changed.FileChanges` always keeps document order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChangeOrder {
    /// Files in sorted order, objects in Go's key order, changes in document order: what the
    /// Go oracle produces when it ranges over the maps in sorted key order.
    #[default]
    Visit,
    /// Sorted by (setter, old value, new value), like newer Flux's `sortChanges`.
    Sorted,
}

impl ChangeOrder {
    fn apply(self, changes: &mut [Change]) {
        if self == Self::Sorted {
            changes.sort_by(|a, b| {
                (&a.setter, &a.old_value, &a.new_value).cmp(&(
                    &b.setter,
                    &b.old_value,
                    &b.new_value,
                ))
            });
        }
    }
}

/// One change located in a file and object, in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileChange {
    /// Path relative to the update path, e.g. `deploy.yaml`.
    pub file: String,
    /// The object the change was made in.
    pub object: ObjectId,
    /// The change.
    pub change: Change,
}

/// An image reference for the legacy (v1beta1) `.Updated` data (`update.ImageRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyImage {
    /// `String()`, e.g. `helloworld:v1.0.0`.
    pub string: String,
    /// `Identifier()`: tag or digest.
    pub identifier: String,
    /// `Repository()`, e.g. `library/helloworld`.
    pub repository: String,
    /// `Registry()`, e.g. `index.docker.io`.
    pub registry: String,
    /// `Name()`, e.g. `index.docker.io/library/helloworld:v1.0.0`.
    pub name: String,
    /// `Policy()` namespace.
    pub policy_namespace: String,
    /// `Policy()` name.
    pub policy_name: String,
}

/// A `types.NamespacedName`: fields `Namespace`, `Name`; prints as `namespace/name`.
pub fn namespaced_name(namespace: &str, name: &str) -> Value {
    Value::Object(
        Object::new("types.NamespacedName")
            .field("Namespace", namespace)
            .field("Name", name)
            .display(format!("{namespace}/{name}")),
    )
}

/// An `update.ObjectIdentifier{yaml.ResourceIdentifier{TypeMeta{APIVersion, Kind},
/// NameMeta{Name, Namespace}}}`; prints as `{{{apps/v1 Deployment} {name ns}}}`.
pub fn object_identifier(id: &ObjectId) -> Value {
    let type_meta = Object::new("yaml.TypeMeta")
        .field("APIVersion", id.api_version.as_str())
        .field("Kind", id.kind.as_str());
    let name_meta = Object::new("yaml.NameMeta")
        .field("Name", id.name.as_str())
        .field("Namespace", id.namespace.as_str());
    let rid = Object::new("yaml.ResourceIdentifier")
        .embed("TypeMeta", type_meta)
        .embed("NameMeta", name_meta);
    Value::Object(Object::new("update.ObjectIdentifier").embed("ResourceIdentifier", rid))
}

/// An `update.Change{OldValue, NewValue, Setter}`.
pub fn change(c: &Change) -> Value {
    Value::Object(
        Object::new("update.Change")
            .field("OldValue", c.old_value.as_str())
            .field("NewValue", c.new_value.as_str())
            .field("Setter", c.setter.as_str()),
    )
}

fn group<T: Clone>(items: &[(String, ObjectId, T)]) -> BTreeMap<&str, BTreeMap<&ObjectId, Vec<T>>> {
    let mut files: BTreeMap<&str, BTreeMap<&ObjectId, Vec<T>>> = BTreeMap::new();
    for (file, obj, item) in items {
        files
            .entry(file.as_str())
            .or_default()
            .entry(obj)
            .or_default()
            .push(item.clone());
    }
    files
}

/// One file's objects as a map (Go type `type_name`) of their items shown by `show`; each
/// object's items are also added to `merged` (the items per object across files).
fn object_lists<'a, T: Clone>(
    objs: &BTreeMap<&'a ObjectId, Vec<T>>,
    type_name: &'static str,
    show: fn(&T) -> Value,
    merged: &mut BTreeMap<&'a ObjectId, Vec<T>>,
) -> Map {
    let mut lists = Map::new().with_type_name(type_name);
    for (obj, items) in objs {
        lists.insert(
            object_identifier(obj),
            Value::List(items.iter().map(show).collect()),
        );
        merged.entry(obj).or_default().extend(items.iter().cloned());
    }
    lists
}

/// The Go type of the legacy per-object image lists.
const LEGACY_OBJECTS: &str = "map[update.ObjectIdentifier][]update.ImageRef";

/// `update.Result`: field `FileChanges` (`map[string]update.ObjectChanges`), methods `Objects`
/// (changes merged per object across files) and `Changes` (de-duplicated by old, new, setter).
pub fn result(changes: &[FileChange]) -> Value {
    result_in(changes, ChangeOrder::Visit)
}

/// [`result`] with the given order of `Changes` and of the per-object lists of `Objects`.
pub fn result_in(changes: &[FileChange], order: ChangeOrder) -> Value {
    let items: Vec<(String, ObjectId, Change)> = changes
        .iter()
        .map(|c| (c.file.clone(), c.object.clone(), c.change.clone()))
        .collect();
    let files = group(&items);
    let mut file_changes = Map::new().with_type_name("map[string]update.ObjectChanges");
    let mut merged: BTreeMap<&ObjectId, Vec<Change>> = BTreeMap::new();
    let mut all: Vec<Change> = Vec::new();
    for (file, objs) in &files {
        let oc = object_lists(objs, "update.ObjectChanges", change, &mut merged);
        file_changes.insert(*file, oc);
    }
    // Changes() walks files, then objects in Go's key order (BTreeMap order on ObjectId is
    // field order, the same as fmtsort's).
    let mut seen: HashSet<&Change> = HashSet::new();
    for objs in files.values() {
        for chs in objs.values() {
            for c in chs {
                if seen.insert(c) {
                    all.push(c.clone());
                }
            }
        }
    }
    order.apply(&mut all);
    let mut objects = Map::new().with_type_name("update.ObjectChanges");
    for (obj, mut chs) in merged {
        order.apply(&mut chs);
        objects.insert(
            object_identifier(obj),
            Value::List(chs.iter().map(change).collect()),
        );
    }
    Value::Object(
        Object::new("update.Result")
            .field("FileChanges", file_changes)
            .method("Objects", objects)
            .method("Changes", Value::List(all.iter().map(change).collect())),
    )
}

/// Flux v1's `source.TemplateData{AutomationObject, Changed, Values}`. `values` is
/// `spec.git.commit.messageTemplateValues` (`None` when unset: prints `map[]`).
pub fn template_data(
    namespace: &str,
    name: &str,
    changes: &[FileChange],
    values: Option<&BTreeMap<String, String>>,
) -> Value {
    template_object(namespace, name, changes, values, ChangeOrder::Visit).into()
}

/// [`template_data`] as an [`Object`] (so callers can add methods, e.g. a legacy `Updated` made
/// with [`legacy_result`]), with the given [`ChangeOrder`].
pub fn template_object(
    namespace: &str,
    name: &str,
    changes: &[FileChange],
    values: Option<&BTreeMap<String, String>>,
    order: ChangeOrder,
) -> Object {
    let values = match values {
        Some(v) => Value::string_map(v.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        None => Value::Map(Map::new().with_type_name("map[string]string")),
    };
    Object::new("source.TemplateData")
        .field("AutomationObject", namespaced_name(namespace, name))
        .field("Changed", result_in(changes, order))
        .field("Values", values)
}

/// An `update.ImageRef` (v1beta1): prints as its `String()`, methods `String`, `Identifier`,
/// `Repository`, `Registry`, `Name`, `Policy`.
pub fn legacy_image_ref(i: &LegacyImage) -> Value {
    Value::Object(
        Object::new("update.ImageRef")
            .method("Identifier", i.identifier.as_str())
            .method("Repository", i.repository.as_str())
            .method("Registry", i.registry.as_str())
            .method("Name", i.name.as_str())
            .method(
                "Policy",
                namespaced_name(&i.policy_namespace, &i.policy_name),
            )
            .display(i.string.as_str()),
    )
}

/// The legacy `.Updated` value (v1beta1 `update.Result{Files map[string]FileResult}` with
/// methods `Images` and `Objects`), for the older templates Flux v1 rejects.
pub fn legacy_result(images: &[(String, ObjectId, LegacyImage)]) -> Value {
    let files = group(images);
    let mut fmap = Map::new().with_type_name("map[string]update.FileResult");
    let mut merged: BTreeMap<&ObjectId, Vec<LegacyImage>> = BTreeMap::new();
    let mut all: Vec<LegacyImage> = Vec::new();
    for (file, objs) in &files {
        for i in objs.values().flatten() {
            if !all.contains(i) {
                all.push(i.clone());
            }
        }
        let om = object_lists(objs, LEGACY_OBJECTS, legacy_image_ref, &mut merged);
        fmap.insert(*file, Object::new("update.FileResult").field("Objects", om));
    }
    let mut objects = Map::new().with_type_name(LEGACY_OBJECTS);
    for (obj, imgs) in merged {
        objects.insert(
            object_identifier(obj),
            Value::List(imgs.iter().map(legacy_image_ref).collect()),
        );
    }
    Value::Object(
        Object::new("update.Result")
            .field("Files", fmap)
            .method(
                "Images",
                Value::List(all.iter().map(legacy_image_ref).collect()),
            )
            .method("Objects", objects),
    )
}

/// The v1beta1 `controllers.TemplateData{AutomationObject, Updated}`.
pub fn legacy_template_data(
    namespace: &str,
    name: &str,
    images: &[(String, ObjectId, LegacyImage)],
) -> Value {
    Value::Object(
        Object::new("controllers.TemplateData")
            .field("AutomationObject", namespaced_name(namespace, name))
            .field("Updated", legacy_result(images)),
    )
}

//! `GET /api/v1/openapi.json`: an OpenAPI 3.0 document. The paths are written here; the
//! schemas are generated from the api-types DTOs with schemars, so they cannot drift
//! from what the handlers serialise.

use api_types::http_api::{
    ApiError, ImagePolicyInfo, ImageRepositoryInfo, List, PolicyEvent, TagPage,
};
use schemars::JsonSchema;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Value, json};

/// Every path the API serves (the OpenAPI document lists exactly these).
pub const PATHS: [&str; 9] = [
    "/api/v1/imagerepositories",
    "/api/v1/namespaces/{namespace}/imagerepositories/{name}",
    "/api/v1/namespaces/{namespace}/imagerepositories/{name}/tags",
    "/api/v1/imagepolicies",
    "/api/v1/namespaces/{namespace}/imagepolicies/{name}",
    "/api/v1/openapi.json",
    "/metrics",
    "/healthz",
    "/readyz",
];

/// The digits a resource version may have: every such number fits in a `u64`.
pub const MAX_VERSION_DIGITS: usize = 19;

/// A Kubernetes namespace (a DNS label).
pub const NAMESPACE_PATTERN: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A Kubernetes object name (a DNS subdomain).
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A `continue` token as the server issues it: `<offset>.<revision prefix>`.
pub const CONTINUE_PATTERN: &str = "^[0-9]{1,19}\\.[0-9A-Za-z]{1,64}$";
/// A resource version: 1 to [`MAX_VERSION_DIGITS`] decimal digits.
pub const VERSION_PATTERN: &str = "^[0-9]{1,19}$";

/// The label selectors the server accepts, as one regular expression (ECMA-262 and Rust
/// `regex` alike). It is exact except for two documented simplifications on the safe side
/// (values it rejects that the server accepts): at most three DNS labels in a key prefix
/// (so a prefix stays within 253 characters), and integers of at most 18 digits after
/// `<` and `>`. White space is Kubernetes' set: space, tab, CR, LF.
pub fn label_selector_pattern() -> String {
    let name = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";
    let dns_label = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";
    let key = format!("({dns_label}(\\.{dns_label}){{0,2}}/)?{name}");
    let value = format!("({name})?");
    let ws = "[ \\t\\r\\n]*";
    let requirement = format!(
        "(!{ws}{key}\
         |{key}[ \\t\\r\\n]+(in|notin){ws}\\({ws}{value}({ws},{ws}{value})*{ws}\\)\
         |{key}{ws}(!=|==|=){ws}{value}\
         |{key}{ws}[<>]{ws}[-+]?[0-9]{{1,18}}\
         |{key})"
    );
    format!("^({ws}|{ws}{requirement}{ws}(,{ws}{requirement}{ws})*)$")
}

/// Builds the document (cheap enough to build per request; it is small).
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.contract = Contract::Serialize)
        .into_generator();
    let mut schema = |f: fn(&mut schemars::SchemaGenerator) -> schemars::Schema| {
        serde_json::to_value(f(&mut generator)).unwrap_or(Value::Null)
    };
    let repo_list = schema(sub::<List<ImageRepositoryInfo>>);
    let repo = schema(sub::<ImageRepositoryInfo>);
    let tags = schema(sub::<TagPage>);
    let policy_list = schema(sub::<List<ImagePolicyInfo>>);
    let policy = schema(sub::<ImagePolicyInfo>);
    let event = schema(sub::<PolicyEvent>);
    let error = schema(sub::<ApiError>);
    let schemas = Value::Object(generator.take_definitions(true));

    let ns = path_param(
        "namespace",
        "The object's namespace.",
        json!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": NAMESPACE_PATTERN}),
    );
    let name = path_param(
        "name",
        "The object's name.",
        json!({"type": "string", "minLength": 1, "maxLength": 253, "pattern": NAME_PATTERN}),
    );
    // Every endpoint can answer these (the request-size and handler-time limits).
    let common = [
        ("413", "RequestEntityTooLarge: a request body over 1 MiB."),
        (
            "503",
            "Timeout: no response within 30 s; on some endpoints also NotReady, LeaderUnknown or LeaderUnavailable.",
        ),
    ];
    let with = |ok: Value, codes: &[(&str, &str)]| {
        let mut map = serde_json::Map::new();
        map.insert("200".into(), ok);
        for (code, description) in codes.iter().chain(&common) {
            map.entry(code.to_string())
                .or_insert_with(|| response(description, &error));
        }
        Value::Object(map)
    };
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "image-reflector API",
            "version": "v1",
            "description": "Read-only view of ImageRepositories, their scanned tags and ImagePolicy results. See docs/http-api.md. Every error is an ApiError with the status repeated in `code`. Query parameters not listed are ignored; an empty value is the same as leaving the parameter out."
        },
        "paths": {
            "/api/v1/imagerepositories": {"get": {
                "operationId": "listImageRepositories",
                "summary": "All ImageRepositories.",
                "responses": with(response("The repositories.", &repo_list), &[]),
            }},
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}": {"get": {
                "operationId": "getImageRepository",
                "parameters": [ns, name],
                "responses": with(response("The repository.", &repo), &[
                    ("404", "NotFound: no such ImageRepository."),
                ]),
            }},
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}/tags": {"get": {
                "operationId": "listImageRepositoryTags",
                "summary": "A page of the stored tags (descending). A replica that is not the leader forwards this request to the leader.",
                "parameters": [ns, name,
                    query_param("limit", "Tags per page, 1 to 1000 (default 100); anything else is a 400.",
                        json!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 1000, "default": 100})),
                    query_param("continue", "The `continue` token of the previous page (opaque). A malformed token is a 400; a token from an older tag list is a 410.",
                        json!({"type": "string", "pattern": CONTINUE_PATTERN}))],
                "responses": with(response("A page of tags.", &tags), &[
                    ("400", "BadRequest: an invalid `limit` or `continue`."),
                    ("404", "NotFound: no tags stored for this ImageRepository (it does not exist or has not been scanned yet)."),
                    ("410", "Expired: the tag list changed since the `continue` token was issued; start again."),
                    ("500", "InternalError: the tag store failed."),
                    ("502", "LeaderUnreachable: this replica could not reach the leader."),
                    ("503", "LeaderUnknown or LeaderUnavailable: the leader is not known or is changing; or Timeout."),
                ]),
            }},
            "/api/v1/imagepolicies": {"get": {
                "operationId": "listImagePolicies",
                "summary": "All ImagePolicy results, or with watch=true a Server-Sent Events stream of changes (each `data:` line one PolicyEvent).",
                "parameters": [
                    query_param("namespace", "Only this namespace (any value; one without policies lists none).",
                        json!({"type": "string"})),
                    query_param("labelSelector", "A Kubernetes label selector, e.g. `team=a,env in (prod,staging),!legacy`: `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1)`, `key`, `!key`, `key>1`, `key<1`, joined by commas. Keys are `[prefix/]name`. Anything else is a 400.",
                        json!({"type": "string", "pattern": label_selector_pattern()})),
                    query_param("watch", "`true`: stream changes as Server-Sent Events instead of listing (`1` and `0` are accepted too). Anything else is a 400.",
                        json!({"type": "boolean", "default": false})),
                    query_param("resourceVersion", "With watch: send the changes after this version (from a list or an event); without it, or with `0`, the current policies come first as Upserted events. A version outside the retained history is a 410. Not a number: a 400 (with or without watch).",
                        json!({"type": "string", "pattern": VERSION_PATTERN})),
                    {"name": "Last-Event-ID", "in": "header", "required": false,
                     "description": "Sent by an EventSource that reconnects: used as `resourceVersion` when that is not given.",
                     "schema": {"type": "string", "pattern": VERSION_PATTERN}},
                ],
                "responses": with(json!({
                    "description": "The policies (or, with watch=true, the event stream).",
                    "content": {
                        "application/json": {"schema": policy_list},
                        "text/event-stream": {"schema": event},
                    }
                }), &[
                    ("400", "BadRequest: an invalid `labelSelector`, `watch`, `resourceVersion` or `Last-Event-ID`."),
                    ("410", "Expired: `resourceVersion` is outside the retained history; list again and watch from the list's resourceVersion."),
                ]),
            }},
            "/api/v1/namespaces/{namespace}/imagepolicies/{name}": {"get": {
                "operationId": "getImagePolicy",
                "parameters": [ns, name],
                "responses": with(response("The policy.", &policy), &[
                    ("404", "NotFound: no such ImagePolicy."),
                ]),
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi",
                "responses": with(json!({"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}), &[]),
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "responses": with(text("Prometheus text exposition format."), &[
                    ("500", "InternalError: the metrics could not be encoded."),
                ]),
            }},
            "/healthz": {"get": {
                "operationId": "healthz",
                "responses": with(text("The process is alive."), &[]),
            }},
            "/readyz": {"get": {
                "operationId": "readyz",
                "responses": with(text("The first sync is done."), &[
                    ("503", "NotReady: the first sync has not finished; or Timeout."),
                ]),
            }},
        },
        "components": {"schemas": schemas},
    })
}

fn sub<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

fn response(description: &str, schema: &Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": schema})
}

/// An optional query parameter; an empty value counts as absent.
fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "allowEmptyValue": true,
           "description": description, "schema": schema})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::selector::LabelSelector;

    #[test]
    fn the_selector_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(&label_selector_pattern()).unwrap();
        for valid in [
            "",
            "  ",
            "app",
            "!app",
            "app=web",
            "app==web",
            "app!=web",
            "app=",
            "app in (a,b)",
            "app notin (a, ,b)",
            "app.kubernetes.io/name=web",
            "a>1,b<-2",
            " team = a , env in ( prod ) , !legacy ",
        ] {
            assert!(pattern.is_match(valid), "pattern refuses {valid:?}");
            assert!(
                valid.parse::<LabelSelector>().is_ok(),
                "parser refuses {valid:?}"
            );
        }
        for invalid in kube_support::selector::INVALID_EXAMPLES {
            assert!(!pattern.is_match(invalid), "pattern accepts {invalid:?}");
            assert!(
                invalid.parse::<LabelSelector>().is_err(),
                "parser accepts {invalid:?}"
            );
        }
    }
}

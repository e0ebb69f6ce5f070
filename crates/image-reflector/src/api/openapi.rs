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

    let ns = param("namespace", "path", true, "The object's namespace.");
    let name = param("name", "path", true, "The object's name.");
    let errors = |codes: &[&str]| {
        codes
            .iter()
            .map(|c| ((*c).to_string(), response("An error.", &error)))
            .collect::<serde_json::Map<_, _>>()
    };
    let with = |ok: Value, codes: &[&str]| {
        let mut map = errors(codes);
        map.insert("200".into(), ok);
        Value::Object(map)
    };
    let text = |description: &str| json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}});

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "image-reflector API",
            "version": "v1",
            "description": "Read-only view of ImageRepositories, their scanned tags and ImagePolicy results. See docs/http-api.md."
        },
        "paths": {
            "/api/v1/imagerepositories": {"get": {
                "operationId": "listImageRepositories",
                "summary": "All ImageRepositories.",
                "responses": with(response("The repositories.", &repo_list), &["500"]),
            }},
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}": {"get": {
                "operationId": "getImageRepository",
                "parameters": [ns, name],
                "responses": with(response("The repository.", &repo), &["404"]),
            }},
            "/api/v1/namespaces/{namespace}/imagerepositories/{name}/tags": {"get": {
                "operationId": "listImageRepositoryTags",
                "summary": "A page of the stored tags (descending). A replica that is not the leader forwards this request to the leader.",
                "parameters": [ns, name,
                    param("limit", "query", false, "Tags per page: 1 to 1000 (larger values are clamped), default 100."),
                    param("continue", "query", false, "The `continue` token of the previous page.")],
                "responses": with(response("A page of tags.", &tags), &["400", "404", "410", "502", "503"]),
            }},
            "/api/v1/imagepolicies": {"get": {
                "operationId": "listImagePolicies",
                "summary": "All ImagePolicy results, or with watch=true a Server-Sent Events stream of changes (each `data:` line one PolicyEvent).",
                "parameters": [
                    param("namespace", "query", false, "Only this namespace."),
                    param("labelSelector", "query", false, "A Kubernetes label selector, e.g. `team=a,env in (prod,staging),!legacy`."),
                    param("watch", "query", false, "`true`: stream changes as Server-Sent Events instead of listing."),
                    param("resourceVersion", "query", false, "With watch: send the changes after this version (from a list or an event); without it, the current policies come first as Upserted events."),
                ],
                "responses": with(json!({
                    "description": "The policies (or, with watch=true, the event stream).",
                    "content": {
                        "application/json": {"schema": policy_list},
                        "text/event-stream": {"schema": event},
                    }
                }), &["400", "410"]),
            }},
            "/api/v1/namespaces/{namespace}/imagepolicies/{name}": {"get": {
                "operationId": "getImagePolicy",
                "parameters": [ns, name],
                "responses": with(response("The policy.", &policy), &["404"]),
            }},
            "/api/v1/openapi.json": {"get": {
                "operationId": "openapi",
                "responses": {"200": {"description": "This document.", "content": {"application/json": {}}}},
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "responses": {"200": text("Prometheus text exposition format.")},
            }},
            "/healthz": {"get": {
                "operationId": "healthz",
                "responses": {"200": text("The process is alive.")},
            }},
            "/readyz": {"get": {
                "operationId": "readyz",
                "responses": with(text("The first sync is done."), &["503"]),
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

fn param(name: &str, location: &str, required: bool, description: &str) -> Value {
    json!({"name": name, "in": location, "required": required, "description": description,
           "schema": {"type": "string"}})
}

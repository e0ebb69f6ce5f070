//! A contract test of the HTTP API against its own OpenAPI document: requests are
//! generated from `/api/v1/openapi.json` as served (property-based, proptest), sent to the
//! real server over HTTP, and every answer is checked against the document.
//!
//! - Schema-valid requests (every parameter valid per its schema) are never refused: no
//!   400 and no 5xx; the status is one the operation documents.
//! - Requests with exactly one schema-invalid query or header parameter are refused with a
//!   documented 4xx; a 400 names the parameter.
//! - Every body matches the schema documented for its status and content type (JSON
//!   bodies, and the `data:` lines of the Server-Sent Events feed).
//!
//! The validator below covers the JSON Schema subset the document uses (what schemars
//! generates for the DTOs plus the parameters' `pattern`, `minimum`, `maximum`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api_common::{policy, repository};
use image_reflector::metrics::Metrics;
use image_reflector::registry::{ExclusionList, ScanResult};
use image_reflector::state::ApiState;
use image_reflector::store::{MemoryTagStore, RepoKey, TagStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

const NAMESPACE: &str = "team-a";
const REPOSITORY: &str = "api";
const POLICY: &str = "app";
const CASES: u32 = 96;

/// One generated request: path parameters, query parameters and headers, and which one (if
/// any) was generated schema-invalid.
#[derive(Debug, Clone)]
struct Generated {
    path: Vec<(String, String)>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    invalid: Option<(String, String)>,
}

#[test]
fn generated_requests_get_documented_answers() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(start_server());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let document: Value = runtime.block_on(async {
        http.get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let paths = document["paths"].as_object().unwrap();
    assert_eq!(paths.len(), image_reflector::api::openapi::PATHS.len());

    let checked = RefCell::new(BTreeMap::<String, BTreeMap<u16, usize>>::new());
    for (path, item) in paths {
        let operation = &item["get"];
        let parameters: Vec<Value> = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for invalid_side in [false, true] {
            let strategy = request_strategy(&parameters, invalid_side);
            let Some(strategy) = strategy else { continue };
            let mut runner = TestRunner::new(Config {
                cases: CASES,
                failure_persistence: None,
                ..Config::default()
            });
            let result = runner.run(&strategy, |generated| {
                let status = runtime
                    .block_on(check(&http, &base, &document, path, operation, &generated))?;
                *checked
                    .borrow_mut()
                    .entry(path.clone())
                    .or_default()
                    .entry(status)
                    .or_default() += 1;
                Ok(())
            });
            if let Err(e) = result {
                panic!(
                    "{path} ({}): {e}",
                    if invalid_side { "invalid" } else { "valid" }
                );
            }
        }
    }
    // The generated requests reached the interesting answers, not only 404s and 400s.
    let checked = checked.into_inner();
    let seen = |path: &str, status: u16| checked.get(path).is_some_and(|s| s.contains_key(&status));
    let tags = "/api/v1/namespaces/{namespace}/imagerepositories/{name}/tags";
    for (path, status) in [
        (tags, 200),
        (tags, 400),
        (tags, 404),
        ("/api/v1/imagepolicies", 200),
        ("/api/v1/imagepolicies", 400),
        ("/api/v1/namespaces/{namespace}/imagepolicies/{name}", 200),
        ("/api/v1/namespaces/{namespace}/imagepolicies/{name}", 404),
    ] {
        assert!(
            seen(path, status),
            "{path}: never answered {status}: {checked:?}"
        );
    }
}

/// The limit and version checks the document declares, named explicitly.
#[tokio::test]
async fn out_of_range_values_are_refused_with_the_documented_message() {
    let base = start_server().await;
    let http = reqwest::Client::new();
    let tags = format!("{base}/api/v1/namespaces/{NAMESPACE}/imagerepositories/{REPOSITORY}/tags");
    for (url, needle) in [
        (
            format!("{tags}?limit=0"),
            "limit must be an integer from 1 to 1000, got '0'",
        ),
        (
            format!("{tags}?limit=1001"),
            "limit must be an integer from 1 to 1000, got '1001'",
        ),
        (
            format!("{tags}?limit=ten"),
            "limit must be an integer from 1 to 1000, got 'ten'",
        ),
        (
            format!("{base}/api/v1/imagepolicies?watch=yes"),
            "watch must be true or false, got 'yes'",
        ),
        (
            format!("{base}/api/v1/imagepolicies?resourceVersion=12a"),
            "resourceVersion must be a decimal number of 1 to 19 digits, got '12a'",
        ),
        (
            format!("{base}/api/v1/imagepolicies?labelSelector=a%20in%20(b"),
            "invalid label selector",
        ),
    ] {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 400);
        assert_eq!(body["reason"], "BadRequest");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{url}: {message}");
    }
    for limit in ["1", "1000"] {
        let response = http
            .get(format!("{tags}?limit={limit}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "limit={limit}");
    }
}

async fn start_server() -> String {
    let store = Arc::new(MemoryTagStore::new());
    let tags: Vec<String> = (0..1500).map(|i| format!("1.{i}.0")).collect();
    let scan = ScanResult::new(
        "registry.example.com/api",
        tags,
        &ExclusionList::default(),
        SystemTime::now(),
    );
    store
        .put(&RepoKey::new(NAMESPACE, REPOSITORY), &scan)
        .unwrap();
    let state = ApiState::new(store);
    state.upsert_repository(repository(NAMESPACE, REPOSITORY));
    state.upsert_policy(policy(
        NAMESPACE,
        POLICY,
        "1.2.3",
        &[("team", "a"), ("env", "prod")],
    ));
    state.upsert_policy(policy("team-b", "web", "2.0.0", &[("team", "b")]));
    state.set_ready(true);
    api_common::start(state, Metrics::new().unwrap()).await
}

/// Requests for an operation: all valid (`invalid_side` false), or exactly one query or
/// header parameter invalid; `None` when no parameter has invalid values.
fn request_strategy(parameters: &[Value], invalid_side: bool) -> Option<BoxedStrategy<Generated>> {
    let mut valid: Vec<BoxedStrategy<(String, String, Option<String>)>> = Vec::new();
    let mut invalid: Vec<(String, String, BoxedStrategy<String>)> = Vec::new();
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap().to_string();
        let location = parameter["in"].as_str().unwrap().to_string();
        let schema = &parameter["schema"];
        let required = parameter["required"].as_bool().unwrap_or(false);
        let values = valid_values(&name, schema);
        let (n, l) = (name.clone(), location.clone());
        valid.push(if required {
            values
                .prop_map(move |v| (n.clone(), l.clone(), Some(v)))
                .boxed()
        } else {
            proptest::option::of(values)
                .prop_map(move |v| (n.clone(), l.clone(), v))
                .boxed()
        });
        if location != "path"
            && let Some(bad) = invalid_values(schema, location == "header")
        {
            invalid.push((name, location, bad));
        }
    }
    let all_valid = valid.into_iter().collect::<Vec<_>>();
    let assemble = |values: Vec<(String, String, Option<String>)>| {
        let mut generated = Generated {
            path: Vec::new(),
            query: Vec::new(),
            headers: Vec::new(),
            invalid: None,
        };
        for (name, location, value) in values {
            let Some(value) = value else { continue };
            match location.as_str() {
                "path" => generated.path.push((name, value)),
                "query" => generated.query.push((name, value)),
                _ => generated.headers.push((name, value)),
            }
        }
        generated
    };
    if !invalid_side {
        return Some(all_valid.prop_map(assemble).boxed());
    }
    if invalid.is_empty() {
        return None;
    }
    let choices: Vec<BoxedStrategy<Generated>> = invalid
        .into_iter()
        .map(|(name, location, bad)| {
            let others = all_valid.clone();
            (others, bad)
                .prop_map(move |(values, bad)| {
                    let values = values
                        .into_iter()
                        .filter(|(n, l, _)| !(n == &name && l == &location))
                        .collect();
                    let mut generated = assemble(values);
                    match location.as_str() {
                        "query" => generated.query.push((name.clone(), bad.clone())),
                        _ => generated.headers.push((name.clone(), bad.clone())),
                    }
                    generated.invalid = Some((name.clone(), bad));
                    generated
                })
                .boxed()
        })
        .collect();
    Some(proptest::strategy::Union::new(choices).boxed())
}

/// Schema-valid values; the names of existing objects come up often so that requests
/// reach found objects, not only 404s.
fn valid_values(name: &str, schema: &Value) -> BoxedStrategy<String> {
    let known: &[&str] = match name {
        "namespace" => &[NAMESPACE, "team-b"],
        "name" => &[REPOSITORY, POLICY],
        "labelSelector" => &["team=a", "env in (prod,dev)", "!legacy", "team!=b,env"],
        "continue" => &[],
        _ => &[],
    };
    let generated: BoxedStrategy<String> = match schema["type"].as_str().unwrap() {
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(i64::from(i32::MIN));
            let max = schema["maximum"].as_i64().unwrap_or(i64::from(i32::MAX));
            (min..=max).prop_map(|n| n.to_string()).boxed()
        }
        "boolean" => prop_oneof![Just("true".to_string()), Just("false".to_string())].boxed(),
        "string" => match schema["pattern"].as_str() {
            Some(pattern) => {
                let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX) as usize;
                let body = pattern.trim_start_matches('^').trim_end_matches('$');
                proptest::string::string_regex(body)
                    .unwrap()
                    .prop_filter("maxLength", move |s| s.chars().count() <= max)
                    .boxed()
            }
            None => "\\PC{0,24}".boxed(),
        },
        other => panic!("parameter {name}: unsupported type {other}"),
    };
    if known.is_empty() {
        generated
    } else {
        let known: Vec<String> = known.iter().map(|s| (*s).to_string()).collect();
        prop_oneof![3 => proptest::sample::select(known), 1 => generated].boxed()
    }
}

/// Non-empty values the schema rejects (for a header, visible ASCII without spaces, which
/// the server's header parsing leaves unchanged); `None` if every string is valid.
fn invalid_values(schema: &Value, header: bool) -> Option<BoxedStrategy<String>> {
    match schema["type"].as_str().unwrap() {
        "integer" => {
            let min = schema["minimum"].as_i64().unwrap_or(i64::MIN);
            let max = schema["maximum"].as_i64().unwrap_or(i64::MAX);
            Some(
                prop_oneof![
                    (i64::MIN..min).prop_map(|n| n.to_string()),
                    (max.saturating_add(1)..=i64::MAX).prop_map(|n| n.to_string()),
                    "[a-z]{1,6}",
                    "[1-9]\\.[0-9]",
                ]
                .boxed(),
            )
        }
        "boolean" => Some(
            "[a-z2-9]{1,8}"
                .prop_filter("not a boolean", |s| s != "true" && s != "false")
                .boxed(),
        ),
        "string" => {
            let pattern = regex::Regex::new(schema["pattern"].as_str()?).unwrap();
            let text: BoxedStrategy<String> = if header {
                "[!-~]{1,30}".boxed()
            } else {
                prop_oneof!["\\PC{1,30}", "[!-~]{1,30}"].boxed()
            };
            Some(
                text.prop_filter("schema-invalid", move |s| !pattern.is_match(s))
                    .boxed(),
            )
        }
        _ => None,
    }
}

/// Sends `generated` and checks the answer against the document; the status.
async fn check(
    http: &reqwest::Client,
    base: &str,
    document: &Value,
    path: &str,
    operation: &Value,
    generated: &Generated,
) -> Result<u16, TestCaseError> {
    let mut url = reqwest::Url::parse(base).unwrap();
    {
        let mut segments = url.path_segments_mut().unwrap();
        segments.pop_if_empty();
        for segment in path.trim_start_matches('/').split('/') {
            let value = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .map(|name| {
                    generated
                        .path
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap()
                });
            segments.push(value.unwrap_or(segment));
        }
    }
    if !generated.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &generated.query {
            pairs.append_pair(name, value);
        }
    }
    let mut request = http.get(url.clone());
    for (name, value) in &generated.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let context = format!("GET {url} {generated:?} -> {status} {content_type}");
    let body = if content_type == "text/event-stream" {
        // An endless stream: the first chunk (the backlog) is enough.
        match tokio::time::timeout(Duration::from_millis(300), response.chunk()).await {
            Ok(Ok(Some(chunk))) => String::from_utf8_lossy(&chunk).into_owned(),
            _ => String::new(),
        }
    } else {
        response
            .text()
            .await
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?
    };

    prop_assert!(status < 500, "{context}: server error: {body}");
    let documented = &operation["responses"][status.to_string()];
    prop_assert!(
        documented.is_object(),
        "{context}: status not documented: {body}"
    );
    let schema = &documented["content"][content_type.as_str()]["schema"];
    prop_assert!(
        !schema.is_null(),
        "{context}: content type not documented for this status: {body}"
    );
    match content_type.as_str() {
        "application/json" => {
            let value: Value = serde_json::from_str(&body)
                .map_err(|e| TestCaseError::fail(format!("{context}: not JSON ({e}): {body}")))?;
            let mut errors = Vec::new();
            validate(document, schema, &value, "$", &mut errors);
            prop_assert!(errors.is_empty(), "{context}: {errors:?}\n{body}");
        }
        "text/event-stream" => {
            for data in body.lines().filter_map(|l| l.strip_prefix("data:")) {
                let value: Value = serde_json::from_str(data.trim())
                    .map_err(|e| TestCaseError::fail(format!("{context}: event not JSON ({e})")))?;
                let mut errors = Vec::new();
                validate(document, schema, &value, "$", &mut errors);
                prop_assert!(errors.is_empty(), "{context}: {errors:?}\n{data}");
            }
        }
        _ => prop_assert!(schema["type"] == "string", "{context}"),
    }
    match &generated.invalid {
        None => prop_assert!(
            status != 400,
            "{context}: a schema-valid request was refused: {body}"
        ),
        Some((name, _)) => {
            prop_assert!(
                (400..500).contains(&status),
                "{context}: a schema-invalid {name} was accepted"
            );
            if status == 400 {
                prop_assert!(
                    body.contains(name.as_str()),
                    "{context}: the error does not name {name}: {body}"
                );
            }
        }
    }
    Ok(status)
}

/// Checks `value` against `schema` (the JSON Schema subset OpenAPI 3.0 documents use),
/// collecting what does not match.
fn validate(document: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
        let target = &document["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {reference}");
        return validate(document, target, value, at, errors);
    }
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(all) = schema["allOf"].as_array() {
        for sub in all {
            validate(document, sub, value, at, errors);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let matching = alternatives
                .iter()
                .filter(|sub| {
                    let mut e = Vec::new();
                    validate(document, sub, value, at, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if key == "oneOf" {
                matching == 1
            } else {
                matching >= 1
            };
            if !ok {
                errors.push(format!("{at}: {matching} of the {key} alternatives match"));
            }
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        errors.push(format!("{at}: {value} is not of type {types:?}"));
        return;
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            errors.push(format!("{at}: {n} is below the minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            errors.push(format!("{at}: {n} is above the maximum"));
        }
        let unsigned = schema["format"]
            .as_str()
            .is_some_and(|f| f.starts_with("uint"));
        if unsigned && value.as_u64().is_none() {
            errors.push(format!("{at}: {value} is not an unsigned integer"));
        }
    }
    if let Some(s) = value.as_str() {
        if let Some(pattern) = schema["pattern"].as_str()
            && !regex::Regex::new(pattern).unwrap().is_match(s)
        {
            errors.push(format!("{at}: {s:?} does not match {pattern}"));
        }
        let length = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|max| length > max)
            || schema["minLength"].as_u64().is_some_and(|min| length < min)
        {
            errors.push(format!("{at}: {s:?} has the wrong length"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                errors.push(format!("{at}: missing required {key}"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, item) in object {
            let at = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => validate(document, sub, item, &at, errors),
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => errors.push(format!("{at}: not in the schema")),
                    sub @ Value::Object(_) => validate(document, sub, item, &at, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(document, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

fn has_type(value: &Value, type_: &str) -> bool {
    match type_ {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unsupported type {other}"),
    }
}

//! Fuzz targets: one function per parser that reads untrusted input. Each takes any bytes and
//! must return without panicking, hanging or exhausting memory; some also check a property
//! that must hold for every input (a round trip, idempotence, no secret in an error).
//!
//! The same functions are run two ways:
//! - `cargo test -p fuzz-targets` replays the checked-in corpus (`corpus/<target>/`), so every
//!   input that once crashed stays a regression test (part of `make test`);
//! - `make fuzz` runs them coverage-guided with libFuzzer (`fuzz/`, through `cargo fuzz`).
//!
//! There is no webhook receiver in this project (image automation is triggered by watches and
//! the reflector API, not by webhooks), so the HTTP inputs fuzzed are the reflector API's:
//! paths, query parameters and label selectors.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use api_types::ImageRef;
use api_types::http_api::{ImagePolicyInfo, ImageRepositoryInfo, Readiness};
use api_types::meta::NamespacedObjectReference;
use go_template::{Limits, Template};
use image_automation::setters::{Setters, rewrite};
use image_reflector::api::selector::LabelSelector;
use image_reflector::policy::semver::{Constraint, Version};
use image_reflector::reference::ImageReference;
use image_reflector::registry::challenge::{parse_challenges, preferred};
use image_reflector::registry::client::{TokenResponse, parse_tags_page};
use image_reflector::registry::link::{next_link, resolve_next};
use image_reflector::registry::{ExclusionList, Keychain, ScanResult, SecretData};
use image_reflector::state::ApiState;
use image_reflector::store::{MemoryTagStore, RepoKey, TagStore};

/// A target: takes any bytes.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its corpus directory and of its `cargo fuzz` binary).
pub const TARGETS: &[(&str, Target)] = &[
    ("setters_rewrite", setters_rewrite),
    ("semver_range", semver_range),
    ("go_template", go_template),
    ("image_reference", image_reference),
    ("registry_link", registry_link),
    ("registry_json", registry_json),
    ("dockerconfigjson", dockerconfigjson),
    ("api_selector", api_selector),
    ("api_request", api_request),
];

/// The policies the setters target rewrites markers with.
fn setters() -> &'static Setters {
    static SETTERS: OnceLock<Setters> = OnceLock::new();
    SETTERS.get_or_init(|| {
        let mut s = Setters::new("flux-system");
        let images = [
            ("app", "ghcr.io/team/app", "v1.2.3", None),
            (
                "pinned",
                "registry.example.com:5000/a/b",
                "1.0",
                Some("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            ),
            ("odd", "nginx", "1.25-alpine", None),
        ];
        for (policy, name, tag, digest) in images {
            let image = ImageRef {
                name: name.into(),
                tag: tag.into(),
                digest: digest.map(str::to_owned),
            };
            // The images above are valid; a failure here would fail every target run.
            let _ = s.add(policy, Some(image));
        }
        let _ = s.add("pending", None);
        s
    })
}

/// The marker/setters rewrite of one YAML file. Property: rewriting is idempotent (the
/// rewritten text has nothing left to change).
pub fn setters_rewrite(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let first = rewrite("fuzz.yaml", text, setters());
    if let Some(output) = &first.output {
        let second = rewrite("fuzz.yaml", output, setters());
        assert!(
            second.output.is_none(),
            "rewriting is not idempotent:\ninput: {text:?}\nfirst: {output:?}\nsecond: {:?}",
            second.output
        );
    }
}

/// Masterminds constraints and versions. Properties: a version equals itself in precedence;
/// matching never panics.
pub fn semver_range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the range, the rest are versions to match.
    let mut lines = text.lines();
    let range = lines.next().unwrap_or_default();
    let constraint = Constraint::parse(range).ok();
    for line in lines.chain(std::iter::once(range)) {
        for version in [Version::parse_tag(line), Version::parse_loose(line)]
            .into_iter()
            .flatten()
        {
            assert_eq!(
                version.precedence(&version),
                std::cmp::Ordering::Equal,
                "{line:?}"
            );
            if let Some(c) = &constraint {
                let _ = c.matches(&version);
            }
        }
    }
}

/// Limits smaller than the defaults, so that each input runs in milliseconds.
const FUZZ_LIMITS: Limits = Limits {
    max_output_bytes: 64 * 1024,
    max_value_bytes: 1024 * 1024,
    max_allocated_bytes: 8 * 1024 * 1024,
    max_steps: 20_000,
    max_duration: Duration::from_secs(2),
    max_template_depth: 100,
};

fn template_data() -> &'static go_template::Value {
    static DATA: OnceLock<go_template::Value> = OnceLock::new();
    DATA.get_or_init(|| {
        use image_automation::template_data::{
            self as flux, Change, ChangeOrder, FileChange, ObjectId,
        };
        let changes = [
            ("deploy.yaml", "Deployment", "web"),
            ("app/k.yaml", "Kustomization", "k"),
        ]
        .iter()
        .map(|(file, kind, name)| FileChange {
            file: (*file).into(),
            object: ObjectId {
                api_version: "apps/v1".into(),
                kind: (*kind).into(),
                name: (*name).into(),
                namespace: "ns".into(),
            },
            change: Change {
                old_value: "ghcr.io/team/app:v1.0.0".into(),
                new_value: "ghcr.io/team/app:v1.2.3".into(),
                setter: "flux-system:app".into(),
            },
        })
        .collect::<Vec<_>>();
        let values = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        flux::template_object(
            "flux-system",
            "auto",
            &changes,
            Some(&values),
            ChangeOrder::Sorted,
        )
        .into()
    })
}

/// Go template parse and execute over Flux's data, within limits. Property: output never
/// exceeds the output limit.
pub fn go_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse("commit message", text) else {
        return;
    };
    if let Ok(out) = template.execute_with(template_data(), &FUZZ_LIMITS) {
        assert!(out.len() <= FUZZ_LIMITS.max_output_bytes);
    }
}

/// Image references (`spec.image`). Property: a parsed reference's canonical name parses to
/// itself, unless Docker Hub's implicit `library/` took the repository past 255 characters
/// (go-containerregistry checks the length before adding it, too).
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for insecure in [false, true] {
        let Ok(reference) = ImageReference::parse(text, insecure) else {
            continue;
        };
        let canonical = reference.canonical_name();
        if reference.repository().len() > 255 {
            continue;
        }
        let again = ImageReference::parse(&canonical, insecure)
            .unwrap_or_else(|e| panic!("canonical name {canonical:?} of {text:?} fails: {e}"));
        assert_eq!(again.canonical_name(), canonical, "{text:?}");
        let _ = (
            reference.registry(),
            reference.repository(),
            reference.schemes(),
        );
    }
}

/// `Link` and `WWW-Authenticate` headers. Property: a followed next link stays on the
/// request's origin.
pub fn registry_link(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let challenges = parse_challenges(header);
    let _ = preferred(&challenges);
    if let Some(link) = next_link(header) {
        let Ok(base) =
            reqwest::Url::parse("https://registry.example.com/v2/team/app/tags/list?n=100")
        else {
            return;
        };
        if let Ok(next) = resolve_next(&base, &link) {
            assert_eq!(next.origin(), base.origin(), "{link:?} left the origin");
        }
    }
}

/// `tags/list` and token answers. Property: none (no panic, bounded memory).
pub fn registry_json(data: &[u8]) {
    if let Some(tags) = parse_tags_page(data, 10_000) {
        let scan = ScanResult::new(
            "registry.example.com/app".to_owned(),
            tags,
            &ExclusionList::default(),
            SystemTime::UNIX_EPOCH,
        );
        let _ = scan;
    }
    let _ = serde_json::from_slice::<TokenResponse>(data);
}

/// Pull secrets (`.dockerconfigjson`). Property: an error never quotes a string value of the
/// secret (passwords, tokens, `auth` fields); registry names (keys) may be quoted.
pub fn dockerconfigjson(data: &[u8]) {
    let secret = SecretData::docker_config_json("pull-secret", data.to_vec());
    match Keychain::from_pull_secrets(&[secret]) {
        Ok(keychain) => {
            for image in [
                "ghcr.io/team/app",
                "docker.io/library/nginx",
                "localhost:5000/x",
            ] {
                if let Ok(reference) = ImageReference::parse(image, false) {
                    let _ = keychain.resolve(&reference);
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            let (keys, values) = json_strings(data);
            for value in values {
                // A value that is also part of a registry name is quoted as the name.
                if value.len() < 6 || keys.iter().any(|k| k.contains(&value)) {
                    continue;
                }
                assert!(
                    !message.contains(&value),
                    "the error quotes a secret value {value:?}: {message}"
                );
            }
        }
    }
}

/// The object keys and the string values of a JSON document, if it is one.
fn json_strings(data: &[u8]) -> (Vec<String>, Vec<String>) {
    fn walk(v: &serde_json::Value, keys: &mut Vec<String>, values: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => values.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, keys, values)),
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    keys.push(k.clone());
                    walk(x, keys, values);
                }
            }
            _ => {}
        }
    }
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        walk(&v, &mut keys, &mut values);
    }
    (keys, values)
}

/// Label selectors (`labelSelector=`). Property: a parsed selector prints to one that parses
/// and matches the same labels.
pub fn api_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = LabelSelector::from_str(text) else {
        return;
    };
    let printed = selector.to_string();
    let again = LabelSelector::from_str(&printed)
        .unwrap_or_else(|e| panic!("{text:?} prints as {printed:?}, which fails: {e}"));
    let label_sets = [
        BTreeMap::new(),
        BTreeMap::from([("app".to_owned(), "web".to_owned())]),
        BTreeMap::from([
            ("tier".to_owned(), "2".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]),
    ];
    for labels in &label_sets {
        assert_eq!(
            selector.matches(labels),
            again.matches(labels),
            "{text:?} vs {printed:?}"
        );
    }
}

struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
}

/// One router over a state with a repository, its tags and two policies.
fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let store = Arc::new(MemoryTagStore::new());
        let scan = ScanResult::new(
            "registry.example.com/app".to_owned(),
            ["1.0.0", "1.1.0", "v2.0.0-rc.1", "latest"]
                .map(str::to_owned)
                .to_vec(),
            &ExclusionList::default(),
            SystemTime::UNIX_EPOCH,
        );
        store.put(&RepoKey::new("ns", "app"), &scan).ok()?;
        let state = ApiState::new(store);
        state.upsert_repository(ImageRepositoryInfo {
            namespace: "ns".into(),
            name: "app".into(),
            image: "registry.example.com/app".into(),
            canonical_image_name: Some("registry.example.com/app".into()),
            tag_count: 4,
            readiness: Readiness {
                ready: true,
                reason: "Succeeded".into(),
                message: "successful scan: found 4 tags".into(),
                observed_generation: Some(1),
            },
            ..Default::default()
        });
        for (name, labels) in [("app", [("app", "web")]), ("other", [("tier", "2")])] {
            state.upsert_policy(ImagePolicyInfo {
                namespace: "ns".into(),
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                image_repository_ref: NamespacedObjectReference {
                    name: "app".into(),
                    namespace: None,
                },
                latest_ref: Some(ImageRef {
                    name: "registry.example.com/app".into(),
                    tag: "1.1.0".into(),
                    digest: None,
                }),
                observed_previous_ref: None,
                readiness: Readiness::default(),
            });
        }
        state.set_ready(true);
        let metrics = image_reflector::metrics::Metrics::new().ok()?;
        let router = runtime.block_on(async { image_reflector::api::router(state, metrics) });
        Some(Api { runtime, router })
    })
    .as_ref()
}

/// The reflector API over any request line: the first line is `METHOD PATH?QUERY`. Property:
/// no server error (5xx other than 503), and JSON answers are JSON.
pub fn api_request(data: &[u8]) {
    use tower::ServiceExt as _;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = text.lines().next().unwrap_or_default();
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let Ok(method) = axum::http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    // HEAD answers carry a GET's headers without its body.
    let has_body = method != axum::http::Method::HEAD;
    let Ok(request) = axum::http::Request::builder()
        .method(method)
        .uri(target)
        .body(axum::body::Body::empty())
    else {
        return;
    };
    let Some(api) = api() else {
        return;
    };
    let router = api.router.clone();
    api.runtime.block_on(async move {
        let Ok(response) = router.oneshot(request).await;
        let status = response.status();
        assert!(
            !status.is_server_error() || status == axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{line:?} answered {status}"
        );
        let is_json = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json && has_body {
            let body = tokio::time::timeout(
                Duration::from_secs(5),
                axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024),
            )
            .await;
            if let Ok(Ok(body)) = body {
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                    "{line:?}: the JSON answer does not parse"
                );
            }
        }
    });
}

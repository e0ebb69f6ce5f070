//! The testbed's registry is a real `docker-registry`: thousands of tags go in and come
//! back through `/v2/<repo>/tags/list` in every auth mode, each mode rejects what it should,
//! and multi-arch indexes and single-tag deletes behave as on a production registry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::collections::BTreeSet;
use std::time::Instant;

use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;
use testbed::registry::{Registry, RegistryOptions, TOKEN_SERVICE, media_type};

/// The issue asks for 3,000+ tags.
const TAG_COUNT: usize = 3_100;

fn tags() -> Vec<String> {
    (0..TAG_COUNT)
        .map(|i| format!("1.{}.{}", i / 100, i % 100))
        .collect()
}

/// Pushes [`TAG_COUNT`] tags and asserts the registry lists exactly them.
async fn push_and_list(registry: &Registry, repo: &str) {
    let tags = tags();
    let started = Instant::now();
    let digest = registry.push_tags(repo, &tags).await.unwrap();
    let pushed = started.elapsed();
    let listed: BTreeSet<String> = registry
        .list_tags(repo)
        .await
        .unwrap()
        .into_iter()
        .collect();
    eprintln!(
        "{:?}: pushed {TAG_COUNT} tags in {pushed:?}, listed in {:?}",
        registry.options(),
        started.elapsed() - pushed
    );
    assert_eq!(listed, tags.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(
        registry
            .manifest_digest(repo, &tags[TAG_COUNT - 1])
            .await
            .unwrap(),
        digest
    );
}

async fn get(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .expect("a challenge")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_registry_lists_thousands_of_tags() {
    let registry = Registry::start(RegistryOptions::anonymous()).await.unwrap();
    assert!(registry.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(registry.username(), None);
    assert_eq!(registry.docker_config_json(), r#"{"auths":{}}"#);

    let response = get(
        &registry.http_client(),
        &format!("{}/v2/", registry.base_url()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    push_and_list(&registry, "team/app").await;
    // Distribution 2.8 ignores `n` on tags/list: one page, no `Link`. Pagination must be
    // tested elsewhere.
    let page = get(
        &registry.http_client(),
        &format!("{}/v2/team/app/tags/list?n=10", registry.base_url()),
    )
    .await;
    assert!(page.headers().get("link").is_none());
    let page: serde_json::Value = page.json().await.unwrap();
    assert_eq!(page["tags"].as_array().unwrap().len(), TAG_COUNT);
}

#[tokio::test(flavor = "multi_thread")]
async fn htpasswd_registry_requires_basic_auth() {
    let registry = Registry::start(RegistryOptions::htpasswd()).await.unwrap();
    let client = registry.http_client();
    let tags_url = format!("{}/v2/team/app/tags/list", registry.base_url());

    let anonymous = get(&client, &format!("{}/v2/", registry.base_url())).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&anonymous).starts_with("Basic realm="),
        "{}",
        challenge(&anonymous)
    );
    let wrong = client
        .get(&tags_url)
        .basic_auth("testbed", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    push_and_list(&registry, "team/app").await;

    // The dockerconfigjson credentials are the ones the registry accepts.
    let config: serde_json::Value = serde_json::from_str(&registry.docker_config_json()).unwrap();
    let entry = &config["auths"][registry.host()];
    assert_eq!(entry["username"], registry.username().unwrap());
    let ok = client
        .get(&tags_url)
        .basic_auth(
            entry["username"].as_str().unwrap(),
            entry["password"].as_str(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_registry_uses_bearer_tokens_from_our_issuer() {
    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    let client = registry.http_client();
    let realm = registry.token_realm().unwrap();

    let anonymous = get(
        &client,
        &format!("{}/v2/team/app/tags/list", registry.base_url()),
    )
    .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bearer = challenge(&anonymous);
    assert!(
        bearer.starts_with(&format!("Bearer realm=\"{realm}\"")),
        "{bearer}"
    );
    assert!(
        bearer.contains("scope=\"repository:team/app:pull\""),
        "{bearer}"
    );

    let scope = format!("service={TOKEN_SERVICE}&scope=repository:team/app:pull");
    let wrong = client
        .get(format!("{realm}?{scope}"))
        .basic_auth("testbed", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let none = get(&client, &format!("{realm}?{scope}")).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(registry.tokens_issued(), 0);

    push_and_list(&registry, "team/app").await;
    // A pull token, then a pull+push token; every other request reused the cached one.
    let issued = registry.tokens_issued();
    assert!(
        (1..=3).contains(&issued),
        "{issued} tokens for one repository"
    );

    // A token from the issuer, used by hand, is accepted by the registry for its scope only.
    let token: serde_json::Value = client
        .get(format!("{realm}?{scope}"))
        .basic_auth(registry.username().unwrap(), registry.password())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 300);
    let token = token["token"].as_str().unwrap();
    let listed = client
        .get(format!("{}/v2/team/app/tags/list", registry.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let other = client
        .get(format!("{}/v2/team/other/tags/list", registry.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_registry_with_htpasswd_needs_the_ca() {
    let registry = Registry::start(RegistryOptions::htpasswd().with_tls())
        .await
        .unwrap();
    assert!(registry.base_url().starts_with("https://127.0.0.1:"));
    let ca = std::fs::read_to_string(registry.ca_cert().unwrap()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let untrusting = reqwest::Client::new()
        .get(format!("{}/v2/", registry.base_url()))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA connected: {untrusting:?}"
    );
    let plain_http = reqwest::Client::new()
        .get(format!("http://{}/v2/", registry.host()))
        .send()
        .await
        .unwrap();
    assert_eq!(plain_http.status(), StatusCode::BAD_REQUEST);

    let anonymous = get(
        &registry.http_client(),
        &format!("{}/v2/", registry.base_url()),
    )
    .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&anonymous).starts_with("Basic realm="));

    push_and_list(&registry, "team/app").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn index_digests_and_single_tag_deletes() {
    let registry = Registry::start(RegistryOptions::token()).await.unwrap();
    let repo = "team/multi";
    let a = registry.push_image(repo, "a").await.unwrap();
    let b = registry.push_image(repo, "b").await.unwrap();
    assert_ne!(a, b, "push_image manifests are unique per tag");
    let index = registry
        .push_index(repo, "multi", &[("linux", "amd64"), ("linux", "arm64")])
        .await
        .unwrap();

    assert_eq!(
        registry.manifest_digest(repo, "multi").await.unwrap(),
        index
    );
    assert_eq!(registry.manifest_digest(repo, "a").await.unwrap(), a);

    // Fetched as an index, it is the OCI index we pushed, listing both platforms.
    let response = registry
        .http_client()
        .get(format!("{}/v2/{repo}/manifests/multi", registry.base_url()))
        .bearer_auth(token(&registry, repo).await)
        .header("accept", media_type::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], media_type::OCI_INDEX);
    let body: serde_json::Value = response.json().await.unwrap();
    let platforms: Vec<&str> = body["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["amd64", "arm64"]);

    registry.delete_tag(repo, "a").await.unwrap();
    let mut listed = registry.list_tags(repo).await.unwrap();
    listed.sort();
    assert_eq!(listed, ["b", "multi"]);
    assert!(registry.manifest_digest(repo, "a").await.is_err());
    assert_eq!(registry.manifest_digest(repo, "b").await.unwrap(), b);
}

/// A pull token for `repo`, fetched by hand from the issuer.
async fn token(registry: &Registry, repo: &str) -> String {
    let url = format!(
        "{}?service={TOKEN_SERVICE}&scope=repository:{repo}:pull",
        registry.token_realm().unwrap()
    );
    let body: serde_json::Value = registry
        .http_client()
        .get(url)
        .basic_auth(registry.username().unwrap(), registry.password())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// Tags seeded straight into the on-disk storage are listed, resolve and pull like pushed
/// ones, next to tags pushed through the API afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn seeded_tags_are_served_like_pushed_ones() {
    let registry = Registry::start(RegistryOptions::anonymous().with_disk_storage())
        .await
        .unwrap();
    let tags = tags();
    let started = Instant::now();
    let digest = registry.seed_tags("bench/app", &tags).await.unwrap();
    eprintln!("seeded {TAG_COUNT} tags in {:?}", started.elapsed());

    let listed: BTreeSet<String> = registry
        .list_tags("bench/app")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, tags.iter().cloned().collect::<BTreeSet<_>>());
    // A seeded tag (not the pushed first one) resolves to the pushed manifest, and its
    // manifest can be fetched by tag.
    let seeded = &tags[TAG_COUNT - 1];
    assert_eq!(
        registry.manifest_digest("bench/app", seeded).await.unwrap(),
        digest
    );
    let manifest = registry
        .http_client()
        .get(format!(
            "{}/v2/bench/app/manifests/{seeded}",
            registry.base_url()
        ))
        .header("accept", media_type::DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_eq!(manifest.headers()["docker-content-digest"], digest.as_str());

    // The repository stays usable through the API: a pushed tag joins the seeded ones, and
    // deleting the shared manifest removes every seeded tag but not the pushed one.
    registry.push_image("bench/app", "pushed").await.unwrap();
    assert_eq!(
        registry.list_tags("bench/app").await.unwrap().len(),
        TAG_COUNT + 1
    );
    registry.delete_tag("bench/app", seeded).await.unwrap();
    assert_eq!(registry.list_tags("bench/app").await.unwrap(), ["pushed"]);

    // Seeding needs on-disk storage and valid tag names.
    let in_memory = Registry::start(RegistryOptions::anonymous()).await.unwrap();
    assert!(in_memory.seed_tags("bench/app", &tags).await.is_err());
    assert!(
        registry
            .seed_tags("bench/other", &["1.0.0", "../escape"])
            .await
            .is_err()
    );
}

/// An aliased repository shares the seeded one's storage: the real registry lists the same
/// tags under both names, resolves a seeded tag and serves its manifest through the alias.
#[tokio::test(flavor = "multi_thread")]
async fn aliased_repositories_serve_the_seeded_tags() {
    let registry = Registry::start(RegistryOptions::anonymous().with_disk_storage())
        .await
        .unwrap();
    let tags = tags();
    let digest = registry.seed_tags("bench/app-0", &tags).await.unwrap();
    registry
        .alias_repository("bench/app-0", "bench/app-1")
        .unwrap();
    registry
        .alias_repository("bench/app-0", "other/app-2")
        .unwrap();

    let expected: BTreeSet<String> = tags.iter().cloned().collect();
    for alias in ["bench/app-1", "other/app-2"] {
        let listed: BTreeSet<String> = registry
            .list_tags(alias)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(listed, expected, "{alias}");
        let seeded = &tags[TAG_COUNT - 1];
        assert_eq!(
            registry.manifest_digest(alias, seeded).await.unwrap(),
            digest
        );
        let manifest = registry
            .http_client()
            .get(format!(
                "{}/v2/{alias}/manifests/{seeded}",
                registry.base_url()
            ))
            .header("accept", media_type::DOCKER_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(manifest.status(), StatusCode::OK, "{alias}");
    }

    // Aliases need an existing repository, new valid names and on-disk storage.
    assert!(registry.alias_repository("bench/none", "bench/x").is_err());
    assert!(
        registry
            .alias_repository("bench/app-0", "bench/app-1")
            .is_err()
    );
    assert!(
        registry
            .alias_repository("bench/app-0", "../escape")
            .is_err()
    );
    let in_memory = Registry::start(RegistryOptions::anonymous()).await.unwrap();
    assert!(
        in_memory
            .alias_repository("bench/app-0", "bench/x")
            .is_err()
    );
}

//! Helpers for the local fakes of the provider endpoints.

#![allow(dead_code)] // Each test file uses a part.

use std::collections::BTreeMap;

/// Serves `app` on a free loopback port; the base URL (`http://127.0.0.1:PORT/`).
pub async fn serve(app: axum::Router) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}

/// The fields of a form body.
pub fn form(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Fails with what did not match, so the fake's 400 names the problem.
pub fn expect_eq(what: &str, got: Option<&str>, want: &str) -> Result<(), String> {
    if got == Some(want) {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "secret {secret:?} leaked into: {text}"
        );
    }
}

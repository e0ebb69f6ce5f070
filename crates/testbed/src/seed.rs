//! The seed procedure's manifests, written the way the operator's how-to (and Flux's
//! ImageUpdateAutomation spec) writes them, with the testbed's registry host, git URL and
//! credentials filled in. Shared so every test that walks the procedure applies the same
//! YAML: `e2e/tests/seed_procedure.rs` applies them to a real kube-apiserver.
//!
//! What differs from the how-to, and why:
//! - `registry.example.com` is the testbed registry's `127.0.0.1:PORT`;
//! - the ImageRepository's interval is a parameter (the how-to's `5m`; the e2e uses `1h` to
//!   prove the reconcile annotation, not the interval, triggers the scan);
//! - the author email is a real-looking address (the how-to's page shows an obfuscated one).

use base64::Engine as _;

/// Everything lives in Flux's namespace, as in the how-to.
pub const NAMESPACE: &str = "flux-system";
/// The image path under the registry host.
pub const IMAGE_PATH: &str = "team/checkout";
/// The ImageRepository and semver ImagePolicy name.
pub const CHECKOUT: &str = "checkout";
/// The dockerconfigjson Secret the ImageRepository's `secretRef` names.
pub const REGISTRY_SECRET: &str = "registry-pull";
/// The how-to's semver range: `<2.0.0` blocks a major bump.
pub const SEMVER_RANGE: &str = ">=1.0.0 <2.0.0";
/// The how-to's build-tag filter (timestamp prefix, e.g. `2026.06.01-abc1234`).
pub const TIMESTAMP_PATTERN: &str = r"^(?P<timestamp>[0-9]{4}\.[0-9]{2}\.[0-9]{2})-[a-f0-9]+$";
/// The marker on the Deployment's image line.
pub const MARKER: &str = r#"# {"$imagepolicy": "flux-system:checkout"}"#;
/// The how-to's commit message template, byte for byte.
pub const MESSAGE_TEMPLATE: &str =
    "Auto-update images\n{{ range .Updated.Images }}\n- {{.}}\n{{ end }}\n";
/// The commit author of the automation.
pub const AUTHOR_NAME: &str = "fluxcdbot";
pub const AUTHOR_EMAIL: &str = "fluxcdbot@users.noreply.github.com";
/// The how-to's `update.path` (as a path inside the repository, without `./`).
pub const UPDATE_PATH: &str = "clusters/prod";
/// Where [`repository_files`] puts the marked Deployment.
pub const DEPLOYMENT_FILE: &str = "clusters/prod/checkout.yaml";
/// Where [`repository_files`] puts the copy without a marker.
pub const UNMARKED_COPY_FILE: &str = "clusters/prod/checkout-eu.yaml";

/// The Secret `registry-pull` (`kubernetes.io/dockerconfigjson`) with `docker_config_json`
/// (e.g. [`crate::registry::Registry::docker_config_json`]), as `kubectl create secret
/// docker-registry` writes it.
pub fn registry_pull_secret(docker_config_json: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(docker_config_json);
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {REGISTRY_SECRET}
  namespace: {NAMESPACE}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {data}
"
    )
}

/// Step 2: the ImageRepository `checkout` (v1beta2) for `REGISTRY_HOST/team/checkout`.
pub fn image_repository(registry_host: &str, interval: &str) -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImageRepository
metadata:
  name: {CHECKOUT}
  namespace: {NAMESPACE}
spec:
  image: {registry_host}/{IMAGE_PATH}
  interval: {interval}
  secretRef:
    name: {REGISTRY_SECRET}
"
    )
}

/// Step 3, semver: the ImagePolicy `checkout`.
pub fn semver_policy() -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: {CHECKOUT}
  namespace: {NAMESPACE}
spec:
  imageRepositoryRef: {{ name: {CHECKOUT} }}
  policy:
    semver:
      range: '{SEMVER_RANGE}'
"
    )
}

/// Step 3, build tags with a timestamp prefix: an ImagePolicy `name` over the same
/// repository (the how-to shows only its `spec`).
pub fn timestamp_policy(name: &str) -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2
kind: ImagePolicy
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  imageRepositoryRef: {{ name: {CHECKOUT} }}
  filterTags:
    pattern: '{TIMESTAMP_PATTERN}'
    extract: '$timestamp'
  policy:
    alphabetical:
      order: asc
"
    )
}

/// Step 4: the Deployment whose image line carries the marker, at `tag`. The marked line
/// is the how-to's, indentation included.
pub fn deployment(registry_host: &str, tag: &str) -> String {
    deployment_text(
        "checkout",
        &format!("{registry_host}/{IMAGE_PATH}:{tag} {MARKER}"),
    )
}

/// The "common bug" of the how-to's notes: the same Deployment copied as `name` without
/// the marker. Automation must leave it alone.
pub fn deployment_without_marker(registry_host: &str, name: &str, tag: &str) -> String {
    deployment_text(name, &format!("{registry_host}/{IMAGE_PATH}:{tag}"))
}

fn deployment_text(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: prod
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: checkout
          image: {image}
          ports:
            - containerPort: 8080
"
    )
}

/// The files of the gitops repository: the marked Deployment at `tag`
/// ([`DEPLOYMENT_FILE`]), its unmarked copy ([`UNMARKED_COPY_FILE`]), a kustomization and
/// `extra` files. Pass to [`crate::git::BareRepos::create`].
pub fn repository_files(
    registry_host: &str,
    tag: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "README.md".to_string(),
            "# gitops\n\nReconciled by Flux; image tags are updated by image automation.\n"
                .to_string(),
        ),
        (
            format!("{UPDATE_PATH}/kustomization.yaml"),
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - checkout.yaml\n  - checkout-eu.yaml\n"
                .to_string(),
        ),
        (DEPLOYMENT_FILE.to_string(), deployment(registry_host, tag)),
        (
            UNMARKED_COPY_FILE.to_string(),
            deployment_without_marker(registry_host, "checkout-eu", tag),
        ),
    ];
    files.extend(
        extra
            .iter()
            .map(|(path, text)| (path.to_string(), text.to_string())),
    );
    files
}

/// The GitRepository `name` (source.toolkit.fluxcd.io/v1) for `url` on `main`, with basic
/// auth from the Secret `secret`.
pub fn git_repository(name: &str, url: &str, secret: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  interval: 1m
  url: {url}
  ref:
    branch: main
  secretRef:
    name: {secret}
"
    )
}

/// A basic-auth Secret for a GitRepository, as Flux documents it (`username`, `password`).
pub fn git_credentials_secret(name: &str, username: &str, password: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {NAMESPACE}
type: Opaque
stringData:
  username: {username}
  password: {password}
"
    )
}

/// Step 5: the ImageUpdateAutomation `name` (v1beta1) over the GitRepository
/// `git_repository`, checking out `main` and pushing to `push_branch` (`main`, or
/// `flux-image-updates` for step 6's PR-gated path).
pub fn image_update_automation(name: &str, git_repository: &str, push_branch: &str) -> String {
    let template: String = MESSAGE_TEMPLATE
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta1
kind: ImageUpdateAutomation
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  interval: 1m
  sourceRef:
    kind: GitRepository
    name: {git_repository}
  git:
    checkout:
      ref: {{ branch: main }}
    commit:
      author:
        name: {AUTHOR_NAME}
        email: {AUTHOR_EMAIL}
      messageTemplate: |
{template}    push:
      branch: {push_branch}
  update:
    path: ./{UPDATE_PATH}
    strategy: Setters
"
    )
}

/// The message [`MESSAGE_TEMPLATE`] renders for `images` (full references, `NAME:TAG`),
/// as Go's `text/template` does.
pub fn expected_message(images: &[&str]) -> String {
    let mut message = String::from("Auto-update images\n");
    for image in images {
        message.push_str(&format!("\n- {image}\n"));
    }
    message.push('\n');
    message
}

/// Asserts that `head` in the repository `repo` is one automation commit on top of `base`
/// that changed only the tag of `image` in `file` (marked line, `IMAGE:FROM #` to
/// `IMAGE:TO #`), with the how-to's message template and author. Panics with what differs.
pub fn assert_one_tag_update(
    repos: &crate::git::BareRepos,
    repo: &str,
    base: &str,
    head: &str,
    file: &str,
    image: &str,
    (from, to): (&str, &str),
) {
    fn ok<T>(repo: &str, what: &str, result: crate::Result<T>) -> T {
        result.unwrap_or_else(|e| panic!("{what} in {repo}: {e}"))
    }
    assert_eq!(
        ok(repo, "parents", repos.commit_parents(repo, head)),
        vec![base.to_string()],
        "{head} is not one commit on top of {base}"
    );
    let read = |rev: &str| {
        ok(repo, "file", repos.file_at(repo, rev, file))
            .unwrap_or_else(|| panic!("{file} missing at {rev}"))
    };
    let (before, after) = (read(base), read(head));
    let (old, new) = (format!("{image}:{from} #"), format!("{image}:{to} #"));
    assert!(
        before.contains(&old),
        "{file} at {base} has no {old}:\n{before}"
    );
    assert_eq!(after, before.replace(&old, &new), "{file} at {head}");
    assert_ne!(after, before);
    let files = ok(repo, "files", repos.files_at(repo, head));
    assert_eq!(
        files,
        ok(repo, "files", repos.files_at(repo, base)),
        "files added or removed"
    );
    for f in files.iter().filter(|f| f.as_str() != file) {
        assert_eq!(
            ok(repo, "file", repos.file_at(repo, head, f)),
            ok(repo, "file", repos.file_at(repo, base, f)),
            "{f} changed"
        );
    }
    let message = ok(repo, "message", repos.commit_message(repo, head));
    assert_eq!(
        message.trim_end(),
        expected_message(&[&format!("{image}:{to}")]).trim_end(),
        "{message:?}"
    );
    assert_eq!(
        ok(repo, "author", repos.commit_author(repo, head)),
        format!("{AUTHOR_NAME} <{AUTHOR_EMAIL}>")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_lines_are_indented_under_the_block_scalar() {
        let yaml = image_update_automation("flux-image-updates", "flux-system", "main");
        assert!(
            yaml.contains(
                "      messageTemplate: |\n        Auto-update images\n        {{ range .Updated.Images }}\n        - {{.}}\n        {{ end }}\n    push:\n      branch: main\n"
            ),
            "{yaml}"
        );
    }

    #[test]
    fn the_marked_line_is_the_how_tos() {
        let text = deployment("registry.example.com", "1.2.3");
        assert!(text.contains(
            "\n          image: registry.example.com/team/checkout:1.2.3 # {\"$imagepolicy\": \"flux-system:checkout\"}\n"
        ));
        let copy = deployment_without_marker("registry.example.com", "checkout-eu", "1.2.3");
        assert!(!copy.contains("$imagepolicy"));
        assert_eq!(
            expected_message(&["r/team/checkout:1.3.0"]),
            "Auto-update images\n\n- r/team/checkout:1.3.0\n\n"
        );
    }
}

//! The Helm charts, rendered and installed by real Helm (helm-sdkpy, `e2e/helm/render.py`) on
//! the testbed's kube-apiserver, validated by the server, and their RBAC proven to grant each
//! controller exactly what it needs.
//!
//! helm-sdkpy has no client-only rendering, so `render.py suite` runs `helm install` (no
//! wait) of three value sets into their own namespaces; the manifests Helm applied are then
//! applied again with `kubectl apply --dry-run=server -o json`, whose output is what the
//! assertions read. ServiceMonitor and PrometheusRule are accepted through minimal stand-in
//! CRDs (`tests/fixtures/monitoring-crds.yaml`), and the PrometheusRule groups go through
//! `promtool check rules`.
//!
//! Needs `HELM_PYTHON` (from `bash e2e/setup.sh --print-env`) or the venv at
//! `$IMAGE_AUTOMATION_CACHE/helm-venv`; fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use testbed::controllers::{self, helm_python, kubectl};
use testbed::kube_apiserver::{KubeApiServer, NON_ADMIN_USER};

/// What the value set `full` (e2e/helm/render.py) annotates the ServiceAccounts with.
const WORKLOAD_IDENTITY_ANNOTATIONS: [(&str, &str); 3] = [
    (
        "eks.amazonaws.com/role-arn",
        "arn:aws:iam::123456789012:role/flux",
    ),
    (
        "iam.gke.io/gcp-service-account",
        "flux@my-project.iam.gserviceaccount.com",
    ),
    (
        "azure.workload.identity/client-id",
        "5a1c3e2b-8d4f-4e6a-9b7c-0d1e2f3a4b5c",
    ),
];
const REFLECTOR: &str = "image-reflector-controller";
const AUTOMATION: &str = "image-automation-controller";

/// Runs `e2e/helm/render.py ARGS`; panics with its stderr when it fails.
fn render(python: &Path, args: &[&str]) -> String {
    let script = testbed::repo_root().join("e2e/helm/render.py");
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .expect("start render.py");
    assert!(
        output.status.success(),
        "render.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The objects of a rendered manifest as the API server returns them from a server-side
/// dry-run apply (defaults filled in, admission and schema validation passed).
fn dry_run_server(server: &KubeApiServer, file: &str) -> Vec<Value> {
    let out = kubectl(
        server,
        &["apply", "--dry-run=server", "-o", "json", "-f", file],
    );
    let value: Value = serde_json::from_str(&out).unwrap();
    match value["kind"].as_str() {
        Some("List") => value["items"].as_array().unwrap().clone(),
        _ => vec![value],
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn get<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| {
        let have: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect();
        panic!("no {kind}/{name} among {have:?}")
    })
}

/// Whether `package`'s binary, started with `args`, runs leader election: the last
/// `--enable-leader-election[=BOOL]` in `args`, else the binary's default.
fn leader_election(args: &[String], package: &str) -> bool {
    const FLAG: &str = "--enable-leader-election";
    let explicit = args
        .iter()
        .rev()
        .find_map(|arg| match arg.strip_prefix(FLAG)? {
            "" => Some("true".to_owned()),
            rest => rest.strip_prefix('=').map(str::to_owned),
        });
    let value = explicit.unwrap_or_else(|| {
        controllers::serve_flag_default(&controllers::controller_binary(package), FLAG)
    });
    value
        .parse()
        .unwrap_or_else(|_| panic!("{FLAG}={value} is not a bool"))
}

fn args_of(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// What every value set must render for a controller.
fn check_common(objects: &[Value], controller: &str, namespace: &str) {
    let deployment = get(objects, "Deployment", controller);
    assert_eq!(deployment["metadata"]["namespace"], namespace);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65534);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "{security}"
    );
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert_eq!(container["resources"]["requests"]["memory"], "64Mi");
    assert_eq!(container["resources"]["limits"]["cpu"], "1");
    assert_eq!(container["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(
        container["env"][0],
        json!({"name": "RUNTIME_NAMESPACE",
               "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}})
    );
    if controller == "image-reflector-controller" {
        // Followers forward /tags to the leader's advertised http://$POD_IP:8080.
        assert_eq!(
            container["env"][1],
            json!({"name": "POD_IP",
                   "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}})
        );
    }
    let mounts = container["volumeMounts"].as_array().unwrap();
    for path in ["/data", "/tmp"] {
        assert!(
            mounts.iter().any(|m| m["mountPath"] == path),
            "{path} not mounted: {mounts:?}"
        );
    }
    let args = args_of(deployment);
    assert_eq!(
        args[..3],
        ["serve", "--http-addr=0.0.0.0:8080", "--storage-path=/data"]
    );
    assert!(args.contains(&"--log-encoding=json".to_owned()), "{args:?}");

    let service = get(objects, "Service", controller);
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service must select the Deployment's pods"
    );
    let binding = get(
        objects,
        "ClusterRoleBinding",
        &format!("{controller}-{namespace}"),
    );
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], namespace);
    assert_eq!(
        binding["subjects"][0]["name"], pod["serviceAccountName"],
        "the binding must name the pods' ServiceAccount"
    );
}

/// `kubectl auth can-i` as `who` (impersonated by the admin), or with the non-admin
/// user's own kubeconfig when `who` is None.
fn can_i(server: &KubeApiServer, who: Option<&str>, namespace: &str, check: &str) -> bool {
    let command = match who {
        Some(who) => {
            let mut c = server.kubectl().unwrap();
            c.arg(format!("--as={who}"));
            c
        }
        None => {
            let mut c = Command::new(testbed::tools::kubectl().unwrap());
            c.arg("--kubeconfig").arg(server.user_kubeconfig());
            c
        }
    };
    controllers::can_i(command, namespace, check)
}

const IMAGE: &str = "image.toolkit.fluxcd.io";

/// Checks `kubectl auth can-i` runs in any namespace but the release's.
fn reflector_allowed() -> Vec<String> {
    let mut checks = Vec::new();
    for kind in ["imagerepositories", "imagepolicies"] {
        for verb in ["get", "list", "watch", "update", "patch"] {
            checks.push(format!("{verb} {kind}.{IMAGE}"));
        }
        for verb in ["get", "update", "patch"] {
            checks.push(format!("{verb} {kind}.{IMAGE} --subresource=status"));
        }
        checks.push(format!("update {kind}.{IMAGE} --subresource=finalizers"));
    }
    for kind in ["secrets", "serviceaccounts", "namespaces"] {
        for verb in ["get", "list", "watch"] {
            checks.push(format!("{verb} {kind}"));
        }
    }
    checks.extend(events_allowed());
    checks
}

fn reflector_denied() -> Vec<String> {
    [
        "delete secrets",
        "create secrets",
        "update secrets",
        "patch secrets",
        "create serviceaccounts --subresource=token",
        "get configmaps",
        "list pods",
        "create deployments.apps",
        "patch deployments.apps",
        "create imagepolicies.image.toolkit.fluxcd.io",
        "delete imagepolicies.image.toolkit.fluxcd.io",
        "delete imagerepositories.image.toolkit.fluxcd.io",
        "list imageupdateautomations.image.toolkit.fluxcd.io",
        "get gitrepositories.source.toolkit.fluxcd.io",
        "delete events",
        "create leases.coordination.k8s.io",
        "create clusterrolebindings.rbac.authorization.k8s.io",
    ]
    .map(String::from)
    .to_vec()
}

fn automation_allowed() -> Vec<String> {
    let kind = format!("imageupdateautomations.{IMAGE}");
    let mut checks = Vec::new();
    for verb in ["get", "list", "watch", "update", "patch"] {
        checks.push(format!("{verb} {kind}"));
    }
    for verb in ["get", "update", "patch"] {
        checks.push(format!("{verb} {kind} --subresource=status"));
    }
    checks.push(format!("update {kind} --subresource=finalizers"));
    for verb in ["get", "list", "watch"] {
        checks.push(format!("{verb} gitrepositories.source.toolkit.fluxcd.io"));
    }
    checks.push("get secrets".to_string());
    checks.extend(events_allowed());
    checks
}

fn automation_denied() -> Vec<String> {
    [
        "create imageupdateautomations.image.toolkit.fluxcd.io",
        "delete imageupdateautomations.image.toolkit.fluxcd.io",
        "get imagepolicies.image.toolkit.fluxcd.io",
        "list imagepolicies.image.toolkit.fluxcd.io",
        "patch imagepolicies.image.toolkit.fluxcd.io --subresource=status",
        "list imagerepositories.image.toolkit.fluxcd.io",
        "list secrets",
        "watch secrets",
        "update gitrepositories.source.toolkit.fluxcd.io",
        "patch gitrepositories.source.toolkit.fluxcd.io --subresource=status",
        "delete secrets",
        "create secrets",
        "get serviceaccounts",
        "create serviceaccounts --subresource=token",
        "list namespaces",
        "get configmaps",
        "create deployments.apps",
        "create leases.coordination.k8s.io",
    ]
    .map(String::from)
    .to_vec()
}

fn events_allowed() -> Vec<String> {
    [
        "create events",
        "patch events",
        "create events.events.k8s.io",
        "patch events.events.k8s.io",
    ]
    .map(String::from)
    .to_vec()
}

/// Leader election: Leases in the release namespace only.
fn lease_checks() -> Vec<String> {
    ["get", "list", "watch", "create", "update", "patch"]
        .map(|verb| format!("{verb} leases.coordination.k8s.io"))
        .to_vec()
}

/// Asserts every check: `allowed` in `elsewhere` and Leases in `home` when `leases`;
/// `denied` in `elsewhere`, plus Lease deletion (and all Lease access when not `leases`).
fn assert_rbac(
    server: &KubeApiServer,
    who: Option<&str>,
    home: &str,
    leases: bool,
    allowed: &[String],
    denied: &[String],
) {
    let elsewhere = "team-a";
    // (namespace, check, expected answer)
    let mut checks: Vec<(&str, String, bool)> = Vec::new();
    checks.extend(allowed.iter().map(|c| (elsewhere, c.clone(), true)));
    checks.extend(denied.iter().map(|c| (elsewhere, c.clone(), false)));
    checks.extend(lease_checks().into_iter().map(|c| (home, c, leases)));
    checks.push((home, "delete leases.coordination.k8s.io".into(), false));
    checks.push((home, "create deployments.apps".into(), false));
    // Each answer is one kubectl process; ask in parallel.
    let wrong: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = checks
            .chunks(checks.len().div_ceil(8))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter(|(ns, check, expected)| can_i(server, who, ns, check) != *expected)
                        .map(|(ns, check, expected)| {
                            format!(
                                "{} {check} -n {ns}",
                                if *expected { "cannot" } else { "can" }
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        wrong.is_empty(),
        "RBAC of {} is wrong:\n  {}",
        who.unwrap_or(NON_ADMIN_USER),
        wrong.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn charts_render_validate_and_grant_exactly_the_controllers_rbac() {
    let started = Instant::now();
    let python = helm_python();
    let server = KubeApiServer::start()
        .await
        .expect("start the testbed API server");
    let kubeconfig = server.admin_kubeconfig().to_str().unwrap().to_owned();

    // Stand-ins for the Prometheus Operator CRDs, for the optional ServiceMonitor and
    // PrometheusRule.
    let fixture = testbed::repo_root().join("crates/testbed/tests/fixtures/monitoring-crds.yaml");
    kubectl(&server, &["apply", "-f", fixture.to_str().unwrap()]);
    kubectl(
        &server,
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ],
    );

    // Helm lint + helm install of every value set.
    let out = tempfile::tempdir().unwrap();
    let index = render(
        &python,
        &[
            "suite",
            "--kubeconfig",
            &kubeconfig,
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    let index: Value = serde_json::from_str(&index).unwrap();
    let sets = index["sets"].as_array().unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["defaults", "full", "no-leader-election"]);

    for set in sets {
        let name = set["name"].as_str().unwrap();
        let namespace = set["namespace"].as_str().unwrap();
        let reflector = dry_run_server(&server, set["charts"][REFLECTOR].as_str().unwrap());
        let automation = dry_run_server(&server, set["charts"][AUTOMATION].as_str().unwrap());
        check_common(&reflector, REFLECTOR, namespace);
        check_common(&automation, AUTOMATION, namespace);
        let reflector_args = args_of(get(&reflector, "Deployment", REFLECTOR));
        let automation_args = args_of(get(&automation, "Deployment", AUTOMATION));
        let all = reflector.iter().chain(&automation);
        let kinds_present = |kind: &str| all.clone().filter(|o| o["kind"] == kind).count();
        match name {
            "defaults" => {
                assert_eq!(namespace, "flux-system");
                assert_eq!(
                    reflector_args,
                    [
                        "serve",
                        "--http-addr=0.0.0.0:8080",
                        "--storage-path=/data",
                        "--concurrent=4",
                        "--enable-leader-election",
                        "--log-level=info",
                        "--log-encoding=json",
                    ]
                );
                assert_eq!(
                    automation_args,
                    [
                        "serve",
                        "--http-addr=0.0.0.0:8080",
                        "--storage-path=/data",
                        "--concurrent=4",
                        "--reflector-url=http://image-reflector-controller.flux-system.svc.cluster.local:8080",
                        "--enable-leader-election",
                        "--log-level=info",
                        "--log-encoding=json",
                    ]
                );
                assert!(leader_election(&reflector_args, "image-reflector"));
                assert!(leader_election(&automation_args, "image-automation"));
                for kind in [
                    "PersistentVolumeClaim",
                    "ServiceMonitor",
                    "PrometheusRule",
                    "NetworkPolicy",
                ] {
                    assert_eq!(kinds_present(kind), 0, "{kind} rendered by default");
                }
                for (objects, controller) in [(&reflector, REFLECTOR), (&automation, AUTOMATION)] {
                    let volumes = &get(objects, "Deployment", controller)["spec"]["template"]["spec"]
                        ["volumes"];
                    assert_eq!(volumes[0]["name"], "data");
                    assert!(volumes[0]["emptyDir"].is_object(), "{volumes}");
                    get(objects, "Role", &format!("{controller}-leader-election"));
                    get(objects, "ServiceAccount", controller);
                }
            }
            "full" => {
                for args in [&reflector_args, &automation_args] {
                    for flag in [
                        "--concurrent=8",
                        "--log-level=debug",
                        "--watch-label-selector=sharding.fluxcd.io/key=shard1",
                        "--no-cross-namespace-refs",
                        "--min-retry-delay=1s",
                        "--feature-gates=ObjectLevelWorkloadIdentity=true",
                        "--default-service-account=flux-tenant",
                    ] {
                        assert!(args.contains(&flag.to_owned()), "{flag} missing: {args:?}");
                    }
                }
                for (objects, controller) in [(&reflector, REFLECTOR), (&automation, AUTOMATION)] {
                    let deployment = get(objects, "Deployment", controller);
                    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
                    let claim = format!("{controller}-data");
                    assert_eq!(
                        deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
                            ["claimName"],
                        claim.as_str()
                    );
                    let pvc = get(objects, "PersistentVolumeClaim", &claim);
                    assert_eq!(pvc["spec"]["storageClassName"], "fast-ssd");
                    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "2Gi");
                    let monitor = get(objects, "ServiceMonitor", controller);
                    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
                    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
                    get(objects, "NetworkPolicy", controller);
                    // Workload identity (docs/cloud-*.md): the ServiceAccount annotations
                    // IRSA, GKE and Azure read, and the label the Azure webhook selects pods by.
                    let annotations =
                        &get(objects, "ServiceAccount", controller)["metadata"]["annotations"];
                    for (key, value) in WORKLOAD_IDENTITY_ANNOTATIONS {
                        assert_eq!(annotations[key], value, "{controller}: {annotations}");
                    }
                    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
                    assert_eq!(
                        pod_labels["azure.workload.identity/use"], "true",
                        "{controller}: {pod_labels}"
                    );
                }
                let rules = |objects: &[Value], controller: &str| {
                    get(objects, "PrometheusRule", controller)["spec"].clone()
                };
                let reflector_rules = rules(&reflector, REFLECTOR).to_string();
                for expr in [
                    "time() - image_reflector_policy_latest_change_timestamp_seconds > 604800",
                    r#"increase(image_reflector_scans_total{result=\"failure\"}[15m]) > 0"#,
                    r#"gotk_reconcile_condition{kind=~\"ImageRepository|ImagePolicy\",type=\"Ready\",status=\"False\"} == 1"#,
                ] {
                    assert!(
                        reflector_rules.contains(expr),
                        "{expr} missing: {reflector_rules}"
                    );
                }
                let automation_rules = rules(&automation, AUTOMATION).to_string();
                assert!(
                    automation_rules
                        .contains("increase(image_automation_push_failures_total[15m]) > 0"),
                    "{automation_rules}"
                );
                // Prometheus' own checker parses every expression and template.
                for (controller, spec) in [
                    (REFLECTOR, rules(&reflector, REFLECTOR)),
                    (AUTOMATION, rules(&automation, AUTOMATION)),
                ] {
                    let file = out.path().join(format!("{controller}-rules.json"));
                    std::fs::write(&file, spec.to_string()).unwrap();
                    let output = Command::new(
                        testbed::tools::prometheus()
                            .unwrap()
                            .with_file_name("promtool"),
                    )
                    .args(["check", "rules"])
                    .arg(&file)
                    .output()
                    .expect("run promtool");
                    assert!(
                        output.status.success(),
                        "promtool check rules ({controller}): {}{}",
                        String::from_utf8_lossy(&output.stdout),
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                // Only the automation's pods and Prometheus reach the reflector.
                let policy = get(&reflector, "NetworkPolicy", REFLECTOR);
                let ingress = &policy["spec"]["ingress"];
                assert_eq!(ingress.as_array().unwrap().len(), 1, "{ingress}");
                assert_eq!(
                    ingress[0]["ports"],
                    json!([{"port": 8080, "protocol": "TCP"}])
                );
                let from = ingress[0]["from"].as_array().unwrap();
                assert_eq!(from.len(), 2, "{from:?}");
                assert_eq!(
                    from[0],
                    json!({"podSelector": {"matchLabels": {"app.kubernetes.io/name": AUTOMATION}}})
                );
                assert_eq!(
                    from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    "monitoring"
                );
                let automation_pods = &get(&automation, "Deployment", AUTOMATION)["spec"]["template"]
                    ["metadata"]["labels"]["app.kubernetes.io/name"];
                assert_eq!(
                    automation_pods, AUTOMATION,
                    "the policy must match the automation's pods"
                );
            }
            "no-leader-election" => {
                // What the binary will do with the rendered args (its own default where
                // the chart leaves the flag out), not merely whether the flag is there.
                for (args, package) in [
                    (&reflector_args, "image-reflector"),
                    (&automation_args, "image-automation"),
                ] {
                    assert!(!leader_election(args, package), "{package}: {args:?}");
                }
                assert!(
                    automation_args
                        .contains(&"--reflector-url=http://reflector.example.svc:9090".to_owned()),
                    "{automation_args:?}"
                );
                assert_eq!(kinds_present("Role"), 0);
                assert_eq!(kinds_present("RoleBinding"), 0);
                get(&reflector, "ServiceAccount", "reflector-sa");
                get(&automation, "ServiceAccount", "automation-sa");
            }
            other => panic!("unexpected value set {other}"),
        }
    }
    kubectl(
        &server,
        &["-n", "flux-system", "get", "deploy", REFLECTOR, AUTOMATION],
    );
    eprintln!(
        "charts: rendered and validated after {:?}",
        started.elapsed()
    );

    // The chart's own bindings: each ServiceAccount can do exactly what its controller needs.
    let sa = |ns: &str, name: &str| format!("system:serviceaccount:{ns}:{name}");
    assert_rbac(
        &server,
        Some(&sa("flux-system", REFLECTOR)),
        "flux-system",
        true,
        &reflector_allowed(),
        &reflector_denied(),
    );
    assert_rbac(
        &server,
        Some(&sa("flux-system", AUTOMATION)),
        "flux-system",
        true,
        &automation_allowed(),
        &automation_denied(),
    );
    // ObjectLevelWorkloadIdentity ("full"): ServiceAccount tokens too, nothing else more.
    let ns = "charts-full";
    let token = "create serviceaccounts --subresource=token".to_string();
    let without_token = |denied: Vec<String>| -> Vec<String> {
        denied
            .into_iter()
            .filter(|c| c != &token && c != "get serviceaccounts")
            .collect()
    };
    let mut reflector_with_identity = reflector_allowed();
    reflector_with_identity.push(token.clone());
    assert_rbac(
        &server,
        Some(&sa(ns, REFLECTOR)),
        ns,
        true,
        &reflector_with_identity,
        &without_token(reflector_denied()),
    );
    let mut automation_with_identity = automation_allowed();
    automation_with_identity.extend([token.clone(), "get serviceaccounts".to_string()]);
    let mut automation_still_denied = without_token(automation_denied());
    automation_still_denied.push("list serviceaccounts".to_string());
    assert_rbac(
        &server,
        Some(&sa(ns, AUTOMATION)),
        ns,
        true,
        &automation_with_identity,
        &automation_still_denied,
    );
    let ns = "charts-no-leader-election";
    assert_rbac(
        &server,
        Some(&sa(ns, "reflector-sa")),
        ns,
        false,
        &reflector_allowed(),
        &reflector_denied(),
    );
    assert_rbac(
        &server,
        Some(&sa(ns, "automation-sa")),
        ns,
        false,
        &automation_allowed(),
        &automation_denied(),
    );

    eprintln!(
        "charts: ServiceAccount RBAC checked after {:?}",
        started.elapsed()
    );

    // The non-admin user's token, bound to one chart at a time through rbac.extraSubjects:
    // the way the controller tests run a controller with exactly the chart's RBAC.
    assert!(
        !can_i(
            &server,
            None,
            "team-a",
            "list imagepolicies.image.toolkit.fluxcd.io"
        ),
        "{NON_ADMIN_USER} has rights before any binding"
    );
    let user_values = json!({"rbac": {"extraSubjects": [
        {"kind": "User", "name": NON_ADMIN_USER, "apiGroup": "rbac.authorization.k8s.io"}
    ]}})
    .to_string();
    for (chart, allowed, denied) in [
        (REFLECTOR, reflector_allowed(), reflector_denied()),
        (AUTOMATION, automation_allowed(), automation_denied()),
    ] {
        let ns = "rbac-user";
        render(
            &python,
            &[
                "install",
                "--kubeconfig",
                &kubeconfig,
                "--chart",
                chart,
                "--namespace",
                ns,
                "--values",
                &user_values,
            ],
        );
        assert_rbac(&server, None, ns, true, &allowed, &denied);
        render(
            &python,
            &[
                "uninstall",
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                ns,
                "--release",
                chart,
            ],
        );
        assert!(
            !can_i(&server, None, ns, "get secrets"),
            "{NON_ADMIN_USER} keeps rights after `helm uninstall {chart}`"
        );
    }

    // The reflector's tag store is one file that one process opens at a time: with a
    // PersistentVolumeClaim and two replicas, the second replica crashed ("Database already
    // open", seen with the Pods on a real node, e2e/tests/cluster.rs). The chart refuses it.
    let refused = Command::new(&python)
        .arg(testbed::repo_root().join("e2e/helm/render.py"))
        .args([
            "install",
            "--kubeconfig",
            &kubeconfig,
            "--chart",
            REFLECTOR,
            "--namespace",
            "persistence-replicas",
            "--values",
            r#"{"replicas": 2, "storage": {"persistence": {"enabled": true}}}"#,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "{REFLECTOR} installed with persistence and 2 replicas"
    );
    assert!(
        stderr.contains("storage.persistence.enabled") && stderr.contains("replicas"),
        "the refusal does not say why: {stderr}"
    );

    eprintln!("charts: done after {:?}", started.elapsed());
}

#!/usr/bin/env python3
"""Render and install the charts with real Helm (PyPI `helm-sdkpy`: Helm's Go library).

Run it with the venv that `e2e/setup.sh` creates ($HELM_PYTHON from
`bash e2e/setup.sh --print-env`).

helm-sdkpy exposes Lint, Install, Upgrade and Uninstall but no dry-run or client-only
install (no `helm template`): rendering a chart with values means installing it into a
cluster. The charts test (crates/testbed/tests/charts.rs) points this script at the
testbed's kube-apiserver, where nothing ever runs, so Helm renders and applies every object
for real (the same code path as `helm install`) and returns the manifest it applied.

Subcommands:
  lint                      lint both charts (no cluster needed); fails on warnings
  install --kubeconfig K --chart NAME --namespace NS [--release R] [--values JSON]
          [--out FILE]      `helm install` (namespace created when missing); the rendered
                            manifest goes to FILE or stdout
  upgrade --kubeconfig K --chart NAME --namespace NS [--release R] [--values JSON]
          [--out FILE]      `helm upgrade` with exactly these values (not reused ones)
  uninstall --kubeconfig K --namespace NS --release R
  suite --kubeconfig K --out DIR
                            lint, then install each value set of VALUE_SETS into its own
                            namespace; writes DIR/<set>/<chart>.yaml and DIR/index.json
                            ({"sets": [{"name", "namespace", "charts": {chart: file}}]})

Exit status 0 on success; 1 with a message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

try:
    import helm_sdkpy
except ImportError as err:  # pragma: no cover - environment problem
    sys.exit(
        f"render.py: cannot import helm_sdkpy ({err}); run `bash e2e/setup.sh` and use "
        "$HELM_PYTHON from `bash e2e/setup.sh --print-env`"
    )

REPO = Path(__file__).resolve().parents[2]
CHARTS = {
    "image-reflector-controller": REPO / "charts" / "image-reflector-controller",
    "image-automation-controller": REPO / "charts" / "image-automation-controller",
}

# Helm's lint severities (pkg/lint/support): 1 info, 2 warning, 3 error.
LINT_WARNING = 2

# The value sets the suite installs, each into its own namespace (the charts' cluster-scoped
# objects carry the namespace in their names, so the sets coexist in one cluster).
VALUE_SETS: list[dict] = [
    {"name": "defaults", "namespace": "flux-system", "values": {}},
    {
        "name": "full",
        "namespace": "charts-full",
        "values": {
            "replicas": 2,
            "logLevel": "debug",
            "concurrent": 8,
            "watchLabelSelector": "sharding.fluxcd.io/key=shard1",
            "noCrossNamespaceRefs": True,
            "extraArgs": ["--min-retry-delay=1s"],
            "featureGates": {"ObjectLevelWorkloadIdentity": True},
            "defaultServiceAccount": "flux-tenant",
            "storage": {
                "persistence": {"enabled": True, "size": "2Gi", "storageClass": "fast-ssd"}
            },
            "metrics": {
                "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            },
            "networkPolicy": {"enabled": True},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "flux",
                             "effect": "NoSchedule"}],
            "podAnnotations": {"example.com/team": "platform"},
            # Workload identity as docs/cloud-aws.md, cloud-gcp.md and cloud-azure.md set it.
            "serviceAccount": {
                "annotations": {
                    "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/flux",
                    "iam.gke.io/gcp-service-account": "flux@my-project.iam.gserviceaccount.com",
                    "azure.workload.identity/client-id": "5a1c3e2b-8d4f-4e6a-9b7c-0d1e2f3a4b5c",
                }
            },
            "podLabels": {"azure.workload.identity/use": "true"},
        },
        # The reflector's chart refuses persistence with more than one replica (one process
        # at a time opens its tag store).
        "per_chart": {"image-reflector-controller": {"replicas": 1}},
    },
    {
        "name": "no-leader-election",
        "namespace": "charts-no-leader-election",
        "values": {
            "leaderElection": {"enabled": False},
            "reflectorUrl": "http://reflector.example.svc:9090",
        },
        # Merged over "values" for one chart only.
        "per_chart": {
            "image-reflector-controller": {"serviceAccount": {"name": "reflector-sa"}},
            "image-automation-controller": {"serviceAccount": {"name": "automation-sa"}},
        },
    },
]


def merged(base: dict, override: dict) -> dict:
    """A deep merge of two value trees; `override` wins."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def fail(message: str) -> None:
    sys.exit(f"render.py: {message}")


def chart_path(name: str) -> str:
    path = CHARTS.get(name)
    if path is None:
        fail(f"unknown chart {name!r} (known: {', '.join(CHARTS)})")
    return str(path)


async def lint() -> None:
    config = helm_sdkpy.Configuration(namespace="flux-system")
    for name in CHARTS:
        try:
            result = await helm_sdkpy.Lint(config).run(chart_path(name))
        except helm_sdkpy.HelmError as err:
            fail(f"helm lint {name}: {err}")
        # The library loses the messages' text (Err serializes as {}); path and severity remain.
        bad = [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= LINT_WARNING]
        if bad or result.get("Errors"):
            fail(f"helm lint {name}: {json.dumps(result)}")
        print(f"render.py: helm lint {name}: ok", file=sys.stderr)


async def install(kubeconfig: str, chart: str, namespace: str, release: str, values: dict) -> str:
    return await release_action("install", kubeconfig, chart, namespace, release, values)


async def upgrade(kubeconfig: str, chart: str, namespace: str, release: str, values: dict) -> str:
    return await release_action("upgrade", kubeconfig, chart, namespace, release, values)


async def release_action(
    action: str, kubeconfig: str, chart: str, namespace: str, release: str, values: dict
) -> str:
    """`helm install` (creating the namespace) or `helm upgrade`; returns the manifest."""
    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)
    run = helm_sdkpy.Install(config).run if action == "install" else helm_sdkpy.Upgrade(config).run
    extra = {"create_namespace": True} if action == "install" else {}
    try:
        result = await run(
            release,
            chart_path(chart),
            values=values,
            # Nothing ever runs on the testbed: do not wait for Pods.
            wait=False,
            timeout=60,
            # Validate the rendered objects against the server's OpenAPI schema.
            disable_openapi_validation=False,
            **extra,
        )
    except helm_sdkpy.HelmError as err:
        fail(f"helm {action} {release} ({chart}) in {namespace}: {err}")
    manifest = result.get("manifest")
    if not manifest:
        fail(f"helm {action} {release}: no manifest in the result (keys: {sorted(result)})")
    return manifest


async def uninstall(kubeconfig: str, namespace: str, release: str) -> None:
    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)
    try:
        await helm_sdkpy.Uninstall(config).run(release, wait=False, timeout=60)
    except helm_sdkpy.HelmError as err:
        fail(f"helm uninstall {release} in {namespace}: {err}")


async def suite(kubeconfig: str, out: Path) -> None:
    await lint()
    index = {"sets": []}
    for value_set in VALUE_SETS:
        entry = {"name": value_set["name"], "namespace": value_set["namespace"], "charts": {}}
        directory = out / value_set["name"]
        directory.mkdir(parents=True, exist_ok=True)
        for chart in CHARTS:
            values = merged(value_set["values"], value_set.get("per_chart", {}).get(chart, {}))
            manifest = await install(kubeconfig, chart, value_set["namespace"], chart, values)
            file = directory / f"{chart}.yaml"
            file.write_text(manifest)
            entry["charts"][chart] = str(file)
            print(
                f"render.py: installed {chart} with value set {value_set['name']!r} "
                f"in {value_set['namespace']} -> {file}",
                file=sys.stderr,
            )
        index["sets"].append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(json.dumps(index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lint")
    for command in ("install", "upgrade"):
        p = sub.add_parser(command)
        p.add_argument("--kubeconfig", required=True)
        p.add_argument("--chart", required=True, choices=sorted(CHARTS))
        p.add_argument("--namespace", required=True)
        p.add_argument("--release")
        p.add_argument("--values", default="{}", help="values as a JSON object")
        p.add_argument("--out", type=Path)
    p = sub.add_parser("uninstall")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--release", required=True)
    p = sub.add_parser("suite")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    if getattr(args, "kubeconfig", None) and not os.path.isfile(args.kubeconfig):
        fail(f"kubeconfig {args.kubeconfig} does not exist")
    if args.command == "lint":
        asyncio.run(lint())
    elif args.command in ("install", "upgrade"):
        try:
            values = json.loads(args.values)
        except json.JSONDecodeError as err:
            fail(f"--values is not JSON: {err}")
        if not isinstance(values, dict):
            fail("--values must be a JSON object")
        run = install if args.command == "install" else upgrade
        manifest = asyncio.run(
            run(args.kubeconfig, args.chart, args.namespace, args.release or args.chart, values)
        )
        if args.out:
            args.out.write_text(manifest)
        else:
            sys.stdout.write(manifest)
    elif args.command == "uninstall":
        asyncio.run(uninstall(args.kubeconfig, args.namespace, args.release))
    elif args.command == "suite":
        asyncio.run(suite(args.kubeconfig, args.out))


if __name__ == "__main__":
    main()

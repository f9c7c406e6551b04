"""Offline validation of infra/: what can be checked without a cluster or an AWS account.

* every kustomization renders with ``kubectl kustomize`` and each object passes the strict
  OpenAPI schema of the Kubernetes version the EKS cluster runs (``kubernetes-validate``);
* selectors, images, probes, Secrets and the service's settings agree across the objects;
* the HPA's custom metric is one the Prometheus adapter's rules serve, from a series the
  service exposes, and the rules' PromQL parses (promtool);
* the RayService's pod templates are valid ``PodTemplate``s and its ``serveConfigV2`` is valid
  for Ray Serve's own schema, without keys Ray would silently ignore;
* Terraform parses (python-hcl2), providers are pinned, security settings are in place;
* checkov finds nothing unjustified in Terraform, the rendered manifests, the RayService's pods
  and the Dockerfiles under docker/ and infra/ (checkov lives in .venv-checkov:
  ``make checkov-venv``).
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
TERRAFORM = ROOT / "infra" / "terraform" / "aws"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
TERRAFORM_BIN = shutil.which("terraform")
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SECRET_NAME = "fraud-scoring-secrets"

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (it renders the kustomizations)"
)
needs_checkov = pytest.mark.skipif(
    not CHECKOV.exists(), reason="checkov is not installed: `make checkov-venv` builds .venv-checkov"
)


# ---------------------------------------------------------------- helpers
def _unquote(value: Any) -> Any:
    """python-hcl2 8 keeps HCL's quotes on strings and block labels: strip them."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def terraform() -> dict[str, list[Any]]:
    """Every top-level block of the Terraform files, by block type."""
    blocks: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open(encoding="utf-8") as fh:
            parsed = _unquote(hcl2.load(fh))
        for kind, items in parsed.items():
            blocks.setdefault(kind, []).extend(items)
    return blocks


def tf_resources(rtype: str) -> dict[str, dict[str, Any]]:
    """Resources of one type, by name."""
    return {
        name: body for item in terraform()["resource"] if rtype in item for name, body in item[rtype].items()
    }


def tf_variable(name: str) -> dict[str, Any]:
    return next(item[name] for item in terraform()["variable"] if name in item)


def k8s_version() -> str:
    """The Kubernetes version the manifests must fit: the EKS cluster's (Terraform's default)."""
    return f"{tf_variable('cluster_version')['default']}.0"


@functools.cache
def _render_text(kustomization: str) -> str:
    out = subprocess.run(
        [KUBECTL or "kubectl", "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {kustomization} failed: {out.stderr.strip()}"
    return out.stdout


def render(kustomization: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` renders (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_render_text(kustomization)) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def strict_errors(doc: dict[str, Any]) -> str | None:
    """kubernetes-validate's complaint about one object (strict: unknown fields refused), or None."""
    try:
        kubernetes_validate.validate(doc, k8s_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"
    return None


def rayservice() -> dict[str, Any]:
    return one(render("ray"), "RayService")


def ray_pod_templates(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    for group in cluster["workerGroupSpecs"]:
        templates[group["groupName"]] = group["template"]
    return templates


def serve_config(service: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def pod_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


# ---------------------------------------------------------------- Kubernetes manifests
def test_overlays_found() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


@needs_kubectl
@pytest.mark.parametrize("kustomization", [*(f"overlays/{o}" for o in OVERLAYS), "prometheus-adapter"])
def test_every_kustomization_renders_and_passes_the_strict_schema(kustomization: str) -> None:
    docs = render(kustomization)
    assert docs, f"{kustomization} renders nothing"
    errors = [e for e in map(strict_errors, docs) if e]
    assert not errors, "\n".join(errors)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_every_object_of_the_service(overlay: str) -> None:
    kinds = {d["kind"] for d in render(f"overlays/{overlay}")}
    wanted = {
        "Namespace", "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "CronJob",
    }  # fmt: skip
    assert wanted <= kinds, f"missing: {sorted(wanted - kinds)}"


@needs_kubectl
def test_strict_schema_rejects_a_misspelt_field_and_a_wrong_type() -> None:
    deployment = one(render("overlays/prod"), "Deployment")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"tcpSocket": {"port": 8400}}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    assert strict_errors(deployment) is None
    assert strict_errors(misspelt) is not None
    assert strict_errors(wrong_type) is not None


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_select_the_deployments_pods(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one(docs, "Service")["spec"]["selector"])
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    # The scoring NetworkPolicy (the retention job has its own, checked below) selects the pods.
    scoring_policies = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] != "fraud-audit-retention"
    ]
    assert len(scoring_policies) == 1
    assert selects(scoring_policies[0]["spec"]["podSelector"]["matchLabels"])
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    # The Service's named target port and the probes' ports exist on the container.
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"] for p in container["ports"]}
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] in ports
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_non_root_read_only_and_bounded(overlay: str) -> None:
    spec = one(render(f"overlays/{overlay}"), "Deployment")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for c in pod_containers(spec):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        for side in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][side]), (c["name"], side)
    api = spec["containers"][0]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(api)
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"


def _retention_job(overlay: str) -> dict[str, Any]:
    return one(render(f"overlays/{overlay}"), "CronJob")


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retention_job_is_daily_single_and_locked_down(overlay: str) -> None:
    job = _retention_job(overlay)
    assert job["spec"]["schedule"].split()[2:] == ["*", "*", "*"], "runs every day"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    spec = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retention_pods_are_not_scoring_pods(overlay: str) -> None:
    """The Service, PDB and the API's NetworkPolicy must not select the job's pods (a running
    job pod without a readiness probe would otherwise receive scoring traffic)."""
    docs = render(f"overlays/{overlay}")
    labels = _retention_job(overlay)["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert not _selects(one(docs, "Service")["spec"]["selector"], labels)
    assert not _selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    assert not _selects(policies["fraud-scoring"]["spec"]["podSelector"]["matchLabels"], labels)
    own = policies["fraud-audit-retention"]["spec"]
    assert _selects(own["podSelector"]["matchLabels"], labels)
    assert "ingress" not in own and set(own["policyTypes"]) == {"Ingress", "Egress"}, "nothing talks to it"


@needs_kubectl
def test_retention_job_command_purges_an_audit_log(tmp_path: Path) -> None:
    """The manifest's command line, with the Secret's URL substituted, is a working CLI call."""
    from datetime import UTC, datetime, timedelta

    from typer.testing import CliRunner

    from level4_fraud.cli import app
    from level4_fraud.serving.audit import AuditLog, AuditRecord

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    now = datetime.now(UTC)
    with AuditLog.open(url, b"k") as log:
        for tid, days in ((1, 4000), (2, 10)):
            log.append(
                AuditRecord(
                    tid,
                    log.keyed_hash(1),
                    log.keyed_hash(tid),
                    datetime(2018, 5, 24, 12),
                    1.0,
                    "approve",
                    0.1,
                    "level4_fraud/1",
                    "0" * 64,
                    [],
                    [],
                    1.0,
                    now - timedelta(days=days),
                )
            )
    container = _retention_job("dev")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["python3", "-m", "level4_fraud"]
    args = [a.replace("$(AUDIT_URL)", url) for a in command[3:]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with AuditLog.open(url, b"k") as log:
        assert log.transaction_ids() == [2]  # past the default five years: gone; recent: kept


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_overlays_own(overlay: str) -> None:
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    spec = one(render(f"overlays/{overlay}"), "Deployment")["spec"]["template"]["spec"]
    assert {c["image"] for c in pod_containers(spec)} == {expected}
    assert not expected.endswith(":latest")


def _secret_refs(containers: list[dict[str, Any]]) -> dict[str, str]:
    """Environment variable -> Secret key, for every variable read from the service's Secret."""
    refs = {}
    for c in containers:
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"].startswith(SECRET_NAME), ref
                refs[env["name"]] = ref["key"]
    return refs


@needs_kubectl
def test_dev_secret_holds_every_key_the_pods_read() -> None:
    docs = render("overlays/dev")
    secret = one(docs, "Secret")
    refs = _secret_refs(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"])
    assert set(refs.values()) == {"api-key", "audit-url", "audit-hash-key"}
    assert set(refs.values()) <= set(secret["data"])
    # The generated name (hash suffix) is the one the Deployment reads.
    deployment_names = {
        env["valueFrom"]["secretKeyRef"]["name"]
        for env in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert deployment_names == {secret["metadata"]["name"]}


@needs_kubectl
def test_prod_keeps_its_secret_out_of_git() -> None:
    docs = render("overlays/prod")
    assert not [d for d in docs if d["kind"] == "Secret"]
    refs = _secret_refs(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"])
    assert set(refs.values()) == {"api-key", "audit-url", "audit-hash-key"}


def _level_settings(
    configmap: dict[str, Any], secret_refs: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The L4__ variables a pod gets, split into the serving section and the top-level fields."""
    env = {k: v for k, v in configmap["data"].items() if k.startswith("L4__")}
    samples = {
        "L4__SERVING__API_KEY": "key",
        "L4__SERVING__AUDIT_URL": "postgresql://u@h/db",
        "L4__SERVING__AUDIT_HASH_KEY": "hash",
    }
    env.update({name: samples.get(name, "x") for name in secret_refs})
    serving = {
        k.removeprefix("L4__SERVING__").lower(): v for k, v in env.items() if k.startswith("L4__SERVING__")
    }
    top = {k.removeprefix("L4__").lower(): v for k, v in env.items() if not k.startswith("L4__SERVING__")}
    return serving, top


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_settings_are_valid_service_settings(overlay: str) -> None:
    from level4_fraud.config import FraudConfig
    from level4_fraud.serving.config import ServingConfig

    docs = render(f"overlays/{overlay}")
    deployment = one(docs, "Deployment")
    refs = _secret_refs(deployment["spec"]["template"]["spec"]["containers"])
    serving, top = _level_settings(one(docs, "ConfigMap"), refs)
    cfg = ServingConfig.model_validate(serving)  # extra="forbid": a misspelt variable fails here
    assert cfg.host == "0.0.0.0"
    container_ports = {
        p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert cfg.port in container_ports
    assert set(top) <= set(FraudConfig.model_fields), (
        f"unknown L4__ settings: {sorted(set(top) - set(FraudConfig.model_fields))}"
    )
    artifacts = {
        m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert top["artifacts_dir"] in artifacts


def test_settings_check_refuses_a_misspelt_variable() -> None:
    from pydantic import ValidationError

    from level4_fraud.serving.config import ServingConfig

    configmap = {"data": {"L4__SERVING__HOST": "0.0.0.0", "L4__SERVING__PROT": "8400"}}
    serving, _ = _level_settings(configmap, {})
    with pytest.raises(ValidationError):
        ServingConfig.model_validate(serving)


# ---------------------------------------------------------------- Prometheus adapter
def adapter_rules() -> list[dict[str, Any]]:
    configmap = yaml.safe_load((K8S / "prometheus-adapter" / "adapter-rules.yaml").read_text())
    return configmap["rules"]


def _series_name(rule: dict[str, Any]) -> str:
    return re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"].strip("'\"")).group(0)


def _served_metric(rule: dict[str, Any]) -> str:
    return re.sub(rule["name"]["matches"], rule["name"]["as"], _series_name(rule))


@needs_kubectl
def test_hpa_custom_metrics_are_served_by_the_adapter_from_exposed_series() -> None:
    from level4_fraud.serving.metrics import ServiceMetrics

    metrics = ServiceMetrics()
    metrics.observe_request("uvicorn", 200, 0.004)
    exposed = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", metrics.exposition().decode(), flags=re.M))
    served = {_served_metric(r) for r in adapter_rules()}
    assert {_series_name(r) for r in adapter_rules()} <= exposed
    configmap = one(render("prometheus-adapter"), "ConfigMap")
    assert yaml.safe_load(configmap["data"]["config.yaml"])["rules"] == adapter_rules()
    for overlay in OVERLAYS:
        hpa = one(render(f"overlays/{overlay}"), "HorizontalPodAutoscaler")
        kinds = {m["type"] for m in hpa["spec"]["metrics"]}
        assert {"Resource", "Pods"} <= kinds
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["metric"]["name"] in served, overlay


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (make system-deps installs prometheus)"
)
def test_adapter_queries_are_valid_promql(tmp_path: Path) -> None:
    def concrete(query: str) -> str:
        return (
            query.replace("<<.Series>>", "fraud_requests_total")
            .replace("<<.LabelMatchers>>", 'namespace="fraud-prod",pod=~"fraud-scoring-.*"')
            .replace("<<.GroupBy>>", "pod")
        )

    def check(queries: list[str]) -> subprocess.CompletedProcess[str]:
        rules = {"groups": [{"name": "adapter", "rules": [
            {"record": f"adapter:query{i}", "expr": q} for i, q in enumerate(queries)
        ]}]}  # fmt: skip
        path = tmp_path / "rules.yml"
        path.write_text(yaml.safe_dump(rules))
        return subprocess.run(
            [PROMTOOL or "promtool", "check", "rules", str(path)], capture_output=True, text=True
        )

    good = check([concrete(r["metricsQuery"]) for r in adapter_rules()])
    assert good.returncode == 0, good.stdout + good.stderr
    assert (
        check([concrete("sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m]) by (<<.GroupBy>>)")]).returncode != 0
    )


# ---------------------------------------------------------------- RayService
@needs_kubectl
def test_rayservice_pod_templates_are_valid_pod_templates() -> None:
    templates = ray_pod_templates(rayservice())
    assert {"head", "scorers"} <= set(templates)
    errors = []
    for name, template in templates.items():
        doc = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"ray-{name}"},
            "template": template,
        }
        errors.append(strict_errors(doc))
    assert not [e for e in errors if e], errors
    broken = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "x"},
        "template": copy.deepcopy(templates["head"]),
    }
    broken["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    assert strict_errors(broken) is not None


@needs_kubectl
def test_rayservice_pods_are_non_root_read_only_and_selected_by_their_network_policy() -> None:
    docs = render("ray")
    policy = one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    for name, template in ray_pod_templates(one(docs, "RayService")).items():
        labels = template["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in policy.items()), name
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for c in pod_containers(spec):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), (name, c["name"])


def _unknown_keys(values: dict[str, Any], model: Any) -> set[str]:
    fields = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    return set(values) - fields


@needs_kubectl
def test_serve_config_is_valid_for_ray_serve() -> None:
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    service = rayservice()
    raw = serve_config(service)
    schema = ServeDeploySchema.model_validate(raw)
    assert _unknown_keys(raw, ServeDeploySchema) == set()
    (app,) = raw["applications"]
    assert _unknown_keys(app, ServeApplicationSchema) == set()
    (deployment,) = app["deployments"]
    # DeploymentSchema ignores unknown keys: a misspelt option would silently do nothing.
    assert _unknown_keys(deployment, DeploymentSchema) == set()
    scaling = AutoscalingConfig.model_validate(deployment["autoscaling_config"])
    assert 1 <= scaling.min_replicas < scaling.max_replicas
    assert schema.applications[0].deployments[0].name == deployment["name"]
    import ray

    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__


@needs_kubectl
def test_serve_schema_rejects_replicas_fixed_beside_autoscaling() -> None:
    from pydantic import ValidationError
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    raw = serve_config(rayservice())
    fixed = copy.deepcopy(raw)
    fixed["applications"][0]["deployments"][0]["num_replicas"] = 3
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(fixed)
    with pytest.raises(ValidationError):
        AutoscalingConfig.model_validate({"min_replicas": 2, "max_replicas": 0})


@needs_kubectl
def test_serve_import_path_names_a_builder_of_the_serving_package() -> None:
    app = serve_config(rayservice())["applications"][0]
    module, _, attr = app["import_path"].partition(":")
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is not written yet (the SERVING helper's Ray Serve app)")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    names |= {
        t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    assert attr in names, f"{module} defines no {attr}"


# ---------------------------------------------------------------- Terraform
def test_terraform_parses_with_exact_provider_pins() -> None:
    (settings,) = terraform()["terraform"]
    (providers,) = settings["required_providers"]
    assert {"aws", "tls"} <= set(providers)
    for name, spec in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec["version"]), (
            f"{name} is not pinned exactly: {spec['version']}"
        )
    assert "<" in settings["required_version"]


def test_terraform_variables_and_outputs_are_documented() -> None:
    for item in terraform()["variable"]:
        for name, body in item.items():
            assert body.get("description") and body.get("type"), name
    for item in terraform()["output"]:
        for name, body in item.items():
            assert body.get("description"), name
    assert re.fullmatch(r"\d+\.\d+", tf_variable("cluster_version")["default"])


def test_terraform_nodes_require_imdsv2_and_encrypt_volumes() -> None:
    (template,) = tf_resources("aws_launch_template").values()
    (metadata,) = template["metadata_options"]
    assert metadata["http_tokens"] == "required"
    assert metadata["http_put_response_hop_limit"] == 1
    for mapping in template["block_device_mappings"]:
        assert all(ebs["encrypted"] is True for ebs in mapping["ebs"])
    (group,) = tf_resources("aws_eks_node_group").values()
    assert "aws_launch_template.node.id" in group["launch_template"][0]["id"]


def test_terraform_cluster_is_private_encrypted_and_logged() -> None:
    (cluster,) = tf_resources("aws_eks_cluster").values()
    (vpc,) = cluster["vpc_config"]
    assert vpc["endpoint_private_access"] is True
    assert tf_variable("api_public_cidrs")["default"] == []  # public endpoint off unless asked for
    assert cluster["encryption_config"][0]["resources"] == ["secrets"]
    assert {"api", "audit", "authenticator"} <= set(cluster["enabled_cluster_log_types"])
    for name, group in tf_resources("aws_cloudwatch_log_group").items():
        assert "kms_key_id" in group, name
    assert tf_variable("log_retention_days")["default"] >= 365


def test_terraform_buckets_are_private_encrypted_and_versioned() -> None:
    buckets = set(tf_resources("aws_s3_bucket"))
    assert buckets
    for rtype in (
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_policy",
    ):
        covered = {
            re.search(r"aws_s3_bucket\.(\w+)\.", b["bucket"]).group(1) for b in tf_resources(rtype).values()
        }
        assert covered == buckets, f"{rtype} misses {sorted(buckets - covered)}"
    for name, block in tf_resources("aws_s3_bucket_public_access_block").items():
        flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
        assert all(block[f] is True for f in flags), name
    for name, repo in tf_resources("aws_ecr_repository").items():
        assert repo["image_tag_mutability"] == "IMMUTABLE", name


@pytest.mark.skipif(
    TERRAFORM_BIN is None, reason="terraform is not installed (fmt check only; validate needs providers)"
)
def test_terraform_is_formatted() -> None:
    out = subprocess.run(
        [TERRAFORM_BIN or "terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- checkov
def run_checkov(target: Path, framework: str) -> dict[str, Any]:
    """checkov's summary and failed/skipped checks over a folder (offline: --skip-download)."""
    out = subprocess.run(
        [str(CHECKOV), "-d", str(target), "--framework", framework, "--skip-download", "--compact",
         "-o", "json", "--download-external-modules", "false"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(target), "LOG_LEVEL": "ERROR"},
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr[-2000:]
    reports = json.loads(out.stdout) if out.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    result: dict[str, Any] = {"passed": 0, "failed": [], "skipped": []}
    for report in reports:
        if "results" not in report:  # an empty scan prints a bare summary
            continue
        result["passed"] += report["summary"]["passed"]
        result["failed"] += report["results"]["failed_checks"]
        result["skipped"] += report["results"]["skipped_checks"]
    return result


def assert_clean(result: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in result["failed"]
    ]
    assert not failed, "unjustified checkov findings:\n" + "\n".join(failed)
    assert result["passed"] > 0, "checkov checked nothing"
    for check in result["skipped"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 20, f"{check['check_id']} {check['resource']}: skipped without a reason"


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    return dst


@needs_checkov
@pytest.mark.slow
def test_checkov_terraform(tmp_path: Path) -> None:
    assert_clean(run_checkov(_copy_tree(TERRAFORM, tmp_path / "aws"), "terraform"))


@needs_checkov
@pytest.mark.slow
def test_checkov_finds_imdsv1_and_a_public_bucket(tmp_path: Path) -> None:
    """The scan is live: dropping IMDSv2 and a public access block are reported."""
    tf = _copy_tree(TERRAFORM, tmp_path / "aws")
    eks = tf / "eks.tf"
    eks.write_text(
        eks.read_text().replace('http_tokens                 = "required"', 'http_tokens = "optional"')
    )
    storage = tf / "storage.tf"
    storage.write_text(
        storage.read_text().replace("restrict_public_buckets = true", "restrict_public_buckets = false")
    )
    failed = {c["check_id"] for c in run_checkov(tf, "terraform")["failed"]}
    assert {"CKV_AWS_79", "CKV_AWS_56"} <= failed


@needs_checkov
@needs_kubectl
@pytest.mark.slow
def test_checkov_rendered_manifests(tmp_path: Path) -> None:
    """Every overlay as it would be applied, the adapter rules, the RayService and its pods.

    checkov knows no RayService, so its pod templates are also scanned as Pods (their
    ``checkov.io/skip`` annotations justify what KubeRay provides itself).
    """
    for name in [*(f"overlays/{o}" for o in OVERLAYS), "prometheus-adapter", "ray"]:
        (tmp_path / f"{name.replace('/', '-')}.yaml").write_text(_render_text(name))
    docs = render("ray")
    namespace = one(docs, "RayService")["metadata"]["namespace"]
    pods = [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"ray-{name}", "namespace": namespace, **t["metadata"]}, "spec": t["spec"]}
        for name, t in ray_pod_templates(one(docs, "RayService")).items()
    ]  # fmt: skip
    (tmp_path / "ray-pods.yaml").write_text(yaml.safe_dump_all([*pods, one(docs, "NetworkPolicy")]))
    result = run_checkov(tmp_path, "kubernetes")
    assert_clean(result)
    assert {c["check_id"] for c in result["skipped"]} >= {"CKV_K8S_43", "CKV_K8S_8", "CKV_K8S_9"}


@needs_checkov
@pytest.mark.slow
def test_checkov_dockerfiles(tmp_path: Path) -> None:
    dockerfiles = [
        *sorted((ROOT / "docker").rglob("*Dockerfile")),
        *sorted((ROOT / "infra").rglob("*Dockerfile")),
    ]
    assert len(dockerfiles) >= 3
    for i, path in enumerate(dockerfiles):
        # checkov names findings by file: keep the repository path in the copy's name.
        (tmp_path / f"{i:02d}-{path.relative_to(ROOT).as_posix().replace('/', '__')}").write_text(
            path.read_text()
        )
    assert_clean(run_checkov(tmp_path, "dockerfile"))

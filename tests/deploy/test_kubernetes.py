"""The deployment files through the tools that read them, as `make lint` runs them (subprocesses: kubectl and sh
must be installed; .ci/run installs Debian's): the prod and dev Kubernetes overlays as `kubectl kustomize` renders
them, checked against docker-compose.yml, the images, deploy/nginx/samq.conf and the code (probes,
PodDisruptionBudgets, the HPA and KEDA triggers, the settings each ConfigMap makes), and the createbuckets script
parsed by `sh -n`. The checks that need no tool are in tests/unit/test_deploy.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.supervisor import gateway_command
from shared import names
from shared.settings import Settings
from tests.deploy_files import (
    COMPOSE,
    GATEWAY_DOCKERFILE,
    NGINX_CONF,
    SETTING_VARS,
    WEBHOOK_CMD,
    WORKER_DOCKERFILE,
    arg_defaults,
    args_of,
    config_settings,
    container,
    environment,
    exec_cmd,
    expand_args,
    find,
    image_env,
    load_script,
    long_options,
    nginx_directives,
    nginx_seconds,
    nginx_value,
    read_yaml,
    resolve,
    without_samq_env,
)

validate = load_script("validate")


@pytest.fixture(scope="module")
def compose() -> dict:
    return read_yaml(COMPOSE)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return without_samq_env(monkeypatch)


@pytest.fixture(scope="module")
def prod() -> list[dict]:
    """The prod overlay, rendered by `kubectl kustomize` (as `make lint` renders it)."""
    return validate.render("prod")


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return validate.render("dev")


@pytest.mark.skipif(not shutil.which("sh"), reason="no sh")
def test_createbuckets_script_parses_in_sh(compose: dict) -> None:
    script = compose["services"]["createbuckets"]["command"]
    script = resolve(" ".join(script) if isinstance(script, list) else script)
    subprocess.run(["sh", "-n", "-c", script], check=True)


def test_nginx_limits_agree_with_the_gateway(compose: dict, prod: list[dict], clean_env: pytest.MonkeyPatch) -> None:
    """deploy/nginx/samq.conf repeats a few of the gateway's numbers: they must be the gateway's."""
    with clean_env.context() as mp:
        for key, value in environment(compose["services"]["gateway"]).items():
            mp.setenv(key, resolve(value))
        compose_settings = Settings()
    for settings in (compose_settings, config_settings(prod, clean_env)):
        limit = create_app(settings).config["MAX_CONTENT_LENGTH"]
        assert nginx_value("client_max_body_size") == [str(limit)], "nginx refuses exactly what the gateway would"
        assert nginx_seconds(nginx_value("proxy_read_timeout")[0]) > settings.sync_timeout_s
    too_large = nginx_value("return", ("server", "location @too_large"))
    assert too_large[0] == "413" and json.loads(too_large[1])["error"] == {
        "code": "too_large", "message": f"the body is larger than the limit of {limit} bytes; send large images "
                                        "by URL, or split the batch"}, "the gateway's own 413 (gateway/errors.py)"
    assert nginx_seconds(nginx_value("proxy_read_timeout")[0]) == int(long_options(exec_cmd(GATEWAY_DOCKERFILE))[
        "--timeout"]), "nginx waits as long as gunicorn lets a request run"
    for name in ("client_header_timeout", "client_body_timeout"):
        assert nginx_seconds(nginx_value(name)[0]) <= 10, name
    assert nginx_value("proxy_request_buffering") == ["on"] and nginx_value("proxy_buffering") == ["on"]

    # Keep-alive to the gateway: HTTP/1.1, no Connection header, idle connections dropped before gunicorn drops
    # them (a request sent on a connection gunicorn is closing fails; nginx does not retry a POST).
    upstream = ("upstream samq_gateway",)
    assert nginx_value("server", upstream) == ["samq-gateway:8000"]
    assert int(nginx_value("keepalive", upstream)[0]) > 0
    from gunicorn.config import Config

    for argv in (exec_cmd(GATEWAY_DOCKERFILE), gateway_command(Settings())):
        assert "--keep-alive" not in argv, "gunicorn's keep-alive is its default"
    assert nginx_seconds(nginx_value("keepalive_timeout", upstream)[0]) < Config().keepalive
    assert nginx_value("proxy_http_version") == ["1.1"]
    headers = {args[0].lower(): args[1] for ctx, name, args in nginx_directives(NGINX_CONF.read_text())
               if name == "proxy_set_header"}
    assert headers["connection"] == "" and headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    assert headers["x-request-id"] == "$samq_request_id" and headers["host"] == "$http_host"
    assert nginx_value("proxy_pass", ("server", "location /")) == ["http://samq_gateway"]


def test_third_party_images_are_pinned(compose: dict, dev: list[dict]) -> None:
    images = {s["image"] for s in compose["services"].values() if "build" not in s}
    images |= {c["image"] for o in dev if o["kind"] in ("Deployment", "Job")
               for c in o["spec"]["template"]["spec"]["containers"]}
    stages = {"scratch", "worker"}  # FROM an earlier stage of the same Dockerfile, or nothing
    images |= {expand_args(f, arg_defaults(p)).split()[0] for p in (GATEWAY_DOCKERFILE, WORKER_DOCKERFILE)
               for f in args_of(p, "FROM")}
    for image in images - stages - {"samq-gateway:latest", "samq-gateway:dev", "samq-worker:cpu"}:
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image}: pin a version"
    assert "mher/flower:2.0.1" in images
    assert any(i.startswith("minio/minio:RELEASE.") for i in images)
    assert any(i.startswith("nvidia/cuda:13.0.1-runtime-") for i in images)


def test_gateway_cmd_matches_supervisor(clean_env: pytest.MonkeyPatch, prod: list[dict]) -> None:
    cmd = exec_cmd(GATEWAY_DOCKERFILE)
    assert cmd[:2] == ["gunicorn", "gateway.wsgi:app"]
    expected = gateway_command(Settings(host="0.0.0.0", port=8000))
    assert expected[1:4] == ["-m", "gunicorn", "gateway.wsgi:app"]
    # gunicorn's command line wins over GUNICORN_CMD_ARGS: the knobs deployments change must not be in CMD.
    env_args = long_options(image_env(GATEWAY_DOCKERFILE)["GUNICORN_CMD_ARGS"].split())
    assert set(env_args) == {"--workers", "--threads"} and not set(env_args) & set(long_options(cmd))
    k8s = {v["name"]: v.get("value") for v in container(prod, "samq-gateway")["env"]}
    assert set(long_options(k8s["GUNICORN_CMD_ARGS"].split())) == set(env_args)
    got = long_options(cmd) | env_args
    for flag, value in long_options(expected[4:]).items():
        assert got.get(flag, "<missing>") == value, f"gunicorn {flag}: image has {got.get(flag)}, supervisor {value}"
    assert got["--worker-class"] == "gthread"


def test_prod_worker_grace_period_outlasts_a_task(prod: list[dict], clean_env: pytest.MonkeyPatch) -> None:
    limit = config_settings(prod, clean_env).task_time_limit_s
    spec = find(prod, "Deployment", "samq-worker")["spec"]
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > limit
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}, "no surge pod needing a GPU"
    scaled = find(prod, "ScaledObject", "samq-worker")["spec"]
    assert scaled["cooldownPeriod"] > limit
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"] > limit


def test_keda_triggers_name_the_queues_the_code_uses(prod: list[dict]) -> None:
    scaled = find(prod, "ScaledObject", "samq-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == find(prod, "Deployment", "samq-worker")["metadata"]["name"]
    triggers = {t["name"]: t for t in scaled["triggers"]}
    assert all(t["type"] == "redis" for t in triggers.values())
    lists = sorted(t["metadata"]["listName"] for t in triggers.values())
    assert lists == sorted([*names.INFER_QUEUES, "unacked"]), lists
    formula = scaled["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"[a-z_]+", formula)) == sorted(triggers), "the sum of every trigger"
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    auth = {t["authenticationRef"]["name"] for t in triggers.values()}
    assert auth == {"samq-redis"}
    secret = find(prod, "Secret", "samq-secrets")["stringData"]
    for ref in find(prod, "TriggerAuthentication", "samq-redis")["spec"]["secretTargetRef"]:
        assert ref["name"] == "samq-secrets" and ref["key"] in secret


def test_gpu_worker_probes_itself(prod: list[dict], dev: list[dict]) -> None:
    worker = container(prod, "samq-worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["startupProbe"]["exec"]["command"] == ["python", "-m", "worker.health", "ready"]
    assert worker["readinessProbe"]["exec"]["command"] == ["python", "-m", "worker.health", "ready"]
    assert worker["livenessProbe"]["exec"]["command"][:4] == ["python", "-m", "worker.health", "live"]
    assert "args" not in worker and "command" not in worker, "the image's CMD (the supervisor's command line)"
    startup = worker["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "time to load the models"
    assert "nvidia.com/gpu" not in container(dev, "samq-worker")["resources"]["limits"]


@pytest.mark.parametrize("overlay", ["prod", "dev"])
def test_proxy_deployment_runs_samq_conf(overlay: str, compose: dict) -> None:
    objects = validate.render(overlay)
    pod = find(objects, "Deployment", "samq-proxy")["spec"]["template"]["spec"]
    nginx = pod["containers"][0]
    assert nginx["image"] == compose["services"]["proxy"]["image"], "the image compose runs"
    assert "command" not in nginx and "args" not in nginx, "the image's own nginx.conf includes conf.d/*.conf"
    mounts = {m["mountPath"]: m for m in nginx["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config = volumes[mounts["/etc/nginx/conf.d"]["name"]]["configMap"]["name"]
    assert find(objects, "ConfigMap", config)["data"] == {"default.conf": NGINX_CONF.read_text()}, "samq.conf itself"
    # Non-root on a read-only root: the image's nginx user, and writable folders for temp files and the pid.
    assert pod["securityContext"]["runAsUser"] == 101 and nginx["securityContext"]["readOnlyRootFilesystem"]
    for path in ("/var/cache/nginx", "/run"):
        assert "emptyDir" in volumes[mounts[path]["name"]], path
    listen = int(nginx_value("listen")[0])
    assert nginx["ports"] == [{"name": "http", "containerPort": listen}], "an unprivileged port: not root"
    for probe in ("readinessProbe", "livenessProbe"):
        assert nginx[probe]["httpGet"] == {"path": "/nginx-healthz", "port": "http"}, "the proxy's own answer"
    service = find(objects, "Service", "samq-proxy")["spec"]
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert service["selector"].items() <= find(objects, "Deployment", "samq-proxy")["spec"]["template"][
        "metadata"]["labels"].items()
    # The upstream in samq.conf is the gateway's Service, on the gateway container's port.
    host, port = nginx_value("server", ("upstream samq_gateway",))[0].split(":")
    gateway = find(objects, "Service", host)["spec"]["ports"]
    assert [p["port"] for p in gateway] == [int(port)]
    assert gateway[0]["targetPort"] in [p["name"] for p in container(objects, host)["ports"]]


def test_gateway_ready_on_readyz_and_scaled_on_cpu(prod: list[dict]) -> None:
    gateway = container(prod, "samq-gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "nvidia.com/gpu" not in gateway["resources"].get("limits", {})
    assert "replicas" not in find(prod, "Deployment", "samq-gateway")["spec"], "the HPA owns the count"
    hpa = find(prod, "HorizontalPodAutoscaler", "samq-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "samq-gateway"
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_webhook_sender_deployment(prod: list[dict], compose: dict) -> None:
    hooks = container(prod, "samq-webhooks")
    assert hooks["command"] == WEBHOOK_CMD == compose["services"]["webhooks"]["command"]
    assert hooks["image"] == container(prod, "samq-gateway")["image"], "the thin image, another command"
    ping = hooks["livenessProbe"]["exec"]["command"][-1]
    assert "inspect ping -d samq-webhooks@$HOSTNAME" in ping, "pings the node name its --hostname gives it"


@pytest.mark.parametrize("overlay", ["prod", "dev"])
def test_every_deployment_has_a_pdb_and_resolvable_config(overlay: str, clean_env: pytest.MonkeyPatch) -> None:
    objects = validate.render(overlay)
    pdbs = [o["spec"]["selector"]["matchLabels"] for o in objects if o["kind"] == "PodDisruptionBudget"]
    secrets = {o["metadata"]["name"]: o.get("stringData", {}) for o in objects if o["kind"] == "Secret"}
    configs = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    for dep in (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("samq-")):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in pdbs), f"{dep['metadata']['name']}: no PDB"
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            for src in c.get("envFrom", []):
                assert src["configMapRef"]["name"] in configs
            for var in c.get("env", []):
                assert var["name"] in SETTING_VARS or not var["name"].startswith("SAMQ_"), var["name"]
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]], f"{ref} not in the overlay's Secret"
    unknown = sorted(k for k in configs["samq-settings"] if k not in SETTING_VARS)
    assert not unknown, f"ConfigMap keys that are not settings: {unknown}"
    settings = config_settings(objects, clean_env)
    assert settings.storage.startswith("s3://") and settings.model_dir == Path("/models")
    assert settings.models == ("tiny-random" if overlay == "dev" else "large")
    assert {"redis-address", "redis-password", "admin-key"} <= set(secrets["samq-secrets"])


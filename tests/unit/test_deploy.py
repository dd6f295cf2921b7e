"""The fleet's files checked against the code they must agree with, without a Docker engine or a cluster.

What is read, as text (tests/deploy_files.py; no subprocess): docker-compose.yml (+ the CPU override),
deploy/*.Dockerfile, .dockerignore, the proxy's deploy/nginx/samq.conf and docs/DEPLOY.md. What they are checked
against: shared/settings.py (every SAMQ_* variable is a setting, and each service's environment parses into valid
Settings), shared/names.py (queue names, imported, never copied), gateway/supervisor.py (the worker image's command
line is `samq run`'s), pyproject.toml (what each image installs: no torch in the gateway's) and the task time limit
(stop grace periods). One test queues tasks through Celery on the test Redis to show the lists KEDA reads are where
messages really sit. The Kubernetes overlays, which `kubectl kustomize` renders, are checked in tests/deploy/
(probes, PodDisruptionBudgets, the HPA and KEDA triggers, the ConfigMaps' settings, the gateway's command line, the
body limit nginx repeats). `make lint` runs the tools themselves (deploy/validate.py: schemas, docker-compose
config, hadolint, nginx -t); tests/integration/test_proxy.py runs nginx with samq.conf.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest
import redis
from packaging.requirements import Requirement

from gateway.supervisor import worker_command
from shared import names
from shared.celery_apps import make_celery
from shared.settings import Settings
from tests.deploy_files import (
    COMPOSE,
    COMPOSE_CPU,
    GATEWAY_DOCKERFILE,
    ROOT,
    SETTING_VARS,
    WEBHOOK_CMD,
    WORKER_DOCKERFILE,
    arg_defaults,
    args_of,
    environment,
    exec_cmd,
    expand_args,
    instructions,
    load_script,
    long_options,
    nginx_value,
    read_yaml,
    resolve,
    without_samq_env,
)

DOCKERIGNORE = ROOT / ".dockerignore"

SAMQ_VAR = re.compile(r"\bSAMQ_[A-Z0-9_]+\b")
GPU_STACK = {"torch", "torchvision", "transformers", "sam2", "triton"}


requirements = load_script("requirements")


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    return read_yaml(COMPOSE)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return without_samq_env(monkeypatch)


def user_is_not_root(path: Path) -> None:
    users = args_of(path, "USER")
    assert users, f"{path.name}: no USER, the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"{path.name}: final USER is root"


@pytest.fixture(scope="module")
def compose_cpu() -> dict:
    return read_yaml(COMPOSE_CPU)


def duration_s(text: str) -> float:
    """A Compose duration (1m30s, 660s, 11m) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"not a duration: {text}"
    return sum(float(n) * units[u] for n, u in parts)


def closure(reqs: list[str]) -> set[str]:
    """Distribution names installed by `reqs`, following their dependencies as installed in this environment."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in reqs]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here (an optional platform dependency): nothing further to follow
        for sub in dist.requires or []:
            todo += [(Requirement(sub), e) for e in ("", *req.extras)]
    return {k.split("[")[0] for k in seen}


# ---------------------------------------------------------------------------------------------- compose


def test_compose_parses_with_expected_services(compose: dict) -> None:
    assert "version" not in compose, "the top-level `version:` key is obsolete"
    services = compose.get("services")
    assert isinstance(services, dict)
    assert {"redis", "minio", "createbuckets", "gateway", "proxy", "worker", "webhooks", "flower"} == set(services)
    for name, service in services.items():
        assert "profiles" not in service, f"{name}: `docker compose up` must start the whole fleet"


def test_every_build_dockerfile_exists(compose: dict, compose_cpu: dict) -> None:
    built = {}
    for name, service in [*compose["services"].items(), *compose_cpu["services"].items()]:
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (ROOT / build.get("context", ".")).resolve()
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        built[name] = dockerfile
    assert built == {"gateway": GATEWAY_DOCKERFILE, "worker": WORKER_DOCKERFILE, "worker-cpu": WORKER_DOCKERFILE}


@pytest.mark.parametrize("dockerfile", [GATEWAY_DOCKERFILE, WORKER_DOCKERFILE], ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist_and_are_not_ignored(dockerfile: Path) -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    copies = [rest.split() for rest in args_of(dockerfile, "COPY") + args_of(dockerfile, "ADD")]
    assert copies, f"{dockerfile.name} copies nothing"
    for parts in copies:
        if any(p.startswith("--from") for p in parts):
            continue
        for src in [p for p in parts[:-1] if not p.startswith("--")]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} does not exist"
            assert src.rstrip("/").split("/")[0] not in ignored, f"{dockerfile.name}: {src} is in .dockerignore"


def test_samq_variables_are_settings(compose: dict, compose_cpu: dict) -> None:
    files = (COMPOSE, COMPOSE_CPU, GATEWAY_DOCKERFILE, WORKER_DOCKERFILE)
    used = {var for path in files for var in SAMQ_VAR.findall(path.read_text())}
    for service in (*compose["services"].values(), *compose_cpu["services"].values()):
        used |= {k for k in environment(service) if k.startswith("SAMQ_")}
    assert {"SAMQ_REDIS_URL", "SAMQ_S3_ENDPOINT_URL", "SAMQ_S3_BUCKET", "SAMQ_MODEL_DIR", "SAMQ_HOST"} <= used
    unknown = sorted(used - SETTING_VARS)
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_compose_environment_makes_valid_settings(compose: dict, compose_cpu: dict,
                                                  clean_env: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    expected_bucket = resolve(environment(services["gateway"])["SAMQ_S3_BUCKET"])
    cases = {name: environment(services[name]) for name in ("gateway", "worker", "webhooks")}
    cases["worker-cpu"] = environment(compose_cpu["services"]["worker-cpu"])
    for name, env in cases.items():
        with clean_env.context() as mp:
            for key, value in env.items():
                mp.setenv(key, resolve(value))
            settings = Settings()
        assert settings.redis_url == "redis://redis:6379/0", name
        assert settings.s3_endpoint_url == "http://minio:9000", name
        assert settings.storage == f"s3://{expected_bucket}", name
        assert settings.s3_access_key_id and settings.s3_secret_access_key, name
        assert settings.models == ("tiny-random" if name == "worker-cpu" else "large"), name
        if name == "gateway":
            assert settings.host == "0.0.0.0"
        if name.startswith("worker"):
            assert settings.model_dir == Path("/models")
            assert env.get("HF_HUB_OFFLINE") == "1"


def test_startup_order_and_health(compose: dict) -> None:
    services = compose["services"]
    for name in ("gateway", "worker", "webhooks"):
        depends = services[name].get("depends_on")
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["minio"]["condition"] == "service_healthy", name
        assert depends["createbuckets"]["condition"] == "service_completed_successfully", name
    assert services["createbuckets"]["depends_on"]["minio"]["condition"] == "service_healthy"

    assert services["redis"]["image"].startswith("redis:7")
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert services["minio"]["healthcheck"]["test"]

    check = services["gateway"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert "urllib" in check[3] and "/healthz" in check[3] and ":8000" in check[3]
    compile(check[3], "healthcheck", "exec")
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "python", "-m", "worker.health", "live"]


def test_redis_persists_and_never_evicts(compose: dict) -> None:
    redis_service = compose["services"]["redis"]
    cmd = redis_service["command"]
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    assert cmd[0] == "redis-server"
    opts = long_options(cmd)
    assert opts.get("--appendonly") == "yes"
    assert opts.get("--maxmemory-policy") == "noeviction"
    assert any(v.split(":")[1] == "/data" for v in redis_service["volumes"])


def test_named_volumes_are_declared(compose: dict, compose_cpu: dict) -> None:
    for data in (compose, compose_cpu):
        declared = set(data.get("volumes") or {})
        for name, service in data["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if not source.startswith((".", "/")):
                    assert source in declared, f"{name}: volume {source} not declared at top level"
    declared = set(compose["volumes"])
    for name in ("redis", "minio"):
        sources = [v.split(":")[0] for v in compose["services"][name]["volumes"]]
        assert any(s in declared for s in sources), f"{name}: data not on a named volume"


def test_createbuckets_makes_the_bucket_and_its_lifecycle_rule(compose: dict) -> None:
    services = compose["services"]
    job = services["createbuckets"]
    assert job["image"].startswith("minio/mc:RELEASE.")
    assert job.get("restart", "no") == "no"
    script = job["command"]
    script = resolve(" ".join(script) if isinstance(script, list) else script)
    bucket = resolve(environment(services["gateway"])["SAMQ_S3_BUCKET"])
    assert "mc alias set local http://minio:9000" in script
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert f"mc ilm import local/{bucket}" in script, "the lifecycle rule (replaced whole, so idempotent)"
    rule = json.loads(re.search(r"printf '(\{.*\})'", script).group(1).replace("%s", "8"))
    assert rule["Rules"][0]["Status"] == "Enabled" and rule["Rules"][0]["Expiration"]["Days"] == 8
    assert Settings.model_fields["retention_s"].default < 8 * 86400, "the backstop must not beat samq's retention"

    minio = {k: resolve(v) for k, v in environment(services["minio"]).items()}
    assert {k: resolve(v) for k, v in environment(job).items() if k.startswith("MINIO_ROOT")} == minio
    for name in ("gateway", "worker", "webhooks"):
        env = {k: resolve(v) for k, v in environment(services[name]).items()}
        assert env["SAMQ_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["SAMQ_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses root passwords under 8 characters"


def test_gateway_service(compose: dict) -> None:
    gateway = compose["services"]["gateway"]
    assert "ports" not in gateway, "clients reach the gateway through the proxy only"
    assert [str(p) for p in gateway["expose"]] == ["8000"]
    assert "samq-gateway" in gateway["networks"]["default"]["aliases"], "the name samq.conf's upstream uses"
    assert "deploy" not in gateway, "the gateway must not reserve a GPU"
    assert "command" not in gateway and "entrypoint" not in gateway, "gateway runs the image's CMD"


def test_proxy_service_is_the_only_public_port(compose: dict) -> None:
    services = compose["services"]
    proxy = services["proxy"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+-alpine", proxy["image"]), "the official image, pinned"
    assert proxy["volumes"] == ["./deploy/nginx/samq.conf:/etc/nginx/conf.d/default.conf:ro"]
    listen = nginx_value("listen")[0]
    assert proxy["ports"] == [f"8000:{listen}"], "users keep port 8000"
    assert resolve(environment(services["gateway"])["SAMQ_PUBLIC_URL"]).endswith(":8000")
    assert proxy["depends_on"] == {"gateway": {"condition": "service_healthy"}}, "nginx resolves the gateway at start"
    check = proxy["healthcheck"]["test"]
    assert check[0] == "CMD" and f"http://127.0.0.1:{listen}/nginx-healthz" in check
    assert nginx_value("return", ("server", "location = /nginx-healthz"))[0] == "200"
    for name, service in services.items():  # everything else is on loopback, or not published at all
        for port in service.get("ports", []) if name != "proxy" else []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_worker_service(compose: dict, clean_env: pytest.MonkeyPatch) -> None:
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia"
    assert devices[0]["count"] == 1
    assert "gpu" in devices[0]["capabilities"]
    model_dir = environment(worker)["SAMQ_MODEL_DIR"]
    assert f"./models:{model_dir}" in [v.removesuffix(":ro") for v in worker["volumes"]]
    if "command" in worker:  # an override must still be the supervisor's command line
        cmd = worker["command"]
        assert (cmd if isinstance(cmd, list) else cmd.split()) == exec_cmd(WORKER_DOCKERFILE)
    assert "entrypoint" not in worker
    limit = int(resolve(environment(worker)["SAMQ_TASK_TIME_LIMIT_S"]))
    assert duration_s(worker["stop_grace_period"]) > limit, "warm shutdown must outlast the job in hand"


def test_webhook_sender_runs_the_thin_image(compose: dict) -> None:
    services = compose["services"]
    hooks = services["webhooks"]
    assert hooks["image"] == services["gateway"]["image"] and "build" not in hooks
    assert hooks["command"] == WEBHOOK_CMD
    assert "deploy" not in hooks


def test_cpu_override_runs_the_fleet_without_a_gpu(compose: dict, compose_cpu: dict) -> None:
    services = compose_cpu["services"]
    assert services["worker"] == {"profiles": ["gpu"]}, "the GPU worker is switched off, nothing else changed"
    cpu = services["worker-cpu"]
    assert "deploy" not in cpu and "profiles" not in cpu
    assert cpu["build"]["dockerfile"] == "deploy/worker.Dockerfile"
    assert "/whl/cpu" in cpu["build"]["args"]["TORCH_INDEX_URL"]
    assert "cuda" not in cpu["build"]["args"]["CUDA_IMAGE"]
    assert environment(cpu)["SAMQ_MODELS"] == "tiny-random" == environment(services["gateway"])["SAMQ_MODELS"]
    assert cpu["depends_on"] == compose["services"]["worker"]["depends_on"]
    assert cpu["healthcheck"]["test"] == compose["services"]["worker"]["healthcheck"]["test"]
    assert duration_s(cpu["stop_grace_period"]) == duration_s(compose["services"]["worker"]["stop_grace_period"])


def test_flower_watches_the_broker(compose: dict) -> None:
    services = compose["services"]
    flower = services["flower"]
    assert any(str(p) == "127.0.0.1:5555:5555" for p in flower["ports"]), "no authentication: loopback only"
    broker = resolve(environment(services["worker"])["SAMQ_REDIS_URL"])
    assert f"--broker={broker}" in flower["command"]


# ---------------------------------------------------------------------------------------------- images


def run_requirements(dockerfile: Path) -> list[str]:
    """The extras each `deploy/requirements.py` call of a Dockerfile names (one call per image)."""
    calls = [r for r in args_of(dockerfile, "RUN") if "requirements.py" in r]
    assert len(calls) == 1, f"{dockerfile.name}: install the requirement set of pyproject.toml exactly once"
    argv = calls[0].split("&&")[0].split(">")[0].split()
    assert argv[:3] == ["python", "/src/requirements.py", "/src/pyproject.toml"], argv
    return argv[3:]


def test_gateway_requirement_set_has_no_torch() -> None:
    extras = run_requirements(GATEWAY_DOCKERFILE)
    assert extras == [], "the gateway image installs the base dependencies only"
    reqs = requirements.requirement_set(ROOT / "pyproject.toml", extras)
    installed = closure(reqs)
    assert {"flask", "gunicorn", "celery", "redis", "boto3"} <= installed, "the closure must follow dependencies"
    heavy = {n for n in installed if n in GPU_STACK or n.startswith("nvidia-")}
    assert not heavy, f"the gateway image would install {sorted(heavy)}"
    # The worker's set is the one that has it, so the check above can fail.
    worker_reqs = requirements.requirement_set(ROOT / "pyproject.toml", run_requirements(WORKER_DOCKERFILE))
    assert "torch" in {Requirement(r).name for r in worker_reqs}


def test_gateway_image_is_thin_multistage_and_healthy() -> None:
    text = " ".join(rest for _, rest in instructions(GATEWAY_DOCKERFILE)).lower()
    for heavy in ("torch", "sam2", "transformers", "[worker]", "cuda"):
        assert heavy not in text, f"gateway.Dockerfile installs {heavy}"
    defaults = arg_defaults(GATEWAY_DOCKERFILE)
    froms = [expand_args(f, defaults) for f in args_of(GATEWAY_DOCKERFILE, "FROM")]
    assert len(froms) == 2 and all(f.startswith("python:3.11.") and "-slim" in f for f in froms), froms
    assert any("--from=build" in c for c in args_of(GATEWAY_DOCKERFILE, "COPY")), "runtime copies the built venv"
    assert "8000" in args_of(GATEWAY_DOCKERFILE, "EXPOSE")
    assert "/healthz" in args_of(GATEWAY_DOCKERFILE, "HEALTHCHECK")[0]
    user_is_not_root(GATEWAY_DOCKERFILE)


def test_worker_image_installs_the_gpu_stack() -> None:
    defaults = arg_defaults(WORKER_DOCKERFILE)
    froms = [expand_args(f, defaults) for f in args_of(WORKER_DOCKERFILE, "FROM")]
    base = froms[0].split()[0]
    assert base == "nvidia/cuda:13.0.1-runtime-ubuntu24.04", base
    assert froms[1].split()[0] == base, "build and runtime stages share the CUDA base"
    # torch's CUDA build matches the base image's CUDA release (13.0 -> cu130).
    cuda = re.match(r"nvidia/cuda:(\d+)\.(\d+)", base).groups()
    assert defaults["TORCH_INDEX_URL"].endswith(f"/whl/cu{cuda[0]}{cuda[1]}")
    runs = [expand_args(r, defaults) for r in args_of(WORKER_DOCKERFILE, "RUN")]
    pip = [r for r in runs if "pip install" in r]
    assert any("torch==2.14.1" in r and "torchvision==0.29.1" in r for r in pip)
    assert run_requirements(WORKER_DOCKERFILE) == ["worker"]
    sam2 = [r for r in pip if "sam2==1.1.0" in r]
    assert sam2, "worker.Dockerfile does not install sam2==1.1.0"
    assert all("--no-build-isolation" in r and "SAM2_BUILD_CUDA=" in r for r in sam2)
    assert defaults.get("SAM2_BUILD_CUDA") in {"0", "1"}
    torch_step = next(i for i, r in enumerate(runs) if "torch==2.14.1" in r)
    sam2_step = next(i for i, r in enumerate(runs) if "sam2==1.1.0" in r)
    assert torch_step < sam2_step, "sam2 is built against torch, which must be installed first"
    env = " ".join(args_of(WORKER_DOCKERFILE, "ENV"))
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", env)
    assert re.search(r"\bSAMQ_MODEL_DIR=/models\b", env)
    assert args_of(WORKER_DOCKERFILE, "HEALTHCHECK")[0].endswith('CMD ["python", "-m", "worker.health", "live"]')
    user_is_not_root(WORKER_DOCKERFILE)


def test_worker_image_can_bake_the_weights() -> None:
    stages = [f.split() for f in args_of(WORKER_DOCKERFILE, "FROM")]
    assert ["scratch", "AS", "models"] in stages, "an empty `models` stage that --build-context models=... replaces"
    assert ["worker", "AS", "worker-baked"] in stages
    assert stages[-1][0] == "worker", "a build without --target (compose) gives the image without weights"
    text = WORKER_DOCKERFILE.read_text()
    assert "--build-context models=./models" in text and "make models" in text
    assert any(c.startswith("--from=models") and c.endswith("/models/") for c in args_of(WORKER_DOCKERFILE, "COPY"))
    assert "samq models check" in args_of(WORKER_DOCKERFILE, "RUN")[-1], "a baked image without its weights fails"
    assert args_of(WORKER_DOCKERFILE, "CMD") and instructions(WORKER_DOCKERFILE)[-1][0] == "FROM"


def test_worker_cmd_matches_supervisor_and_queues(clean_env: pytest.MonkeyPatch) -> None:
    cmd = exec_cmd(WORKER_DOCKERFILE)
    expected = worker_command(Settings())
    assert expected[1:3] == ["-m", "celery"]
    assert cmd == ["celery", *expected[3:]]
    opts = long_options(cmd)
    assert opts["--pool"] == "threads"
    assert "--concurrency" not in opts  # the app sets it from SAMQ_WORKER_SLOTS
    assert opts["--prefetch-multiplier"] == "1"
    assert opts["--queues"].split(",") == list(names.INFER_QUEUES)
    assert cmd[cmd.index("-A") + 1] == "worker.celery_app:app"
    # The probe's default hostname is the one this command line gives the worker.
    assert cmd[cmd.index("--hostname") + 1].replace("%h", "") == "samq-worker@"
    assert health_default_prefix() == "samq-worker@"


def health_default_prefix() -> str:
    from worker import health

    return health.DEFAULT_HOSTNAME.split("@")[0] + "@"


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    for needed in (".git", ".venv", "models", "var", ".pytest_cache", "**/__pycache__"):
        assert needed in entries, f".dockerignore lacks {needed}"
    for kept in ("pyproject.toml", "gateway", "shared", "worker", "deploy"):
        assert kept not in entries, f".dockerignore excludes {kept}, which the images need"


# ---------------------------------------------------------------------------------------------- kubernetes


def test_keda_lists_are_where_celery_puts_messages(rclient: redis.Redis, redis_url: str,
                                                   clean_env: pytest.MonkeyPatch) -> None:
    """The names KEDA reads are real: a queued job is a list entry, a taken one sits in `unacked` until acked."""
    app = make_celery(Settings(redis_url=redis_url))
    for queue in names.INFER_QUEUES:
        app.send_task(names.TASK_SEGMENT, args=["job"], queue=queue)
    assert [rclient.llen(q) for q in names.INFER_QUEUES] == [1, 1, 1]
    with app.connection_for_read() as conn:
        message = conn.SimpleQueue(names.QUEUE_HIGH).get(timeout=5)
        assert rclient.llen(names.QUEUE_HIGH) == 0 and rclient.hlen("unacked") == 1
        message.ack()
    assert rclient.hlen("unacked") == 0


def test_deploy_docs_name_what_was_not_run() -> None:
    text = (ROOT / "docs" / "DEPLOY.md").read_text()
    assert "not run here" in text.lower() and "make lint" in text
    for section in ("Sizing", "Scaling knobs", "Upgrading without losing jobs", "Load test", "Redis", "Slow clients"):
        assert f"## {section}" in text, section

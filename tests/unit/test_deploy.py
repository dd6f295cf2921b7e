"""Static checks of the container deliverables: docker-compose.yml, deploy/*.Dockerfile, .dockerignore.

No Docker engine is needed (or used): the files are parsed and checked against the code they must agree with,
shared/settings.py (every SAMQ_* variable is a setting), shared/names.py (the worker's queues) and
gateway/supervisor.py (the same gateway and worker command lines as `samq run`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.supervisor import gateway_command, worker_command
from shared import names
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_DOCKERFILE = ROOT / "deploy" / "gateway.Dockerfile"
WORKER_DOCKERFILE = ROOT / "deploy" / "worker.Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SETTING_VARS = {f"SAMQ_{name.upper()}" for name in Settings.model_fields}
SAMQ_VAR = re.compile(r"\bSAMQ_[A-Z0-9_]+\b")
COMPOSE_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
DOCKER_ARG = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# ---------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SAMQ_* from the test runner's environment leaks into Settings()."""
    import os

    for var in list(os.environ):
        if var.startswith("SAMQ_"):
            monkeypatch.delenv(var)
    return monkeypatch


def resolve(value: object) -> str:
    """What Compose makes of a value with no variables set: ${X:-default} -> default, $$ -> $."""
    text = str(value)
    text = COMPOSE_INTERPOLATION.sub(lambda m: m.group(2) or "", text)
    return text.replace("$$", "$")


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict (Compose accepts a mapping or a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        keyword, _, rest = (buf + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    return out


def args_of(path: Path, keyword: str) -> list[str]:
    return [rest for kw, rest in instructions(path) if kw == keyword]


def arg_defaults(path: Path) -> dict[str, str]:
    defaults = {}
    for rest in args_of(path, "ARG"):
        name, _, default = rest.partition("=")
        defaults[name.strip()] = default.strip().strip('"')
    return defaults


def expand_args(text: str, defaults: dict[str, str]) -> str:
    """Substitute ARG defaults into an instruction (unknown variables are left as they are)."""
    return DOCKER_ARG.sub(lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), text)


def exec_cmd(path: Path) -> list[str]:
    """The image's final CMD, which must be in exec (JSON) form."""
    cmds = args_of(path, "CMD")
    assert cmds, f"{path.name} has no CMD"
    cmd = json.loads(cmds[-1])
    assert isinstance(cmd, list) and all(isinstance(t, str) for t in cmd), f"{path.name}: CMD is not exec form"
    return cmd


def long_options(argv: list[str]) -> dict[str, str | None]:
    """--flag value pairs of a command line (None for a flag without a value)."""
    out: dict[str, str | None] = {}
    for i, tok in enumerate(argv):
        if tok.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            out[tok] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def user_is_not_root(path: Path) -> None:
    users = args_of(path, "USER")
    assert users, f"{path.name}: no USER, the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"{path.name}: final USER is root"


# ---------------------------------------------------------------------------------------------- compose


def test_compose_parses_with_expected_services(compose: dict) -> None:
    assert "version" not in compose, "the top-level `version:` key is obsolete"
    services = compose.get("services")
    assert isinstance(services, dict)
    assert {"redis", "minio", "createbuckets", "gateway", "worker", "flower"} <= set(services)


def test_every_build_dockerfile_exists(compose: dict) -> None:
    built = {}
    for name, service in compose["services"].items():
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
    assert built.get("gateway") == GATEWAY_DOCKERFILE
    assert built.get("worker") == WORKER_DOCKERFILE


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


def test_samq_variables_are_settings(compose: dict) -> None:
    texts = {p.name: p.read_text() for p in (COMPOSE, GATEWAY_DOCKERFILE, WORKER_DOCKERFILE)}
    used = {var for text in texts.values() for var in SAMQ_VAR.findall(text)}
    for service in compose["services"].values():
        used |= {k for k in environment(service) if k.startswith("SAMQ_")}
    assert {"SAMQ_REDIS_URL", "SAMQ_S3_ENDPOINT_URL", "SAMQ_S3_BUCKET", "SAMQ_MODEL_DIR", "SAMQ_HOST"} <= used
    unknown = sorted(used - SETTING_VARS)
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_compose_environment_makes_valid_settings(compose: dict, clean_env: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    expected_bucket = resolve(environment(services["gateway"])["SAMQ_S3_BUCKET"])
    for name in ("gateway", "worker"):
        env = environment(services[name])
        with clean_env.context() as mp:
            for key, value in env.items():
                mp.setenv(key, resolve(value))
            settings = Settings()
        assert settings.redis_url == "redis://redis:6379/0", name
        assert settings.s3_endpoint_url == "http://minio:9000", name
        assert settings.storage == f"s3://{expected_bucket}", name
        assert settings.s3_access_key_id and settings.s3_secret_access_key, name
        assert settings.models == "large", name
        if name == "gateway":
            assert settings.host == "0.0.0.0"
        else:
            assert settings.model_dir == Path("/models")
            assert env.get("HF_HUB_OFFLINE") == "1"


def test_startup_order_and_health(compose: dict) -> None:
    services = compose["services"]
    for name in ("gateway", "worker"):
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


def test_redis_persists_and_never_evicts(compose: dict) -> None:
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    assert cmd[0] == "redis-server"
    opts = long_options(cmd)
    assert opts.get("--appendonly") == "yes"
    assert opts.get("--maxmemory-policy") == "noeviction"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])


def test_named_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("redis", "minio"):
        sources = [v.split(":")[0] for v in compose["services"][name]["volumes"]]
        assert any(s in declared for s in sources), f"{name}: data not on a named volume"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared at top level"


def test_createbuckets_makes_the_configured_bucket(compose: dict) -> None:
    services = compose["services"]
    job = services["createbuckets"]
    assert job["image"].startswith("minio/mc")
    assert job.get("restart", "no") == "no"
    script = job["command"]
    script = resolve(" ".join(script) if isinstance(script, list) else script)
    bucket = resolve(environment(services["gateway"])["SAMQ_S3_BUCKET"])
    assert "mc alias set local http://minio:9000" in script
    assert f"mc mb --ignore-existing local/{bucket}" in script
    if shutil.which("sh"):
        subprocess.run(["sh", "-n", "-c", script], check=True)

    minio = {k: resolve(v) for k, v in environment(services["minio"]).items()}
    assert {k: resolve(v) for k, v in environment(job).items() if k.startswith("MINIO_ROOT")} == minio
    for name in ("gateway", "worker"):
        env = {k: resolve(v) for k, v in environment(services[name]).items()}
        assert env["SAMQ_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["SAMQ_S3_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses root passwords under 8 characters"


def test_gateway_service(compose: dict) -> None:
    gateway = compose["services"]["gateway"]
    assert any(str(p).endswith(":8000") for p in gateway["ports"])
    assert "deploy" not in gateway, "the gateway must not reserve a GPU"
    assert "command" not in gateway and "entrypoint" not in gateway, "gateway runs the image's CMD"


def test_worker_service(compose: dict) -> None:
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


def test_flower_is_optional_and_watches_the_broker(compose: dict) -> None:
    services = compose["services"]
    flower = services["flower"]
    assert flower["image"].startswith("mher/flower")
    assert "monitoring" in flower["profiles"]
    assert any(str(p).endswith("5555:5555") for p in flower["ports"])
    broker = resolve(environment(services["worker"])["SAMQ_REDIS_URL"])
    assert f"--broker={broker}" in flower["command"]
    for name in ("redis", "minio", "createbuckets", "gateway", "worker"):
        assert "profiles" not in services[name], f"{name} must start without a profile"


# ---------------------------------------------------------------------------------------------- images


def test_gateway_image_is_thin() -> None:
    text = GATEWAY_DOCKERFILE.read_text().lower()
    for heavy in ("torch", "sam2", "transformers", "[worker]", "cuda"):
        assert heavy not in text, f"gateway.Dockerfile mentions {heavy}"
    assert args_of(GATEWAY_DOCKERFILE, "FROM") == ["python:3.11-slim"]
    runs = args_of(GATEWAY_DOCKERFILE, "RUN")
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", r) for r in runs)
    assert "8000" in args_of(GATEWAY_DOCKERFILE, "EXPOSE")
    user_is_not_root(GATEWAY_DOCKERFILE)


def test_gateway_cmd_matches_supervisor(clean_env: pytest.MonkeyPatch) -> None:
    cmd = exec_cmd(GATEWAY_DOCKERFILE)
    assert cmd[:2] == ["gunicorn", "gateway.wsgi:app"]
    expected = gateway_command(Settings(host="0.0.0.0", port=8000))
    assert expected[1:4] == ["-m", "gunicorn", "gateway.wsgi:app"]
    got = long_options(cmd)
    for flag, value in long_options(expected[4:]).items():
        assert got.get(flag, "<missing>") == value, f"gunicorn {flag}: image has {got.get(flag)}, supervisor {value}"
    assert got["--worker-class"] == "gthread"


def test_worker_image_installs_the_gpu_stack() -> None:
    defaults = arg_defaults(WORKER_DOCKERFILE)
    base = expand_args(args_of(WORKER_DOCKERFILE, "FROM")[-1], defaults)
    assert "cuda" in base.lower() and ("nvidia/cuda" in base or "pytorch/pytorch" in base), base
    runs = [expand_args(r, defaults) for r in args_of(WORKER_DOCKERFILE, "RUN")]
    pip = [r for r in runs if "pip install" in r]
    assert any("torch==2.14.1" in r and "torchvision==0.29.1" in r for r in pip)
    assert any(re.search(r"""pip install [^&]*["']?\.\[worker\]""", r) for r in pip)
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
    assert "samq models download" in WORKER_DOCKERFILE.read_text(), "say how the weights get into /models"
    user_is_not_root(WORKER_DOCKERFILE)


def test_worker_cmd_matches_supervisor_and_queues(clean_env: pytest.MonkeyPatch) -> None:
    cmd = exec_cmd(WORKER_DOCKERFILE)
    expected = worker_command(Settings())
    assert expected[1:3] == ["-m", "celery"]
    assert cmd == ["celery", *expected[3:]]
    opts = long_options(cmd)
    assert opts["--pool"] == "solo"
    assert opts["--concurrency"] == "1"
    assert opts["--prefetch-multiplier"] == "1"
    assert opts["--queues"].split(",") == list(names.INFER_QUEUES)
    assert cmd[cmd.index("-A") + 1] == "worker.celery_app:app"


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    for needed in (".git", ".venv", "models", "var", ".pytest_cache", "**/__pycache__"):
        assert needed in entries, f".dockerignore lacks {needed}"
    for kept in ("pyproject.toml", "gateway", "shared", "worker", "deploy"):
        assert kept not in entries, f".dockerignore excludes {kept}, which the images need"


def test_readme_says_it_was_not_run_here() -> None:
    text = (ROOT / "deploy" / "README.md").read_text()
    assert "not run here: this machine has no docker engine" in text.lower()
    assert "tests/unit/test_deploy.py" in text

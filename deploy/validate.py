"""Validate the deployment files offline, with the real tools and no cluster or Docker engine (`make lint`).

1. Every YAML file under deploy/ and the compose files parses.
2. `kubectl kustomize` renders each overlay of deploy/k8s.
3. Every rendered object validates against the Kubernetes schemas (kubernetes-validate, strict: unknown fields
   are errors), or, for KEDA's kinds, against the CRD schemas vendored in deploy/k8s/schemas (made strict too).
4. `docker-compose config` accepts docker-compose.yml, alone and with docker-compose.cpu.yml.
5. hadolint passes deploy/*.Dockerfile (settings in deploy/hadolint.yaml).
6. `nginx -t` accepts deploy/nginx/samq.conf, included as the official nginx image includes it (nginx_config:
   the image's http{} settings, every path in a temporary folder, the upstream on loopback so that it resolves
   here). Skipped, saying so, where no nginx binary is installed (`.ci/run` installs Debian's).

    .venv/bin/python deploy/validate.py           # exit 0 when everything passes; a summary line per check
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "sentinel")
K8S_VERSION = "1.30.0"  # oldest release the manifests target (autoscaling/v2, policy/v1 and up)
COMPOSE_FILES = (("docker-compose.yml",), ("docker-compose.yml", "docker-compose.cpu.yml"))
CRD_DIR = K8S / "schemas"
NGINX_CONF = ROOT / "deploy" / "nginx" / "samq.conf"
NGINX_UPSTREAM = "server samq-gateway:8000;"  # the one line naming the gateway (compose alias, Kubernetes Service)
NGINX_LISTEN = "listen 8080;"


class Invalid(Exception):
    """A deployment file failed a check."""


class Skipped(Exception):
    """A check whose tool is not installed here."""


def tool(name: str) -> str:
    """A validator's path: next to this Python (the venv's console scripts) first, then PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        raise Invalid(f"{name} not found: `.ci/run` installs it (apt-get install docker-compose kubernetes-client; "
                      "pip install -e '.[dev]' for hadolint and kubernetes-validate)")
    return found


def run(argv: list[str]) -> str:
    """Run a validator; its output on failure, stdout on success."""
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise Invalid(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def yaml_files() -> list[Path]:
    """Every YAML file that ships with the deployment."""
    files = sorted({*ROOT.glob("deploy/**/*.yaml"), *ROOT.glob("deploy/**/*.yml"), *ROOT.glob("docker-compose*.yml")})
    return [f for f in files if "grafana" not in f.parts]


def check_yaml() -> str:
    """Step 1."""
    for path in yaml_files():
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            raise Invalid(f"{path.relative_to(ROOT)}: {exc}") from exc
    return f"{len(yaml_files())} YAML files parse"


def render(overlay: str) -> list[dict]:
    """The objects `kubectl kustomize` makes of one overlay (kustomize's deprecation notes are not errors)."""
    out = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _strict(schema: dict) -> dict:
    """A structural CRD schema that also rejects unknown fields (the API server would prune them silently)."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from every vendored CRD."""
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            for version in crd["spec"]["versions"]:
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                out[key] = _strict(version["schema"]["openAPIV3Schema"])
    return out


def validate_object(obj: dict) -> str:
    """Validate one rendered object; returns which schema set was used."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    schema = crd_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    try:
        if schema is not None:
            jsonschema.Draft202012Validator(schema).validate(obj)
            return "crd"
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        return "k8s"
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise Invalid(f"{name}: {where}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise Invalid(f"{name}: no schema ({exc.message}); vendor its CRD into {CRD_DIR.relative_to(ROOT)}") from None


def check_overlay(overlay: str) -> str:
    """Steps 2 and 3 for one overlay."""
    objects = render(overlay)
    used = [validate_object(obj) for obj in objects]
    return (f"overlay {overlay}: {len(objects)} objects rendered and valid ({used.count('k8s')} against Kubernetes "
            f"{K8S_VERSION}, {used.count('crd')} against the vendored KEDA CRDs)")


def check_compose(files: tuple[str, ...]) -> str:
    """Step 4 for one combination of compose files."""
    argv = [tool("docker-compose")]
    for name in files:
        argv += ["-f", name]
    services = run([*argv, "config", "--services"]).split()
    run([*argv, "config", "-q"])
    return f"docker-compose config {' + '.join(files)}: valid, {len(services)} services"


def nginx_binary() -> str | None:
    """Debian's nginx lives in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)


def nginx_config(workdir: Path, upstream: str = "127.0.0.1:8000", listen: str = "127.0.0.1:8080") -> Path:
    """A main nginx.conf in `workdir` that includes a copy of deploy/nginx/samq.conf; returns its path.

    The main file is the official image's nginx.conf (its http{} settings, which samq.conf must not repeat) with
    every path moved into `workdir`; the copy differs from samq.conf only in the gateway's address (`upstream`,
    host:port, which nginx resolves when it starts) and the address nginx listens on (`listen`). Used by
    check_nginx (`nginx -t`) and tests/integration/test_proxy.py (a real nginx in front of a real gunicorn).
    """
    text = NGINX_CONF.read_text()
    for line, value in ((NGINX_UPSTREAM, f"server {upstream};"), (NGINX_LISTEN, f"listen {listen};")):
        if text.count(line) != 1:
            raise Invalid(f"{NGINX_CONF.relative_to(ROOT)}: expected `{line}` exactly once")
        text = text.replace(line, value)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "samq.conf").write_text(text)
    main = workdir / "nginx.conf"
    main.write_text(f"""# the official nginx image's nginx.conf, paths moved into {workdir}
worker_processes 1;
error_log {workdir}/error.log notice;
pid {workdir}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent';
    access_log {workdir}/access.log main;
    sendfile on;
    keepalive_timeout 65;
    client_body_temp_path {workdir}/client_temp;
    proxy_temp_path {workdir}/proxy_temp;
    fastcgi_temp_path {workdir}/fastcgi_temp;
    uwsgi_temp_path {workdir}/uwsgi_temp;
    scgi_temp_path {workdir}/scgi_temp;
    include {workdir}/samq.conf;
}}
""")
    return main


def check_nginx() -> str:
    """Step 6."""
    nginx = nginx_binary()
    if nginx is None:
        raise Skipped("nginx -t: no nginx binary here (`.ci/run` installs Debian's nginx): "
                      f"{NGINX_CONF.relative_to(ROOT)} not checked")
    with tempfile.TemporaryDirectory(prefix="samq-nginx-") as tmp:
        main = nginx_config(Path(tmp))
        argv = [nginx, "-t", "-e", str(Path(tmp) / "error.log"), "-c", str(main)]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr + (Path(tmp) / "error.log").read_text()
    # A warning is a mistake here too (a directive nginx ignores, a limit it cannot honour).
    if proc.returncode != 0 or "[warn]" in out:
        raise Invalid(f"{' '.join(argv)} ({NGINX_CONF.relative_to(ROOT)}) failed ({proc.returncode}):\n{out}")
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    return f"nginx -t: {NGINX_CONF.relative_to(ROOT)} valid ({version.removeprefix('nginx version: ')})"


def check_dockerfiles() -> str:
    """Step 5."""
    files = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("deploy/*.Dockerfile"))
    run([tool("hadolint"), "--config", "deploy/hadolint.yaml", *files])
    return f"hadolint: {len(files)} Dockerfiles clean"


def main() -> int:
    """Run every check; print one line each; exit 1 on the first failure of any."""
    checks = [check_yaml, *(lambda o=o: check_overlay(o) for o in OVERLAYS),
              *(lambda f=f: check_compose(f) for f in COMPOSE_FILES), check_dockerfiles, check_nginx]
    failed = 0
    for check in checks:
        try:
            print(f"ok    {check()}", flush=True)
        except Skipped as exc:
            print(f"skip  {exc}", flush=True)
        except Invalid as exc:
            print(f"FAIL  {exc}", flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

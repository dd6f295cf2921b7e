"""Readers of the fleet's files, for the tests that check them: docker-compose.yml, the Dockerfiles, the proxy's
deploy/nginx/samq.conf and the scripts in deploy/. Plain text and YAML parsing: no tool, no subprocess; the
finders at the end read the objects a Kubernetes overlay renders to (kubectl renders them in tests/deploy/)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from shared import names
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
GATEWAY_DOCKERFILE = ROOT / "deploy" / "gateway.Dockerfile"
WORKER_DOCKERFILE = ROOT / "deploy" / "worker.Dockerfile"
NGINX_CONF = ROOT / "deploy" / "nginx" / "samq.conf"
SETTING_VARS = {f"SAMQ_{name.upper()}" for name in Settings.model_fields}
COMPOSE_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
DOCKER_ARG = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
# The webhook sender's command line (the contract; the same as `samq run`'s once gateway/supervisor.py has it).
WEBHOOK_CMD = ["celery", "-A", "worker.webhook_app:app", "worker", "--pool", "threads", "--concurrency", "32",
               "--queues", names.QUEUE_WEBHOOKS, "--hostname", "samq-webhooks@%h", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle"]
NGINX_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|[{};]|[^\s{};'"#]+|#[^\n]*""")


def read_yaml(path: Path) -> dict:
    """A Compose file as a mapping."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def without_samq_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No SAMQ_* from the test runner's environment leaks into Settings()."""
    for var in list(os.environ):
        if var.startswith("SAMQ_"):
            monkeypatch.delenv(var)
    return monkeypatch


def load_script(name: str):
    """A module from deploy/ (not a package): requirements.py, validate.py."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _nginx_unquote(word: str) -> str:
    """A quoted nginx argument's text: nginx reads \\n, \\t, \\r, drops the backslash of \\" \\' \\\\, keeps others."""
    if word[:1] not in "'\"":
        return word
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), word[1:-1])


def nginx_directives(text: str) -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(enclosing blocks, name, arguments) of every directive in an nginx config; quotes stripped, comments dropped.

    A block is named by its directive and arguments: ("server",), ("upstream samq_gateway",), ("location /",).
    """
    out: list[tuple[tuple[str, ...], str, list[str]]] = []
    stack: list[str] = []
    words: list[str] = []
    for tok in NGINX_TOKEN.findall(text):
        if tok.startswith("#"):
            continue
        if tok in ("{", ";"):
            name, args = words[0], [_nginx_unquote(w) for w in words[1:]]
            out.append((tuple(stack), name, args))
            if tok == "{":
                stack.append(" ".join(words))
            words = []
        elif tok == "}":
            assert not words, f"nginx config: {words} before a closing brace"
            stack.pop()
        else:
            words.append(tok)
    assert not stack and not words, "nginx config: unbalanced braces or a missing semicolon"
    return out


def nginx_value(name: str, context: tuple[str, ...] = ("server",)) -> list[str]:
    """The arguments of the one `name` directive directly in `context` of deploy/nginx/samq.conf."""
    found = [args for ctx, n, args in nginx_directives(NGINX_CONF.read_text()) if n == name and ctx == context]
    assert len(found) == 1, f"samq.conf: {len(found)} `{name}` directives in {context or 'http'}"
    return found[0]


def nginx_seconds(value: str) -> float:
    """An nginx time (10s, 1m, 90) in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]


def image_env(path: Path) -> dict[str, str]:
    """The ENV a Dockerfile sets (KEY=VALUE pairs, shell-quoted)."""
    pairs = [tok.split("=", 1) for rest in args_of(path, "ENV") for tok in shlex.split(rest)]
    return dict(pairs)


# ---- the Kubernetes objects an overlay renders to (tests/deploy/ renders them with kubectl)


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def container(objects: list[dict], deployment: str) -> dict:
    return find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def config_settings(objects: list[dict], env: pytest.MonkeyPatch) -> Settings:
    """The Settings a samq pod gets from the rendered ConfigMap and Secret."""
    with env.context() as mp:
        for key, value in find(objects, "ConfigMap", "samq-settings")["data"].items():
            mp.setenv(key, value)
        for key, value in find(objects, "Secret", "samq-secrets")["stringData"].items():
            if key.startswith("SAMQ_"):
                mp.setenv(key, value)
        return Settings()


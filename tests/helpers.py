"""Small helpers the test suites share: ports, waiting, processes, real photographs."""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import skimage
from PIL import Image

# Real photographs shipped inside scikit-image (see tests/PHOTOS.md for their licences).
PHOTO_DIR = Path(skimage.__file__).parent / "data"
ROCKET_JPG = PHOTO_DIR / "rocket.jpg"  # 640x427 JPEG photograph, NASA, public domain
ASTRONAUT_PNG = PHOTO_DIR / "astronaut.png"  # 512x512 RGB PNG photograph, NASA, public domain
CHELSEA_PNG = PHOTO_DIR / "chelsea.png"  # 451x300 PNG photograph of a cat, CC0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1) -> object:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a service process in its own process group, output to a log file."""
    fh = log.open("ab")
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    """Stop a process group, escalating to SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def b64(path: Path) -> str:
    """A file as base64 text."""
    return base64.b64encode(path.read_bytes()).decode()


def jpeg_bytes(image: Image.Image, **save: object) -> bytes:
    """Encode an image as JPEG."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", **save)
    return buf.getvalue()


def open_image(data: bytes) -> Image.Image:
    """Decode bytes to a loaded PIL image."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def load_bench(name: str) -> ModuleType:
    """A script from bench/ as a module (bench/ is scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


class Gated:
    """A models callable for worker.device.Device that holds the device thread on its first call until released
    (`gate.set()`), so that the requests of a test pile up behind it."""

    def __init__(self, models: object) -> None:
        self.models, self.gate, self.calls = models, threading.Event(), 0

    def __call__(self) -> object:
        self.calls += 1
        if self.calls == 1:
            assert self.gate.wait(30)
        return self.models

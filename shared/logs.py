"""Log lines for the gateway and the workers: one JSON object per line (SAMQ_LOG_FORMAT=json) or readable text.

Every line written while a request or a job is in hand carries its `request_id` and `job_id`: they are bound
in context variables (per thread, per task) and added by a filter on the one handler.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from celery.signals import celeryd_init, setup_logging

CONTEXT_FIELDS = ("request_id", "job_id")
_context: dict[str, ContextVar[str | None]] = {name: ContextVar(name, default=None) for name in CONTEXT_FIELDS}
# What a LogRecord holds by itself; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def current(name: str) -> str | None:
    """The request_id or job_id bound now, if any."""
    return _context[name].get()


def bind(**values: str | None) -> list[tuple[ContextVar, Any]]:
    """Bind request_id / job_id for the lines that follow; returns tokens for `unbind`."""
    return [(_context[name], _context[name].set(value)) for name, value in values.items()]


def unbind(tokens: list[tuple[ContextVar, Any]]) -> None:
    """Restore what `bind` replaced."""
    for var, token in reversed(tokens):
        var.reset(token)


@contextmanager
def bound(**values: str | None) -> Iterator[None]:
    """Bind request_id / job_id for the duration of a block."""
    tokens = bind(**values)
    try:
        yield
    finally:
        unbind(tokens)


class ContextFilter(logging.Filter):
    """Adds the bound request_id and job_id to every record (None when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, _context[name].get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id/job_id when set, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        line: dict[str, Any] = {
            "time": when.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and value is not None:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """`time level [pid] logger: message  request_id=... job_id=...` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None))
        if not context:
            return text
        head, sep, rest = text.partition("\n")  # keep a traceback below the line it belongs to
        return f"{head}  {context}{sep}{rest}"


def config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """A logging.config.dictConfig for samq (gunicorn's and Celery's own loggers included)."""
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"samq": {"()": formatter}},
        "handlers": {"samq": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                              "formatter": "samq", "filters": ["context"]}},
        "root": {"level": level.upper(), "handlers": ["samq"]},
        # gunicorn's master and workers log through the same handler (its own handlers are dropped); its access
        # lines are left out, the gateway writes its own (with request ids).
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
                    "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True}},
    }


def setup(fmt: str = "text", level: str | int = "INFO") -> None:
    """Configure the process's logging once, at start."""
    logging.config.dictConfig(config(fmt, logging.getLevelName(level) if isinstance(level, int) else level))


def for_celery(fmt: str) -> None:
    """Make a Celery worker log in samq's format (its own lines included), without its banner in json mode."""
    @setup_logging.connect(weak=False)
    def _setup(loglevel: int | str | None = None, **_: object) -> None:
        setup(fmt, loglevel or "INFO")  # connected, this replaces Celery's own set-up

    @celeryd_init.connect(weak=False)
    def _quiet(instance: Any = None, **_: object) -> None:
        if fmt == "json" and instance is not None:
            instance.quiet = True  # the start-up banner is text: in json mode every line is an object

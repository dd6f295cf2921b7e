"""The reference tables of docs/API.md and docs/OPERATIONS.md, rendered from the code so they cannot drift.

- request fields: the OpenAPI document's schemas (`gateway/openapi.py`, built from the pydantic models of
  `shared/schemas.py`): name, type, default, bounds and description of every field;
- error codes: the `SamqError` classes of `shared/errors.py`, their status and docstring;
- settings: `shared/settings.py`, every `SAMQ_*` variable with its default, bounds and description.

Each table lives between two marker lines in its Markdown file; the prose around them is written by hand.

    .venv/bin/python -m gateway.docgen           # rewrite the tables in place (`make docs`)
    .venv/bin/python -m gateway.docgen --check   # exit 1, naming the files, when a table is out of date

`tests/unit/test_docs.py` fails when a committed file differs from what this renders.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.openapi import openapi_document
from shared import errors
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "make docs"  # the command every stale-table message names
_BEGIN = "<!-- BEGIN GENERATED {name}: do not edit, run `make docs` (gateway/docgen.py) -->"
_END = "<!-- END GENERATED {name} -->"
_TYPES = {"string": "string", "integer": "int", "number": "number", "boolean": "bool", "object": "object",
          "array": "array"}


def _cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A short reading of a JSON Schema's type: `string`, `int or array of int`, `high, normal, low`."""
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds: list[str] = kind  # a list of type names
        return " or ".join(_TYPES.get(k, k) for k in kinds if k != "null")
    if kind == "array":
        items = schema.get("items") or {}
        simple = "enum" in items or items.get("type") in ("string", "integer", "number", "boolean")
        return f"array of {_type(items)}" if simple else "array"
    if kind is not None:
        return _TYPES.get(kind, kind)
    alternatives = [a for a in schema.get("anyOf", schema.get("oneOf", [])) if a.get("type") != "null"]
    return " or ".join(dict.fromkeys(_type(a) for a in alternatives)) or "any"


def _bounds(schema: dict[str, Any]) -> str:
    """Every bound the schema states, from the field and its alternatives (not the insides of arrays)."""
    found: list[str] = []
    for part in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        low, high = part.get("minimum"), part.get("maximum")
        if low is not None and high is not None:
            found.append(f"{low:g} to {high:g}")
        elif low is not None:
            found.append(f">= {low:g}")
        elif high is not None:
            found.append(f"<= {high:g}")
        if part.get("exclusiveMinimum") is not None:
            found.append(f"> {part['exclusiveMinimum']:g}")
        if part.get("minLength", 0) > 1:
            found.append(f"length >= {part['minLength']}")
        if "maxLength" in part:
            found.append(f"length <= {part['maxLength']:,}")
        if part.get("minItems", 0) > 1:
            found.append(f">= {part['minItems']} items")
        if "maxItems" in part:
            found.append(f"<= {part['maxItems']} items")
        if "maxProperties" in part:
            found.append(f"<= {part['maxProperties']} keys per object")
    return "; ".join(dict.fromkeys(found))


def _default(schema: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in schema or schema["default"] is None:
        return ""
    return f"`{json.dumps(schema['default'])}`"


def fields_table(schema: dict[str, Any]) -> str:
    """One row per property of an object schema: field, type, default, bounds, meaning."""
    rows = ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    required = set(schema.get("required", []))
    for name, prop in schema["properties"].items():
        rows.append(f"| `{name}` | {_cell(_type(prop))} | {_cell(_default(prop, name in required))} | "
                    f"{_cell(_bounds(prop))} | {_cell(prop.get('description', ''))} |")
    return "\n".join(rows)


def _request_schema(name: str) -> dict[str, Any]:
    schemas = openapi_document()["components"]["schemas"]
    if name == "EverythingOptions":  # inlined into JobRequest.everything (see gateway/openapi.py)
        return next(a for a in schemas["JobRequest"]["properties"]["everything"]["anyOf"] if "properties" in a)
    return schemas[name]


def error_classes() -> list[type[errors.SamqError]]:
    """Every named error the service answers with, by status then code."""
    found = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.SamqError)
             and not any(base.code == cls.code for base in cls.__mro__[1:] if issubclass(base, errors.SamqError))]
    return sorted(found, key=lambda cls: (cls.status, cls.code))  # (a subclass with its parent's code is one row)


def errors_table() -> str:
    rows = ["| status | code | when |", "|---|---|---|"]
    for cls in error_classes():
        when = ("A server fault (JSON, never a traceback); a job it ends is refunded." if cls is errors.SamqError
                else inspect.getdoc(cls) or "")
        rows.append(f"| {cls.status} | `{cls.code}` | {_cell(when)} |")
    return "\n".join(rows)


def _setting_default(schema: dict[str, Any]) -> str:
    value = schema.get("default")
    if value is None:
        return "none"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def settings_table() -> str:
    """Every setting: its variable, type, default, bounds and description (shared/settings.py)."""
    prefix = Settings.model_config.get("env_prefix", "")
    props = Settings.model_json_schema()["properties"]
    rows = ["| variable | type | default | bounds | meaning |", "|---|---|---|---|---|"]
    for name in Settings.model_fields:
        variable = f"{prefix}{name.upper()}"
        prop = props.get(name) or props[variable]  # a setting with aliases (hf_token): its first names it
        rows.append(f"| `{variable}` | {_cell(_type(prop))} | {_cell(_setting_default(prop))} | "
                    f"{_cell(_bounds(prop))} | {_cell(prop.get('description', ''))} |")
    return "\n".join(rows)


# file -> section name -> what renders it
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/API.md": {
        "segment-fields": lambda: fields_table(_request_schema("SegmentRequest")),
        "job-fields": lambda: fields_table(_request_schema("JobRequest")),
        "everything-fields": lambda: fields_table(_request_schema("EverythingOptions")),
        "batch-fields": lambda: fields_table(_request_schema("BatchRequest")),
        "error-codes": errors_table,
    },
    "docs/OPERATIONS.md": {"settings": settings_table},
}


def render(text: str, sections: dict[str, Callable[[], str]]) -> str:
    """`text` with every generated section replaced by what renders it now; a missing marker is an error."""
    for name, make in sections.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), flags=re.S)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"expected one section between {begin!r} and {end!r}")
        section = f"{begin}\n{make()}\n{end}"

        def literal(_: re.Match[str], section: str = section) -> str:  # the section as it is (no \1 escapes)
            return section

        text = pattern.sub(literal, text)
    return text


def stale(root: Path = ROOT) -> list[str]:
    """The files whose generated sections differ from what the code renders now."""
    return [path for path, sections in SECTIONS.items()
            if render((root / path).read_text(), sections) != (root / path).read_text()]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1 if out_of_date else 0
    for path, sections in SECTIONS.items():
        file = ROOT / path
        text = file.read_text()
        new = render(text, sections)
        if new != text:
            file.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

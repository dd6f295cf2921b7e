"""The SDK's records (samq_client.records) against what the server documents and sends, so they cannot drift apart:
each record has a field for every property of its OpenAPI component schema (gateway/openapi.py) and no other, of
the same JSON type, nullable where the schema says null; and `from_dict` keeps every documented property's value.
The schemas leave a batch's counts open (`object`): those are checked against the server's own list."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pytest
import samq_client
from samq_client.records import Batch, BatchCounts, Credits, Job

from gateway.openapi import openapi_document
from shared.batches import COUNTS

RECORDS = {"Job": Job, "Batch": Batch, "Credits": Credits}
JSON_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
SAMPLE = {"string": "s", "integer": 3, "number": 0.5, "boolean": True, "object": {"k": 1}, "array": []}


def _schema(name: str) -> dict[str, Any]:
    return openapi_document()["components"]["schemas"][name]


def _record_fields(record: type) -> dict[str, Any]:
    """Each field's resolved type hint, `raw` (the whole JSON, kept for newer servers) left out."""
    hints = typing.get_type_hints(record)
    return {f.name: hints[f.name] for f in dataclasses.fields(record) if f.name != "raw"}


def _client_types(hint: Any) -> tuple[set[str], bool]:
    """The JSON types a field's hint takes, and whether it takes None."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if union else (hint,)
    found = set()
    for arg in args:
        if arg is type(None):
            continue
        origin = typing.get_origin(arg) or arg
        found.add("object" if dataclasses.is_dataclass(origin) else JSON_TYPE[origin])
    return found, type(None) in args


def _schema_types(prop: dict[str, Any]) -> tuple[set[str], bool]:
    """The JSON types a schema property takes, and whether it takes null (an enum by its values' types)."""
    if "enum" in prop:
        named = {"null" if v is None else JSON_TYPE[type(v)] for v in prop["enum"]}
    else:
        named = {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
    return named - {"null"}, "null" in named


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_record_has_exactly_the_fields_of_its_openapi_schema(name):
    record, schema = RECORDS[name], _schema(name)
    assert set(_record_fields(record)) == set(schema["properties"]), name


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_field_has_the_json_type_of_its_schema_property(name):
    schema = _schema(name)
    for field, hint in _record_fields(RECORDS[name]).items():
        client, client_null = _client_types(hint)
        server, server_null = _schema_types(schema["properties"][field])
        assert client == server, f"{name}.{field}: the record takes {client}, the schema {server}"
        assert client_null or not server_null, f"{name}.{field}: the server may send null, the record takes no None"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_from_dict_keeps_every_documented_property(name):
    record, schema = RECORDS[name], _schema(name)
    document = {}
    for field, prop in schema["properties"].items():
        server, _ = _schema_types(prop)
        document[field] = prop["enum"][0] if "enum" in prop else SAMPLE[sorted(server)[0]]
    if name == "Batch":
        document["counts"] = {"succeeded": 2}
    built = record.from_dict(document)
    for field, value in document.items():
        kept = getattr(built, field)
        if field == "counts":
            assert kept == BatchCounts(succeeded=2)
        else:
            assert kept == value and type(kept) is type(value), f"{name}.{field}: {value!r} read as {kept!r}"


def test_batch_counts_are_the_servers_counts():
    assert [f.name for f in dataclasses.fields(BatchCounts)] == list(COUNTS)


def test_the_batch_cursor_is_an_int_as_the_server_sends_it():
    assert _schema_types(_schema("Batch")["properties"]["next_cursor"]) == ({"integer"}, True)
    assert samq_client.Batch.from_dict({"id": "b", "total": 0, "next_cursor": 100}).next_cursor == 100

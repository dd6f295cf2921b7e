"""The generated tables of docs/API.md and docs/OPERATIONS.md match the code (`make docs` rewrites them), and the
code they come from describes every field, setting and error."""

import pytest

from gateway import docgen
from gateway.openapi import openapi_document
from shared.settings import Settings


@pytest.mark.parametrize("path", sorted(docgen.SECTIONS))
def test_generated_tables_match_the_code(path):
    committed = (docgen.ROOT / path).read_text()
    assert docgen.render(committed, docgen.SECTIONS[path]) == committed, (
        f"{path}: a generated table differs from the code; run `{docgen.REGENERATE}` and commit the result")


def test_a_table_edited_by_hand_is_found_and_rewritten():
    committed = (docgen.ROOT / "docs" / "OPERATIONS.md").read_text()
    edited = committed.replace("| `SAMQ_PORT` | int | `8000` |", "| `SAMQ_PORT` | int | `8080` |")
    assert edited != committed
    assert docgen.render(edited, docgen.SECTIONS["docs/OPERATIONS.md"]) == committed
    with pytest.raises(ValueError, match="settings"):
        docgen.render("no markers here", docgen.SECTIONS["docs/OPERATIONS.md"])


def test_every_setting_is_a_row_of_the_operations_table():
    text = (docgen.ROOT / "docs" / "OPERATIONS.md").read_text()
    missing = [f"SAMQ_{name.upper()}" for name in Settings.model_fields if f"\n| `SAMQ_{name.upper()}` |" not in text]
    assert missing == [], f"not in docs/OPERATIONS.md's settings table: run `{docgen.REGENERATE}`"


def test_every_setting_and_request_field_has_a_description():
    bare = [name for name, field in Settings.model_fields.items() if not field.description]
    assert bare == [], "give each setting a description= in shared/settings.py: it is its row in OPERATIONS.md"
    schemas = openapi_document()["components"]["schemas"]
    options = next(a for a in schemas["JobRequest"]["properties"]["everything"]["anyOf"] if "properties" in a)
    for name, schema in [*((n, schemas[n]) for n in ("SegmentRequest", "JobRequest", "BatchRequest")),
                         ("EverythingOptions", options)]:
        bare = [field for field, prop in schema["properties"].items() if not prop.get("description")]
        assert bare == [], f"{name}: give these fields a description (shared/schemas.py): {bare}"


def test_every_error_code_is_a_row_once():
    rows = docgen.errors_table().splitlines()[2:]
    codes = [row.split("|")[2].strip() for row in rows]
    assert len(codes) == len(set(codes))
    assert {"`internal_error`", "`unavailable`", "`method_not_allowed`", "`invalid_request`"} <= set(codes)
    assert all(row.split("|")[3].strip() for row in rows), "every code says when it is answered"


def test_table_cells_keep_pipes_and_line_breaks_inside():
    assert docgen._cell("a | b\n  c") == "a \\| b c"
    assert docgen._type({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}},
                                   {"type": "null"}]}) == "string or array of int"
    assert docgen._bounds({"type": "number", "minimum": 0, "maximum": 1}) == "0 to 1"

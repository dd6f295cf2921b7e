"""Reading a request body: JSON (whatever the content type says) or a multipart/urlencoded form."""

from __future__ import annotations

import base64
from typing import Any

from flask import request

from shared.errors import InvalidRequest

MAX_DEPTH = 32  # no field needs more than a few levels; deeper JSON is refused before anything walks it


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest (iterative: a hostile body cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def request_body() -> Any:
    """The body as a dict; a form's `image` file part is turned into base64 like the JSON field."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form: dict[str, Any] = request.form.to_dict()
        upload = request.files.get("image")
        if upload is not None:
            form["image"] = base64.b64encode(upload.read()).decode()
        return form
    if not request.get_data(cache=True):
        raise InvalidRequest("the body is empty: send a JSON object")
    too_deep = InvalidRequest(f"the body nests arrays or objects more than {MAX_DEPTH} levels deep")
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # the parser itself gave up: far deeper than allowed
        raise too_deep from None
    if body is None:
        raise InvalidRequest("the body is not valid JSON (UTF-8)")
    if _depth(body) > MAX_DEPTH:
        raise too_deep
    return body

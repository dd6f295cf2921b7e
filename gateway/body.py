"""Reading a request body: JSON (whatever the content type says) or a multipart/urlencoded form."""

from __future__ import annotations

import base64
from typing import Any

from flask import request

from shared.errors import InvalidRequest


def request_body() -> Any:
    """The body as a dict; a form's `image` file part is turned into base64 like the JSON field."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        body: dict[str, Any] = request.form.to_dict()
        upload = request.files.get("image")
        if upload is not None:
            body["image"] = base64.b64encode(upload.read()).decode()
        return body
    if not request.get_data(cache=True):
        raise InvalidRequest("the body is empty: send a JSON object")
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise InvalidRequest("the body is not valid JSON")
    return body

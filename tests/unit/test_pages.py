"""The playground at / and the docs at /docs are served by the gateway and load nothing from the internet."""

from __future__ import annotations

import re

import pytest

from gateway.app import create_app
from shared.settings import Settings

# src=, href=, url(...), fetch("...") and @import: anything a browser would load.
LOADS = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\(\s*["']?([^"')]+)|fetch\(\s*[`"']([^`"']+)""")


@pytest.fixture
def client(redis_url, tmp_path):
    app = create_app(Settings(redis_url=redis_url, storage_url=f"file://{tmp_path}"))
    return app.test_client()


def _loads(text: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in LOADS.finditer(text)]


def test_playground_page_and_its_files_are_local(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert 'id="photo"' in html and 'id="key"' in html
    loaded = _loads(html)
    assert "/static/playground.js" in loaded and "/static/playground.css" in loaded
    for path in ("/static/playground.js", "/static/playground.css"):
        asset = client.get(path)
        assert asset.status_code == 200
        loaded += _loads(asset.get_data(as_text=True))
    # Only same-origin paths (and the API) or in-page URLs: no host, no protocol-relative URL.
    assert [u for u in loaded if re.match(r"^(?:[a-z]+:)?//", u)] == []
    # What the script does (the key kept in localStorage, an Idempotency-Key on every submit) is checked in a
    # real browser: tests/integration/test_playground.py.


def test_docs_use_the_vendored_swagger_ui(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    loaded = _loads(html)
    assert loaded and all(u.startswith("/docs/assets/") for u in loaded), loaded
    assert '"/openapi.json"' in html and "validatorUrl: null" in html  # the validator badge would call out
    for url in loaded:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 100, url
    assert b"SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").data
    missing = client.get("/docs/assets/..%2Fflask_swagger_ui.py")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"

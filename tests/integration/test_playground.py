"""The playground and the docs page in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

from harness.photos import ASTRONAUT_PNG, ROCKET_JPG, open_image
from harness.procs import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), "the playground test needs Debian's chromium: apt-get install -y chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack):
    """A fresh page that refuses, and records, every request leaving the gateway; `submitted` holds the answers
    to its job submissions (POST /v1/jobs)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.outside = []
    page.submitted = []
    own = urlsplit(stack.url).netloc
    page.on("response", lambda r: page.submitted.append(r) if r.request.method == "POST" and urlsplit(
        r.url).path == "/v1/jobs" else None)

    def guard(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https") and url.netloc != own:
            page.outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)
    yield page
    context.close()


def settled(stack, key: str, page) -> list[dict]:
    """The jobs the page submitted, once each has ended (a stale one may still be running), each checked to have
    carried its own Idempotency-Key."""
    idempotency_keys = [r.request.headers.get("idempotency-key") for r in page.submitted]
    assert all(idempotency_keys) and len(set(idempotency_keys)) == len(idempotency_keys), idempotency_keys
    ids = [r.json()["id"] for r in page.submitted]

    def ended(job_id: str) -> dict | None:
        job = stack.get(f"/v1/jobs/{job_id}", key).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    return [wait_until(lambda j=job_id: ended(j), 90, f"job {job_id} to end") for job_id in ids]


def test_playground_clicks_two_points_and_shows_the_overlay(page, stack, tmp_path):
    key = stack.new_key(5)
    page.goto(stack.url + "/")
    page.fill("#key", key)
    page.locator("#file").set_input_files(str(ROCKET_JPG))
    page.wait_for_selector("#stage:not([hidden])")
    box = page.locator("#marks").bounding_box()
    # Two clicks on the rocket's body, in the picture's own pixels (640x427) scaled to the screen.
    for x, y in ((320, 200), (330, 120)):
        page.mouse.click(box["x"] + x * box["width"] / 640, box["y"] + y * box["height"] / 427)
    page.wait_for_selector('#result[data-clicks="2"][data-output="overlay_jpeg"]:not([hidden])', timeout=90_000)
    data = page.evaluate("""async () => {
        const blob = await (await fetch(document.getElementById("result").src)).blob();
        const bytes = new Uint8Array(await blob.arrayBuffer());
        let text = ""; for (const b of bytes) text += String.fromCharCode(b);
        return btoa(text);
    }""")
    (tmp_path / "result.jpg").write_bytes(base64.b64decode(data))
    image = open_image(base64.b64decode(data))
    assert image.format == "JPEG" and image.size == (640, 427)
    assert "object(s) found" in page.text_content("#status")
    assert page.evaluate("localStorage.getItem('samq.apiKey')") == key
    links = page.locator("#downloads a")
    assert links.all_inner_texts() == [f"⤓ {n}" for n in ("overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png",
                                                            "json")]
    assert page.get_attribute("#downloads a >> nth=0", "download") == "rocket.overlay.jpg"
    for view in ("mask_jpeg", "cutout_png", "overlay_jpeg"):
        page.check(f"input[value={view}]")
        page.wait_for_function("""view => { const r = document.getElementById("result");
            return r.dataset.output === view && r.complete && r.naturalWidth === 640; }""", arg=view)
        page.screenshot(path=str(tmp_path / f"playground-{view}.png"))
    # Quick clicks are one job, but a slow machine may have sent the first click on its own: whatever ran, each
    # job that succeeded was paid exactly once (a failed one refunded), and the result shown is the last one's.
    jobs = settled(stack, key, page)
    assert 1 <= len(jobs) <= 2 and jobs[-1]["id"] == page.get_attribute("#result", "data-job")
    assert jobs[-1]["status"] == "succeeded"
    assert stack.balance(key) == 5 - sum(job["status"] == "succeeded" for job in jobs)
    assert page.outside == []


def test_playground_box_prompt_and_a_wrong_key(page, stack, tmp_path):
    page.goto(stack.url + "/")
    page.fill("#key", "sk_wrong")
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#status.error")
    assert "unauthorized" in page.text_content("#status")
    key = stack.new_key(5)
    page.fill("#key", key)
    # Drag and drop a file onto the drop zone, as from a file manager.
    transfer = page.evaluate_handle("""data => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "astronaut.png", {type: "image/png"}));
        return transfer;
    }""", base64.b64encode(ASTRONAUT_PNG.read_bytes()).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#stage:not([hidden])")
    box = page.locator("#marks").bounding_box()
    scale = box["width"] / 512
    page.mouse.move(box["x"] + 150 * scale, box["y"] + 60 * scale)
    page.mouse.down()
    page.mouse.move(box["x"] + 380 * scale, box["y"] + 300 * scale, steps=8)
    page.mouse.up()  # a drag is a box, not a point
    page.wait_for_selector('#result[data-clicks="0"][data-output="overlay_jpeg"]:not([hidden])', timeout=90_000)
    first = page.get_attribute("#result", "data-job")
    job = stack.get(f"/v1/jobs/{first}", key).json()
    assert job["status"] == "succeeded" and job["outputs"][0] == "overlay_jpeg"
    page.fill("#prompt", "person")
    page.press("#prompt", "Enter")
    page.wait_for_function("first => document.getElementById('result').dataset.job !== first", arg=first,
                           timeout=90_000)
    jobs = settled(stack, key, page)
    assert [job["status"] for job in jobs] == ["succeeded", "succeeded"] and jobs[0]["id"] == first
    assert stack.balance(key) == 3 and page.outside == []
    page.screenshot(path=str(tmp_path / "playground-prompt.png"))


def test_docs_render_the_spec_offline(page, stack, tmp_path):
    page.goto(stack.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "samq" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/sam-v2-image"]')
    page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
    assert page.outside == []

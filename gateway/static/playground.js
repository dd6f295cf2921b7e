// samq playground: pick an image, prompt or click, see the result. Talks to the public API with the key the
// user types (kept in this browser's localStorage only). Plain JS, nothing loaded from anywhere else.
"use strict";

const $ = (id) => document.getElementById(id);
// mask_jpeg (white on black) is the one to look at; mask_png (object i has value i) is the one for programs.
const OUTPUTS = ["overlay_jpeg", "mask_jpeg", "mask_png", "cutout_png", "json"];
const SUFFIX = { overlay_jpeg: ".overlay.jpg", mask_jpeg: ".mask.jpg", mask_png: ".mask.png", cutout_png: ".cutout.png",
                 json: ".json" };
const TERMINAL = ["succeeded", "failed", "canceled"];
const KEY_STORE = "samq.apiKey";
const state = { image: null, name: "image", width: 0, height: 0, points: [], negatives: [], box: null,
                urls: {}, run: 0, timer: null };
const marks = $("marks");
let drag = null;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function apiKey() {
  return $("key").value.trim();
}

// One API call; JSON errors become exceptions with the API's code and message.
async function api(method, path, body) {
  const headers = { "x-api-key": apiKey() };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    headers["Idempotency-Key"] = newId(); // a retried submit is never charged twice
  }
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const credits = response.headers.get("x-remaining-credits");
  if (credits !== null) $("credits").textContent = `${credits} credits`;
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const error = (await response.json()).error;
      message = `${error.code}: ${error.message}`;
    } catch (_) { /* not JSON: keep the status */ }
    throw new Error(message);
  }
  return response;
}

async function refreshCredits() {
  if (!apiKey()) return;
  try {
    const data = await (await api("GET", "/v1/credits")).json();
    $("credits").textContent = `${data.credits} credits`;
  } catch (error) {
    setStatus(error.message, true);
  }
}

// --- the image --------------------------------------------------------------------------------------------

function loadFile(file) {
  if (!file) return;
  if (!/^image\/(jpeg|png|webp)$/.test(file.type)) {
    setStatus(`${file.name}: not a JPEG, PNG or WebP image`, true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    state.image = reader.result; // a data: URI; the API takes it as base64
    state.name = file.name.replace(/\.[^.]+$/, "") || "image";
    $("photo").src = reader.result;
  };
  reader.readAsDataURL(file);
}

$("photo").addEventListener("load", () => {
  const photo = $("photo");
  state.width = photo.naturalWidth;
  state.height = photo.naturalHeight;
  marks.width = state.width; // the canvas works in image pixels; CSS scales it with the image
  marks.height = state.height;
  clearPrompts();
  clearResult();
  $("stage").hidden = false;
  setStatus(`${state.width}×${state.height}. Type a prompt, or click the image.`);
});

$("file").addEventListener("change", (ev) => loadFile(ev.target.files[0]));
for (const target of [$("drop"), $("stage")]) {
  target.addEventListener("dragover", (ev) => { ev.preventDefault(); $("drop").classList.add("over"); });
  target.addEventListener("dragleave", () => $("drop").classList.remove("over"));
  target.addEventListener("drop", (ev) => {
    ev.preventDefault();
    $("drop").classList.remove("over");
    loadFile(ev.dataTransfer.files[0]);
  });
}

// --- points and boxes ---------------------------------------------------------------------------------------

// Where an event falls in the image's own pixels (the API's coordinates, EXIF orientation applied).
function imagePoint(ev) {
  const rect = marks.getBoundingClientRect();
  const x = Math.round(((ev.clientX - rect.left) * state.width) / rect.width);
  const y = Math.round(((ev.clientY - rect.top) * state.height) / rect.height);
  return [Math.min(Math.max(x, 0), state.width - 1), Math.min(Math.max(y, 0), state.height - 1)];
}

marks.addEventListener("pointerdown", (ev) => {
  drag = { start: imagePoint(ev), end: null, x: ev.clientX, y: ev.clientY, negative: ev.shiftKey };
  marks.setPointerCapture(ev.pointerId);
});

marks.addEventListener("pointermove", (ev) => {
  if (!drag) return;
  if (Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y) > 5) drag.end = imagePoint(ev);
  draw();
});

marks.addEventListener("pointerup", () => {
  if (!drag) return;
  const { start, end, negative } = drag;
  drag = null;
  if (end) {
    state.box = [Math.min(start[0], end[0]), Math.min(start[1], end[1]),
                 Math.max(start[0], end[0]), Math.max(start[1], end[1])];
  } else {
    (negative ? state.negatives : state.points).push(start);
  }
  draw();
  // Quick clicks become one job: wait for a short pause before submitting.
  clearTimeout(state.timer);
  state.timer = setTimeout(() => segment("clicks"), 350);
});

function draw() {
  const ctx = marks.getContext("2d");
  ctx.clearRect(0, 0, marks.width, marks.height);
  const r = Math.max(4, state.width / 120);
  ctx.lineWidth = Math.max(2, r / 3);
  const box = drag && drag.end ? [...drag.start, ...drag.end] : state.box;
  if (box) {
    ctx.strokeStyle = "#2f6fed";
    ctx.setLineDash([3 * r, 2 * r]);
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.setLineDash([]);
  }
  for (const [list, colour] of [[state.points, "#12b76a"], [state.negatives, "#f04438"]]) {
    for (const [x, y] of list) {
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = colour;
      ctx.fill();
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  }
}

function clearPrompts() {
  state.points = [];
  state.negatives = [];
  state.box = null;
  draw();
}

$("clear").addEventListener("click", () => {
  clearPrompts();
  clearResult();
});

// --- jobs -------------------------------------------------------------------------------------------------

$("prompt-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  segment("prompt");
});

async function segment(kind) {
  if (!state.image) return setStatus("Drop or pick an image first.", true);
  if (!apiKey()) return setStatus("Type your API key first.", true);
  const body = { image: state.image, outputs: OUTPUTS };
  if (kind === "prompt") {
    body.prompt = $("prompt").value.trim();
    if (!body.prompt) return setStatus("Type a prompt first.", true);
    clearPrompts(); // a text prompt replaces the clicks and the box: show only what is sent
  } else {
    if (!state.points.length && !state.box) return setStatus("Add a positive point (click) or a box (drag).");
    if (state.points.length) body.coordinates = state.points;
    if (state.negatives.length) body.remove_coordinates = state.negatives;
    if (state.box) body.boxes = [state.box];
  }
  const run = ++state.run; // a newer request makes this one's answer stale
  $("stage").classList.add("busy");
  $("go").disabled = true;
  const started = performance.now();
  try {
    setStatus("Submitting…");
    let job = await (await api("POST", "/v1/jobs", body)).json();
    while (!TERMINAL.includes(job.status)) {
      if (run !== state.run) return;
      setStatus(`Job ${job.id.slice(0, 8)}: ${job.status}…`);
      await sleep(250);
      job = await (await api("GET", `/v1/jobs/${job.id}`)).json();
    }
    if (job.status !== "succeeded") {
      throw new Error(job.error ? `${job.error.code}: ${job.error.message}` : `the job was ${job.status}`);
    }
    const blobs = {};
    for (const name of job.outputs) {
      blobs[name] = await (await api("GET", `/v1/jobs/${job.id}/result?output=${name}`)).blob();
    }
    if (run !== state.run) return;
    showResult(job, blobs, kind === "prompt" ? 0 : state.points.length + state.negatives.length);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`${job.objects_found} object(s) found in ${seconds} s.`);
  } catch (error) {
    if (run === state.run) setStatus(error.message, true);
  } finally {
    if (run === state.run) {
      $("stage").classList.remove("busy");
      $("go").disabled = false;
    }
  }
}

function clearResult() {
  for (const url of Object.values(state.urls)) URL.revokeObjectURL(url);
  state.urls = {};
  $("result").hidden = true;
  $("result").removeAttribute("src");
  $("views").disabled = true;
  $("downloads").replaceChildren();
  $("details").textContent = "";
}

function showResult(job, blobs, clicks) {
  clearResult();
  for (const [name, blob] of Object.entries(blobs)) state.urls[name] = URL.createObjectURL(blob);
  const links = Object.keys(state.urls).map((name) => {
    const link = document.createElement("a");
    link.href = state.urls[name];
    link.download = state.name + (SUFFIX[name] || `.${name}`);
    link.textContent = `⤓ ${name}`;
    return link;
  });
  $("downloads").replaceChildren(...links);
  const objects = job.objects.map(({ label, score, box, area }) => ({ label, score, box, area }));
  $("details").textContent = JSON.stringify({ job: job.id, objects }, null, 1);
  $("result").dataset.job = job.id;
  $("result").dataset.clicks = String(clicks);
  $("views").disabled = false;
  showView();
}

function showView() {
  const name = document.querySelector("input[name=view]:checked").value;
  const result = $("result");
  result.hidden = !state.urls[name];
  result.classList.toggle("checker", name === "cutout_png");
  if (state.urls[name]) {
    result.src = state.urls[name];
    result.dataset.output = name;
  }
}

for (const radio of document.querySelectorAll("input[name=view]")) radio.addEventListener("change", showView);

// --- the key ------------------------------------------------------------------------------------------------

$("key").value = localStorage.getItem(KEY_STORE) || "";
$("key").addEventListener("input", () => localStorage.setItem(KEY_STORE, apiKey()));
$("key").addEventListener("change", refreshCredits);
refreshCredits();

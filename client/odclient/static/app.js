// odstack detector page: upload -> POST /v1/detect (all detections) -> draw those above the slider.
"use strict";
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];
const $ = (id) => document.getElementById(id);
let current = null; // {bitmap, result}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const MIN_DISPLAY = 640; // small images are scaled up to this many pixels on their longer side

function render() {
  if (!current) return;
  const threshold = parseFloat($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  const { bitmap, result } = current;
  const scale = Math.max(1, MIN_DISPLAY / Math.max(bitmap.width, bitmap.height));
  const width = Math.round(bitmap.width * scale), height = Math.round(bitmap.height * scale);
  const line = Math.max(2, Math.round(Math.max(width, height) / 300));
  const fontSize = Math.max(14, Math.round(Math.max(width, height) / 45));
  const labelH = fontSize + 2 * line;
  // a band above and below the image: a label always fits outside its box, never over the object
  const canvas = $("canvas");
  canvas.width = width;
  canvas.height = height + 2 * labelH;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = scale < 3; // tiny images stay crisp
  ctx.drawImage(bitmap, 0, labelH, width, height);
  const shown = result.detections.filter((d) => d.score >= threshold);
  ctx.font = `${fontSize}px sans-serif`;
  ctx.textBaseline = "top";
  const list = $("detections");
  list.replaceChildren();
  const placed = [];
  for (const d of shown) {
    // box is normalized to the uploaded image; the canvas has the decoded (EXIF-rotated) size, scaled
    const x = d.box.xmin * width, y = labelH + d.box.ymin * height;
    const w = (d.box.xmax - d.box.xmin) * width, h = (d.box.ymax - d.box.ymin) * height;
    const color = COLORS[d.class_id % COLORS.length];
    const text = `${d.label ?? "#" + d.class_id} ${d.score.toFixed(2)}`;
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const tw = Math.min(ctx.measureText(text).width + 2 * line, canvas.width);
    const tx = Math.min(Math.max(0, x), canvas.width - tw);          // never cut off at the sides
    const ty = y - labelH >= 0 ? y - labelH : y + h;                  // above the box, else below it
    ctx.fillStyle = color;
    ctx.fillRect(tx, ty, tw, labelH);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, tx + line, ty + line, tw - 2 * line);
    placed.push({ text, label: [tx, ty, tx + tw, ty + labelH], box: [x, y, x + w, y + h] });
    const item = document.createElement("li");
    item.style.borderLeftColor = color;
    item.textContent = `${text}  [${d.box_px.xmin}, ${d.box_px.ymin}, ${d.box_px.xmax}, ${d.box_px.ymax}]`;
    list.appendChild(item);
  }
  // for the page's tests: where each label went, and how wide the image is on screen
  canvas.dataset.labels = JSON.stringify(placed);
  canvas.dataset.displayWidth = String(Math.round(canvas.getBoundingClientRect().width));
  const m = result.model;
  setStatus(`${shown.length} of ${result.detections.length} detections at threshold ${threshold.toFixed(2)} ` +
            `(model ${m.name} v${m.version}, ${result.timing_ms.total} ms)`);
}

async function detect(blob, name) {
  setStatus(`Detecting objects in ${name}…`);
  const form = new FormData();
  form.append("image", blob, name);
  try {
    const [bitmap, response] = await Promise.all([
      createImageBitmap(blob, { imageOrientation: "from-image" }),
      fetch("/v1/detect?threshold=0&max_detections=100", { method: "POST", body: form }),
    ]);
    const body = await response.json();
    if (!response.ok) throw new Error(`${response.status} ${body.code}: ${body.message}`);
    current = { bitmap, result: body.images[0] };
    render();
  } catch (error) {
    current = null;
    setStatus(`Error: ${error.message}`, true);
  }
}

function sampleImage(small) {
  // A generated picture (no file needed): coloured shapes on grey. "small": 160x100 with a rectangle at
  // the top-left corner (its label cannot go above it, and the image must be scaled up to be seen).
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d");
  if (small) {
    canvas.width = 160; canvas.height = 100;
    ctx.fillStyle = "#9aa"; ctx.fillRect(0, 0, 160, 100);
    ctx.fillStyle = "#f00"; ctx.fillRect(0, 0, 60, 40);
    ctx.fillStyle = "#36c"; ctx.fillRect(110, 60, 50, 40);
  } else {
    canvas.width = 480; canvas.height = 320;
    ctx.fillStyle = "#9aa"; ctx.fillRect(0, 0, 480, 320);
    ctx.fillStyle = "#f00"; ctx.fillRect(40, 50, 150, 110);
    ctx.fillStyle = "#36c"; ctx.beginPath(); ctx.arc(330, 200, 80, 0, 2 * Math.PI); ctx.fill();
  }
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models");
    const body = await response.json();
    $("model").textContent = response.ok
      ? `model: ${body.models[0].name} v${body.models[0].serving_version} · labels: ${body.models[0].labels.map((l) => l.name).join(", ") || "none"}`
      : `model: unavailable (${body.code})`;
    if (response.ok && typeof body.models[0].default_threshold === "number") {
      $("threshold").value = body.models[0].default_threshold; // the model's own, when its export recorded one
    }
  } catch (error) {
    $("model").textContent = "model: unavailable";
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("threshold").addEventListener("input", render);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) detect(file, file.name);
  });
  // drag and drop anywhere on the page
  const drop = $("drop");
  document.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) detect(file, file.name);
  });
  await loadModel();
  const params = new URLSearchParams(location.search);
  if (params.has("threshold")) { $("threshold").value = params.get("threshold"); }
  $("threshold-value").textContent = parseFloat($("threshold").value).toFixed(2);
  if (params.has("sample")) await detect(await sampleImage(params.get("sample") === "small"), "sample.png");
});

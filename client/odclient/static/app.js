// odstack detector page: upload -> POST /v1/detect (all detections) -> draw those above the slider.
"use strict";
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"];
const $ = (id) => document.getElementById(id);
let current = null; // {bitmap, result}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function render() {
  if (!current) return;
  const threshold = parseFloat($("threshold").value);
  $("threshold-value").textContent = threshold.toFixed(2);
  const { bitmap, result } = current;
  const canvas = $("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const shown = result.detections.filter((d) => d.score >= threshold);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 300));
  ctx.font = `${Math.max(12, Math.round(Math.max(canvas.width, canvas.height) / 45))}px sans-serif`;
  ctx.textBaseline = "top";
  const list = $("detections");
  list.replaceChildren();
  for (const d of shown) {
    // box is normalized to the uploaded image; the canvas has the decoded (EXIF-rotated) size
    const x = d.box.xmin * canvas.width, y = d.box.ymin * canvas.height;
    const w = (d.box.xmax - d.box.xmin) * canvas.width, h = (d.box.ymax - d.box.ymin) * canvas.height;
    const color = COLORS[d.class_id % COLORS.length];
    const text = `${d.label ?? "#" + d.class_id} ${d.score.toFixed(2)}`;
    ctx.lineWidth = line;
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const tw = ctx.measureText(text).width + 2 * line, th = parseInt(ctx.font, 10) + 2 * line;
    const ty = y - th >= 0 ? y - th : y;
    ctx.fillStyle = color;
    ctx.fillRect(x, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + line, ty + line);
    const item = document.createElement("li");
    item.textContent = `${text}  [${d.box_px.xmin}, ${d.box_px.ymin}, ${d.box_px.xmax}, ${d.box_px.ymax}]`;
    list.appendChild(item);
  }
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

function sampleImage() {
  // A generated picture (no file needed): a few coloured shapes on a grey background.
  const canvas = document.createElement("canvas");
  canvas.width = 480; canvas.height = 320;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#9aa"; ctx.fillRect(0, 0, 480, 320);
  ctx.fillStyle = "#f00"; ctx.fillRect(40, 50, 150, 110);
  ctx.fillStyle = "#36c"; ctx.beginPath(); ctx.arc(330, 200, 80, 0, 2 * Math.PI); ctx.fill();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function loadModel() {
  try {
    const response = await fetch("/v1/models");
    const body = await response.json();
    $("model").textContent = response.ok
      ? `model: ${body.models[0].name} v${body.models[0].serving_version} · labels: ${body.models[0].labels.map((l) => l.name).join(", ") || "none"}`
      : `model: unavailable (${body.code})`;
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
  $("threshold").dispatchEvent(new Event("input"));
  const params = new URLSearchParams(location.search);
  if (params.has("threshold")) { $("threshold").value = params.get("threshold"); }
  $("threshold-value").textContent = parseFloat($("threshold").value).toFixed(2);
  await loadModel();
  if (params.has("sample")) await detect(await sampleImage(), "sample.png");
});

// The page: pick or drop an image, upscale it through the JSON API with visible progress,
// compare before/after with a slider, download. No external resources.
"use strict";
const $ = (id) => document.getElementById(id);
let file = null;
let inputUrl = null;
let maxUploadBytes = Infinity;  // from /api/models

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setFile(f) {
  if (!f) return;
  file = f;
  if (inputUrl) URL.revokeObjectURL(inputUrl);
  inputUrl = URL.createObjectURL(f);
  $("preview").src = inputUrl;
  $("preview").hidden = false;
  $("drop-text").hidden = true;
  $("go").disabled = false;
  $("result").hidden = true;
  showError("");
}

async function loadModels() {
  const r = await fetch("/api/models");
  const info = await r.json();
  for (const m of info.models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (x${m.scale})`;
    o.selected = m.default;
    $("model").append(o);
  }
  $("model").parentElement.hidden = info.models.length < 2;
  maxUploadBytes = info.max_upload_bytes;
  $("limits").textContent = `Up to ${info.max_upload_mb} MB and ` +
    `${(info.max_pixels / 1e6).toFixed(1)} megapixels per image.`;
}

function upload(form) {  // XHR: upload progress; resolves with the job
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/jobs");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) progress(e.loaded / e.total * 10, "Uploading");
    };
    xhr.onload = () => (xhr.status === 202 ? resolve(xhr.response)
      : reject(new Error((xhr.response && xhr.response.error) || `HTTP ${xhr.status}`)));
    xhr.onerror = () => reject(new Error("the server could not be reached"));
    xhr.send(form);
  });
}

function progress(pct, text) {
  $("progress").hidden = false;
  $("bar").value = pct;
  $("status").textContent = text;
}

async function waitFor(job) {
  for (;;) {
    const r = await fetch(`/api/jobs/${job.id}`);
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
    if (j.state === "done") return j;
    if (j.state === "failed") throw new Error(j.error);
    const pct = j.total ? 10 + 90 * j.done / j.total : 10;
    progress(pct, j.state === "queued" ? "Waiting for a free slot" :
      `Upscaling: tile ${j.done} of ${j.total || "?"}`);
    await new Promise((ok) => setTimeout(ok, 300));
  }
}

async function submit(ev) {
  ev.preventDefault();
  if (!file) return;
  $("go").disabled = true;
  showError("");
  $("result").hidden = true;
  if (file.size > maxUploadBytes) {  // the server would refuse it after the whole upload
    showError(`${file.name} is ${file.size.toLocaleString()} bytes, over the limit of ` +
      `${maxUploadBytes.toLocaleString()} bytes`);
    $("go").disabled = false;
    return;
  }
  const form = new FormData();
  form.append("image", file);
  form.append("model", $("model").value);
  form.append("format", $("format").value);
  try {
    const job = await waitFor(await upload(form));
    const url = `/api/jobs/${job.id}/result`;
    $("after").src = url;
    $("before").src = inputUrl;
    $("download").href = `${url}?download=1`;
    $("sizes").textContent = `${job.width} x ${job.height} pixels, ${job.seconds} s`;
    $("result").hidden = false;
    progress(100, "Done");
  } catch (e) {
    showError(e.message);
    $("progress").hidden = true;
  } finally {
    $("go").disabled = false;
  }
}

function slide() {
  $("before-clip").style.width = `${$("slider").value}%`;
  $("before").style.width = `${10000 / Math.max(1, $("slider").value)}%`;
}

window.addEventListener("DOMContentLoaded", () => {
  loadModels().catch((e) => showError(`cannot list models: ${e.message}`));
  $("file").addEventListener("change", () => setFile($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter") $("file").click(); });
  $("form").addEventListener("submit", submit);
  $("slider").addEventListener("input", slide);
  slide();
});

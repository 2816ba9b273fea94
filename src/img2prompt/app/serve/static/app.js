// img2prompt web page: pick, drop or paste an image; POST it to /api/describe; show the answer.
// Plain JavaScript, no dependencies, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  status: $("status"), statusText: $("status-text"), drop: $("drop"), file: $("file"),
  dropEmpty: $("drop-empty"), preview: $("preview"), noPreview: $("no-preview"),
  meta: $("image-meta"), another: $("another"),
  limits: $("limits"), copy: $("copy"), idle: $("idle"), loading: $("loading"), error: $("error"),
  output: $("output"), prompt: $("prompt"), scoreValue: $("score-value"), scoreBar: $("score-bar"),
  phrases: $("phrases"), neighbors: $("neighbors"), dlJson: $("dl-json"), dlNpy: $("dl-npy"),
  timing: $("timing"), toast: $("toast"), source: $("source"), embedded: $("embedded"),
  negativeField: $("negative-field"), negative: $("negative"), settingsField: $("settings-field"),
  settings: $("settings"), modelPrompt: $("model-prompt"), metadataError: $("metadata-error"),
  copyNegative: $("copy-negative"), copySettings: $("copy-settings"), copyModel: $("copy-model"),
  passes: $("passes"), passesTitle: $("passes-title"), passesList: $("passes-list"),
  runtime: $("runtime"), metadataNote: $("metadata-note"), candidates: $("metadata-candidates"),
  captioned: $("captioned"), judgeVerdict: $("judge-verdict"),
  captionCandidates: $("caption-candidates"),
};
// Everything from the file's metadata is untrusted text: it is only ever set as textContent.

let maxUploadBytes = 20 * 1024 * 1024;
let current = null; // the last answer, with the image's name
let previewUrl = null;
let requestId = 0;

async function loadHealth() {
  try {
    const response = await fetch("/api/health");
    if (!response.ok) throw new Error(response.statusText);
    const h = await response.json();
    maxUploadBytes = h.max_upload_mb * 1024 * 1024;
    els.status.className = "status ok";
    const short = (path) => String(path).split(/[\\/]/).filter(Boolean).pop() || path;
    els.statusText.textContent = `model ${short(h.model)} · bank ${short(h.bank)} ` +
      `(${h.bank_entries.toLocaleString()} entries) · ${h.mode} decoding`;
    els.status.title = `model: ${h.model}\nbank: ${h.bank}\ndecoding: ${h.mode}`;
    els.limits.textContent =
      `PNG, JPEG, WebP, GIF, BMP or TIFF · up to ${h.max_upload_mb} MB`;
  } catch (e) {
    els.status.className = "status down";
    els.statusText.textContent = "server unreachable";
  }
}

function show(state) {
  els.idle.hidden = state !== "idle";
  els.loading.hidden = state !== "loading";
  els.output.hidden = state !== "output";
  els.copy.disabled = state !== "output";
}

function showError(message) {
  els.error.textContent = message;
  els.error.hidden = false;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function setPreview(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  els.preview.src = previewUrl;
  els.preview.alt = file.name || "uploaded image";
  els.preview.hidden = false;
  els.noPreview.hidden = true;
  els.dropEmpty.hidden = true;
  els.drop.classList.add("has-image");
  els.another.hidden = false;
  els.meta.textContent = `${file.name || "pasted image"} · ${formatBytes(file.size)}`;
  els.meta.hidden = false;
}

async function describe(file) {
  if (!file) return;
  els.error.hidden = true;
  setPreview(file);
  if (file.size > maxUploadBytes) {
    show(current ? "output" : "idle");
    showError(`This file is ${formatBytes(file.size)}; the server takes up to ` +
      `${formatBytes(maxUploadBytes)}.`);
    return;
  }
  const id = ++requestId;
  show("loading");
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  let answer;
  try {
    const response = await fetch("/api/describe", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : response.statusText;
      throw new Error(`${detail} (HTTP ${response.status})`);
    }
    answer = body;
  } catch (e) {
    if (id !== requestId) return;
    show("idle");
    showError(e.message || String(e));
    return;
  }
  if (id !== requestId) return; // a newer image was chosen meanwhile
  current = { ...answer, name: file.name || "image" };
  render(current);
}

function settingsText(settings) {
  return Object.entries(settings || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
}

function renderEmbedded(a) {
  const fromFile = a.source === "metadata";
  els.source.hidden = !fromFile;
  els.source.textContent = fromFile
    ? `Embedded in the file by ${a.generator || "its generator"}` : "";
  els.embedded.hidden = !fromFile;
  els.negativeField.hidden = !a.negative_prompt;
  els.negative.textContent = a.negative_prompt || "";
  const entries = Object.entries(a.settings || {});
  els.settingsField.hidden = entries.length === 0;
  els.settings.replaceChildren(...entries.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    return [dt, dd];
  }));
  els.modelPrompt.textContent = a.model_prompt || "";
  renderPasses(fromFile ? (a.passes || []).slice(1) : []);
  renderRuntime(a);
  els.metadataError.hidden = !a.metadata_error;
  els.metadataError.textContent = a.metadata_error ? `Metadata: ${a.metadata_error}` : "";
}

function textElement(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text; // untrusted: never markup
  if (className) element.className = className;
  return element;
}

// The passes after the base one (hires, refiner, detailer...): the prompt shown is the base's.
function renderPasses(later) {
  els.passes.hidden = later.length === 0;
  els.passesTitle.textContent = `Other passes (${later.length})`;
  els.passesList.replaceChildren(...later.map((pass) => {
    const item = document.createElement("li");
    const head = document.createElement("div");
    head.className = "field-head";
    head.append(textElement("strong", pass.role));
    const positive = textElement("p", pass.positive ?? "(no text)", "field-text");
    if (pass.positive) {
      const copy = textElement("button", "Copy", "ghost small-button");
      copy.type = "button";
      copy.addEventListener("click", () => copyText(pass.positive, positive, `${pass.role} prompt`));
      head.append(copy);
    }
    item.append(head, positive);
    if (pass.negative) item.append(textElement("p", `Negative: ${pass.negative}`, "muted small"));
    const settings = settingsText(pass.settings);
    if (settings) item.append(textElement("p", settings, "muted small"));
    return item;
  }));
}

// A graph whose prompt is made at run time (wildcards, LLM or reader nodes): why there is no
// embedded prompt, and the literal texts met on the way. They never fill the prompt.
function renderRuntime(a) {
  const candidates = a.metadata_candidates || [];
  els.runtime.hidden = !a.metadata_note && candidates.length === 0;
  els.metadataNote.textContent = a.metadata_note || "";
  els.candidates.replaceChildren(...candidates.map((text) => textElement("li", text)));
}

// A captioner's candidates, each with the judge's cosine (or, with no judge, the captioner's
// own score), and the judge's verdict: its cosine, the spread, caption or bank and by how much.
function renderCaptioned(a) {
  const candidates = a.caption_candidates || [];
  els.captioned.hidden = candidates.length === 0;
  els.judgeVerdict.textContent = a.judge_choice
    ? `Judge cosine ${a.judge_cosine.toFixed(3)} · spread ${a.judge_spread.toFixed(3)} · ` +
      `${a.judge_choice === "caption" ? "a candidate" : "the bank's prompt"} won by ` +
      `${a.judge_margin.toFixed(3)} (bank: ${a.bank_prompt})`
    : "Captioner's own scores (mean log-probability per token); no judge.";
  els.captionCandidates.replaceChildren(...candidates.map((c) => {
    const li = document.createElement("li");
    const figure = c.judge_cosine ?? c.logprob;
    li.append(textElement("span", c.prompt, "text"), textElement("span", figure.toFixed(3), "cos"));
    return li;
  }));
}

function render(a) {
  els.prompt.textContent = a.prompt;
  renderEmbedded(a);
  renderCaptioned(a);
  els.scoreValue.textContent = a.match.toFixed(3);
  els.scoreBar.style.width = `${Math.max(0, Math.min(1, a.match)) * 100}%`;
  els.phrases.replaceChildren(...a.phrases.map((p) => {
    const li = document.createElement("li");
    li.textContent = p;
    return li;
  }));
  els.neighbors.replaceChildren(...a.neighbors.map((n) => {
    const li = document.createElement("li");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = n.text;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = `${Math.max(0, Math.min(1, n.cosine)) * 100}%`;
    bar.append(fill);
    const cos = document.createElement("span");
    cos.className = "cos";
    cos.textContent = n.cosine.toFixed(3);
    li.append(text, bar, cos);
    return li;
  }));
  const img = a.image;
  els.meta.textContent =
    `${img.name} · ${img.format} · ${img.width}×${img.height} · ${formatBytes(img.bytes)}`;
  els.timing.textContent = `Answered in ${(a.seconds * 1000).toFixed(0)} ms (${a.mode} decoding).`;
  show("output");
}

function toast(message) {
  els.toast.textContent = message;
  els.toast.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { els.toast.hidden = true; }, 1600);
}

async function copyText(text, element, what) {
  if (!current) return;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) { // no clipboard API outside secure contexts: select and copy the old way
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  toast(`${what} copied`);
}

const copyPrompt = () => copyText(current.prompt, els.prompt, "Prompt");

function baseName() {
  return (current.name || "image").replace(/\.[^.]+$/, "") || "image";
}

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function downloadJson() {
  const { prompt, match, embedding, neighbors } = current;
  const text = JSON.stringify({ image: current.name, prompt, match, embedding, neighbors }, null, 1);
  download(new Blob([text], { type: "application/json" }), `${baseName()}.embedding.json`);
}

// A NumPy .npy file (format 1.0): magic, header length, a padded dict header, float32 data.
function npyBlob(values) {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${values.length},), }`;
  const unpadded = 10 + header.length + 1;
  const padded = header + " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const bytes = new Uint8Array(10 + padded.length);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0); // \x93NUMPY v1.0
  new DataView(bytes.buffer).setUint16(8, padded.length, true);
  for (let i = 0; i < padded.length; i++) bytes[10 + i] = padded.charCodeAt(i);
  const data = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => data.setFloat32(i * 4, v, true));
  return new Blob([bytes, data.buffer], { type: "application/octet-stream" });
}

function downloadNpy() {
  download(npyBlob(current.embedding), `${baseName()}.embedding.npy`);
}

function firstImage(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file) return file;
  }
  return null;
}

els.file.addEventListener("change", () => {
  describe(els.file.files[0]);
  els.file.value = ""; // choosing the same file again fires `change` again
});
els.another.addEventListener("click", () => els.file.click());
els.preview.addEventListener("error", () => { // the browser cannot show it (TIFF, not an image)
  els.preview.hidden = true;
  els.noPreview.hidden = false;
});
["dragenter", "dragover"].forEach((type) => els.drop.addEventListener(type, (e) => {
  e.preventDefault();
  els.drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => els.drop.addEventListener(type, (e) => {
  e.preventDefault();
  els.drop.classList.remove("over");
}));
els.drop.addEventListener("drop", (e) => {
  const file = firstImage(e.dataTransfer && e.dataTransfer.files);
  if (file) describe(file);
});
// A file dropped beside the drop zone should not navigate away from the page.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
document.addEventListener("paste", (e) => {
  const file = firstImage(e.clipboardData && e.clipboardData.items);
  if (file) describe(file);
});
els.copy.addEventListener("click", copyPrompt);
els.copyNegative.addEventListener("click",
  () => copyText(current.negative_prompt || "", els.negative, "Negative prompt"));
els.copySettings.addEventListener("click",
  () => copyText(settingsText(current.settings), els.settings, "Settings"));
els.copyModel.addEventListener("click",
  () => copyText(current.model_prompt || "", els.modelPrompt, "Model's prompt"));
els.dlJson.addEventListener("click", downloadJson);
els.dlNpy.addEventListener("click", downloadNpy);

show("idle");
loadHealth();

"use strict";
// Draw with pointer events (mouse, touch, pen); predict on every stroke end and while drawing.
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const digitEl = document.getElementById("digit");
const probabilityEl = document.getElementById("probability");
const barsEl = document.getElementById("bars");
const inputEl = document.getElementById("input");
const inputBoxEl = document.getElementById("input-box");
const errorEl = document.getElementById("error");
let drawing = false, last = null, pending = false, dirty = false, timer = null;
let classes = [..."0123456789"];  // replaced by the model's own classes from /api/info
let strokeWidth = 18;  // pen width in canvas pixels (thinner on a line model's wide canvas)
const MAX_BARS = 10;  // with more classes, the bars show the ten most likely

function clear() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  digitEl.textContent = "?";
  probabilityEl.textContent = "draw one";
  errorEl.textContent = "";
  inputEl.removeAttribute("src");
  inputEl.hidden = true;  // an empty box until the first prediction, not a broken image
  inputBoxEl.hidden = false;
  showBars({});
}

function point(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

function stroke(from, to) {
  ctx.strokeStyle = "#111";
  ctx.lineWidth = strokeWidth;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(...from);
  ctx.lineTo(...to);
  ctx.stroke();
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  stroke(last, last);
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const next = point(event);
  stroke(last, next);
  last = next;
  if (!timer) timer = setTimeout(() => { timer = null; predictCanvas(); }, 200);
});
for (const type of ["pointerup", "pointercancel"]) {
  canvas.addEventListener(type, () => { if (drawing) { drawing = false; predictCanvas(); } });
}
document.getElementById("clear").addEventListener("click", clear);
document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) send(file, file.name);
});

function predictCanvas() {
  if (pending) { dirty = true; return; }
  canvas.toBlob((blob) => send(blob, "canvas.png"), "image/png");
}

async function send(blob, name) {
  pending = true;
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const response = await fetch("/api/predict", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      errorEl.textContent = typeof body.detail === "string" ? body.detail : "could not read that image";
      return;
    }
    errorEl.textContent = "";
    if (body.text !== undefined) {  // a line model read the whole drawing as text
      digitEl.textContent = body.text || "·";
      probabilityEl.textContent = `${(100 * body.confidence).toFixed(1)}% sure`;
      inputEl.src = body.input;
      inputEl.hidden = false;
      inputBoxEl.hidden = true;
      return;
    }
    digitEl.textContent = body.label;
    probabilityEl.textContent = `${(100 * body.probability).toFixed(1)}% sure`;
    inputEl.src = body.input;
    inputEl.alt = "what the model sees";
    inputEl.hidden = false;
    inputBoxEl.hidden = true;
    showBars(body.probabilities, body.label);
  } catch (err) {
    errorEl.textContent = `server unreachable (${err})`;
  } finally {
    pending = false;
    if (dirty) { dirty = false; predictCanvas(); }
  }
}

function showBars(probabilities, best) {
  const shown = classes.length <= MAX_BARS ? classes
    : [...classes].sort((a, b) => (probabilities[b] || 0) - (probabilities[a] || 0)).slice(0, MAX_BARS);
  barsEl.replaceChildren(...shown.flatMap((name) => {
    const p = probabilities[name] || 0;
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = name === best ? "bar top" : "bar";
    bar.dataset.digit = name;
    const fill = document.createElement("div");
    fill.style.width = `${(100 * p).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    return [label, bar, value];
  }));
}

// Teach mode: save the drawing under a label, one PNG per sample in data/user/<label>/; show counts per class.
const teachEl = document.getElementById("teach");
const teachForm = document.getElementById("teach-form");
const labelEl = document.getElementById("label");
const savedEl = document.getElementById("saved");
const countsEl = document.getElementById("counts");

function showCounts(counts) {
  countsEl.hidden = !Object.keys(counts).length;
  countsEl.replaceChildren(...Object.entries(counts).map(([name, count]) => {
    const item = document.createElement("li");
    item.dataset.label = name;
    item.textContent = `${name}: ${count}`;
    return item;
  }));
}

teachEl.addEventListener("change", async () => {
  teachForm.hidden = !teachEl.checked;
  if (teachEl.checked) showCounts((await (await fetch("/api/samples")).json()).counts);
});
teachForm.addEventListener("submit", (event) => {
  event.preventDefault();
  canvas.toBlob(async (blob) => {
    const form = new FormData();
    form.append("file", blob, "canvas.png");
    form.append("label", labelEl.value.trim());
    const response = await fetch("/api/samples", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      savedEl.textContent = typeof body.detail === "string" ? body.detail : "could not save that sample";
      return;
    }
    savedEl.textContent = `saved as ${body.label}/${body.file}`;
    showCounts(body.counts);
    clear();
  }, "image/png");
});

// A line model gets a wide canvas, thinner strokes and a text answer: write a word or a number.
function wideCanvas() {
  document.body.classList.add("lines");
  canvas.width = 840;
  canvas.height = 210;
  strokeWidth = 9;
  document.querySelector("header p").textContent = "Write a word or a number on one line; the model reads it whole.";
  document.querySelector(".teach").hidden = true;  // teach mode saves single characters
}

fetch("/api/info").then((response) => response.json()).then((info) => {
  classes = info.classes;
  if (info.task === "lines") wideCanvas();
  document.getElementById("classes").textContent = `This model knows ${classes.length} ${info.task === "lines" ? "characters" : "classes"}: ${classes.join(" ")}`
    + (classes.length > MAX_BARS ? ` (the ${MAX_BARS} most likely are shown)` : "");
  clear();
}).catch(() => {});
clear();

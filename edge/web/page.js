// The car-detector page: status, live view + zone editor, labelling. No framework, no build step.
// Every request goes through api()/blobUrl() so the bearer token (kept in sessionStorage, typed
// once per browser session) rides along; images are fetched the same way, so the page also
// works on a non-loopback bind where every read needs the token.
"use strict";

const $ = (id) => document.getElementById(id);
const SVGNS = "http://www.w3.org/2000/svg";
const LIVE_EVERY_MS = 500;   // live view poll: 2 JPEGs/s while the tab is shown (see edge/page.py)
const STATUS_EVERY_MS = 2000;
const CHART_POINTS = 150;    // 5 minutes at one point per status poll
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;

let token = sessionStorage.getItem("car-detector-token") || "";
let frameSize = { width: 320, height: 240 };

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try { res = await fetch(path, init); } catch (e) { return { ok: false, status: 0, data: { error: String(e) } }; }
  let data = null;
  try { data = await res.json(); } catch (e) { data = {}; }
  if (res.status === 401) notice("This needs the token: type http.token into the box at the top right.");
  if (res.status === 429) notice("Too many edits at once; wait a second and try again.");
  return { ok: res.ok, status: res.status, data };
}

const blobs = {};
async function blobUrl(slot, path) {
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) return null;
  const url = URL.createObjectURL(await res.blob());
  if (blobs[slot]) URL.revokeObjectURL(blobs[slot]);
  blobs[slot] = url;
  return url;
}

function notice(text) { const n = $("notice"); n.textContent = text; n.hidden = !text; }
function el(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function svgPoint(svg, ev) {
  const pt = svg.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const p = pt.matrixTransform(svg.getScreenCTM().inverse());
  return [Math.max(0, Math.min(frameSize.width, p.x)), Math.max(0, Math.min(frameSize.height, p.y))];
}
function fmt(v, unit) { return v === null || v === undefined ? "-" : v + (unit || ""); }
function dl(id, rows) {
  const d = $(id); d.textContent = "";
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    d.append(dt, dd);
  }
}

// ---------------------------------------------------------------- tabs and token
let tab = "status";
for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => showTab(b.dataset.tab));
}
function showTab(name) {
  tab = name;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of ["status", "zones", "label"]) $("tab-" + s).hidden = s !== name;
  if (name === "zones") loadZones();
  if (name === "label") loadCaptures();
}
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  if (token) sessionStorage.setItem("car-detector-token", token); else sessionStorage.removeItem("car-detector-token");
  $("token-state").textContent = token ? "token set" : "";
  notice("");
});
$("token-state").textContent = token ? "token set" : "";

// ---------------------------------------------------------------- status
const history = [];
let lastFrames = null;
async function pollStatus() {
  const r = await api("GET", "/api/status");
  if (r.ok) showStatus(r.data);
  if (tab === "status") {
    const ev = await api("GET", "/api/events");
    if (ev.ok) showEvents(ev.data.events);
  }
  setTimeout(pollStatus, STATUS_EVERY_MS);
}
function showStatus(s) {
  frameSize = s.processing;
  let fps = null;
  if (lastFrames) fps = ((s.frames - lastFrames.frames) / (s.monotonic - lastFrames.t)).toFixed(1);
  lastFrames = { frames: s.frames, t: s.monotonic };
  const m = s.model;
  dl("model", [["run", m.name || m.error || "-"], ["sha256", (m.sha256 || "-").slice(0, 12)],
               ["runtime", fmt(m.runtime)], ["precision", m.precision]]);
  dl("loop", [["fps", fmt(fps)], ["frames", s.frames], ["frame age", fmt(s.seconds_since_last_frame, " s")],
              ["frame age p95", fmt(s.stages_ms.frame_age && s.stages_ms.frame_age.p95, " ms")],
              ["camera errors", s.camera_errors + (s.camera_error ? " (" + s.camera_error + ")" : "")],
              ["skipped / dropped", s.skipped + " / " + s.dropped], ["uptime", fmt(Math.round(s.uptime_s), " s")],
              ["reloads ok / failed", s.reloads.ok + " / " + s.reloads.failed]]);
  dl("pi", [["SoC temperature", fmt(s.soc_temp_c, " °C")], ["throttled", fmt(s.throttled)],
            ["edits", s.writes], ["zones file", s.zones_file || "(none: zones are in the main config)"]]);
  if (!token && s.writes !== "token") notice("Read-only: " + s.writes + ", then type it into the box above.");
  const body = $("stages").tBodies[0]; body.textContent = "";
  for (const [k, v] of Object.entries(s.stages_ms)) {
    const tr = body.insertRow();
    for (const c of [k, v.p50, v.p95]) tr.insertCell().textContent = c;
  }
  const t = s.stages_ms.total;
  if (t) { history.push([t.p50, t.p95]); if (history.length > CHART_POINTS) history.shift(); drawChart(); }
}
function drawChart() {
  const svg = $("chart"); svg.textContent = "";
  const top = Math.max(1e-3, ...history.map((h) => h[1])) * 1.1;
  for (const [i, cls] of [[1, "p95"], [0, "p50"]]) {
    const pts = history.map((h, j) => `${(j * 600) / (CHART_POINTS - 1)},${120 - (h[i] / top) * 115}`).join(" ");
    el("polyline", { points: pts, class: cls }, svg);
  }
  el("text", { x: 4, y: 12, "font-size": 10 }, svg).textContent = top.toFixed(2) + " ms";
}
function showEvents(events) {
  const body = $("events").tBodies[0]; body.textContent = "";
  for (const e of events) {
    const tr = body.insertRow();
    const td = tr.insertCell();
    if (e.thumb) { const img = document.createElement("img"); blobUrl("ev" + e.seq, e.thumb).then((u) => { if (u) img.src = u; }); td.append(img); }
    tr.insertCell().textContent = new Date(e.time * 1000).toLocaleTimeString();
    tr.insertCell().textContent = e.zone;
    tr.insertCell().textContent = e.event === "car_arrived" ? "arrived" : "left";
    tr.insertCell().textContent = e.score.toFixed(2);
  }
}

// ---------------------------------------------------------------- live view
let liveBusy = false;
async function pollLive() {
  if (tab === "zones" && !liveBusy && document.visibilityState === "visible") {
    liveBusy = true;
    const u = await blobUrl("live", "/api/live.jpg");
    if (u) $("live").src = u;
    liveBusy = false;
  }
  setTimeout(pollLive, LIVE_EVERY_MS);
}

// ---------------------------------------------------------------- a shape editor on an SVG
// Shapes: {kind: "rect", x, y, w, h} or {kind: "poly", pts: [[x, y], ...]}.
function corners(s) {
  return s.kind === "rect" ? [[s.x, s.y], [s.x + s.w, s.y], [s.x + s.w, s.y + s.h], [s.x, s.y + s.h]] : s.pts;
}
function moveShape(s, orig, dx, dy) {
  if (s.kind === "rect") {
    s.x = Math.max(0, Math.min(frameSize.width - s.w, orig.x + dx));
    s.y = Math.max(0, Math.min(frameSize.height - s.h, orig.y + dy));
  } else {
    const minx = Math.min(...orig.pts.map((p) => p[0])), maxx = Math.max(...orig.pts.map((p) => p[0]));
    const miny = Math.min(...orig.pts.map((p) => p[1])), maxy = Math.max(...orig.pts.map((p) => p[1]));
    dx = Math.max(-minx, Math.min(frameSize.width - maxx, dx));
    dy = Math.max(-miny, Math.min(frameSize.height - maxy, dy));
    s.pts = orig.pts.map((p) => [p[0] + dx, p[1] + dy]);
  }
}
function dragCorner(s, orig, i, p) {
  if (s.kind === "poly") { s.pts[i] = p; return; }
  const c = corners(orig), opp = c[(i + 2) % 4];
  s.x = Math.min(p[0], opp[0]); s.y = Math.min(p[1], opp[1]);
  s.w = Math.max(1, Math.abs(p[0] - opp[0])); s.h = Math.max(1, Math.abs(p[1] - opp[1]));
}
const clone = (s) => JSON.parse(JSON.stringify(s));
function round(s) {
  if (s.kind === "rect") for (const k of ["x", "y", "w", "h"]) s[k] = Math.round(s[k]);
  else s.pts = s.pts.map((p) => [Math.round(p[0]), Math.round(p[1])]);
}

function shapeEditor(svg, opts) {
  // opts: shapes() -> list, selected() / select(i), cls(i), label(i), onCreate(shape), drawKind(), redraw hook
  let drag = null, poly = null;
  svg.addEventListener("pointerdown", (ev) => {
    const p = svgPoint(svg, ev), t = ev.target;
    if (opts.drawKind() === "poly") {
      poly = poly || [];
      poly.push(p); render(); return;
    }
    if (opts.drawKind() === "rect") {  // a new zone may start on top of an old one
      drag = { mode: "draw", start: p, cur: p };
    } else if (t.dataset.handle !== undefined) {
      const i = +t.dataset.shape;
      drag = { mode: "corner", i, corner: +t.dataset.handle, orig: clone(opts.shapes()[i]) };
    } else if (t.dataset.shape !== undefined) {
      const i = +t.dataset.shape; opts.select(i);
      drag = { mode: "move", i, start: p, orig: clone(opts.shapes()[i]) };
    } else if (opts.drawAnywhere) {
      drag = { mode: "draw", start: p, cur: p };
    } else { opts.select(-1); }
    svg.setPointerCapture(ev.pointerId);
    render();
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const p = svgPoint(svg, ev);
    if (drag.mode === "draw") drag.cur = p;
    else if (drag.mode === "move") moveShape(opts.shapes()[drag.i], drag.orig, p[0] - drag.start[0], p[1] - drag.start[1]);
    else dragCorner(opts.shapes()[drag.i], drag.orig, drag.corner, p);
    render();
  });
  svg.addEventListener("pointerup", () => {
    if (!drag) return;
    if (drag.mode === "draw") {
      const [a, b] = [drag.start, drag.cur];
      const s = { kind: "rect", x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]), w: Math.abs(a[0] - b[0]), h: Math.abs(a[1] - b[1]) };
      if (s.w >= 2 && s.h >= 2) { round(s); opts.onCreate(s); }
    } else { round(opts.shapes()[drag.i]); opts.changed && opts.changed(); }
    drag = null; render();
  });
  function closePoly() {
    if (poly && poly.length >= 3) { const s = { kind: "poly", pts: poly }; round(s); opts.onCreate(s); }
    poly = null; render();
  }
  svg.addEventListener("dblclick", () => { if (poly) { poly.pop(); closePoly(); } });
  function render() {
    svg.setAttribute("viewBox", `0 0 ${frameSize.width} ${frameSize.height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.textContent = "";
    // While drawing, clicks go to the svg itself: zones under the pointer are re-created on every
    // render, and a double-click whose two clicks hit two different elements would never fire.
    svg.classList.toggle("drawing", !!opts.drawKind() || poly !== null);
    (opts.background || (() => {}))(svg);
    opts.shapes().forEach((s, i) => {
      const attrs = { class: opts.cls(i), "data-shape": i };
      if (s.kind === "rect") el("rect", Object.assign(attrs, { x: s.x, y: s.y, width: s.w, height: s.h }), svg);
      else el("polygon", Object.assign(attrs, { points: s.pts.map((p) => p.join(",")).join(" ") }), svg);
      const lbl = opts.label(i);
      if (lbl) { const c = corners(s).reduce((a, b) => (b[1] < a[1] ? b : a)); el("text", { x: c[0] + 2, y: c[1] + 10, class: "zlabel" }, svg).textContent = lbl; }
    });
    const sel = opts.selected();
    if (sel >= 0 && opts.shapes()[sel]) {
      corners(opts.shapes()[sel]).forEach((c, k) =>
        el("circle", { cx: c[0], cy: c[1], r: 3.5, class: "handle", "data-shape": sel, "data-handle": k }, svg));
    }
    if (drag && drag.mode === "draw") {
      const [a, b] = [drag.start, drag.cur];
      el("rect", { x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]), width: Math.abs(a[0] - b[0]), height: Math.abs(a[1] - b[1]), class: "draft" }, svg);
    }
    if (poly) el("polyline", { points: poly.map((p) => p.join(",")).join(" "), class: "draft" }, svg);
  }
  return { render, closePoly, drawingPoly: () => poly !== null };
}

// ---------------------------------------------------------------- zone editor
let zones = [], zoneSel = -1, zoneDraw = null, presence = {};
const zoneEditor = shapeEditor($("z-svg"), {
  shapes: () => zones.map((z) => z.shape),
  selected: () => zoneSel,
  select: (i) => { zoneSel = i; syncZoneForm(); },
  cls: (i) => "zone" + (presence[zones[i].name] ? " present" : "") + (i === zoneSel ? " selected" : ""),
  label: (i) => zones[i].name,
  drawKind: () => zoneDraw,
  onCreate: (shape) => {
    let n = zones.length + 1;
    while (zones.some((z) => z.name === "zone" + n)) n++;
    zones.push({ name: "zone" + n, shape, classify: false });
    zoneSel = zones.length - 1; zoneDraw = null; syncZoneForm(); dirty(true);
  },
  changed: () => dirty(true),
});
function dirty(d) { $("z-state").textContent = d ? "unsaved changes" : ""; }
function syncZoneForm() {
  const z = zones[zoneSel];
  $("z-name").disabled = $("z-delete").disabled = !z;
  $("z-name").value = z ? z.name : "";
}
async function loadZones() {
  const r = await api("GET", "/api/zones");
  if (!r.ok) return;
  frameSize = r.data.processing; presence = r.data.presence;
  zones = r.data.zones.map((z) => ({
    name: z.name, classify: z.classify,
    shape: z.points.length ? { kind: "poly", pts: z.points } : { kind: "rect", x: z.x, y: z.y, w: z.width, h: z.height },
  }));
  zoneSel = -1; syncZoneForm(); zoneEditor.render(); dirty(false);
  return r.data;
}
$("z-rect").addEventListener("click", () => { zoneDraw = "rect"; $("z-state").textContent = "drag on the picture"; });
$("z-poly").addEventListener("click", () => { zoneDraw = "poly"; $("z-state").textContent = "click the corners, double-click to close"; });
$("z-name").addEventListener("input", () => { if (zones[zoneSel]) { zones[zoneSel].name = $("z-name").value.trim(); zoneEditor.render(); dirty(true); } });
$("z-delete").addEventListener("click", deleteZone);
function deleteZone() { if (zoneSel >= 0) { zones.splice(zoneSel, 1); zoneSel = -1; syncZoneForm(); zoneEditor.render(); dirty(true); } }
$("z-save").addEventListener("click", saveZones);
async function saveZones() {
  const bad = zones.find((z) => !NAME_RE.test(z.name));
  if (bad) { $("z-state").textContent = `name "${bad.name}": use letters, digits, - or _`; return; }
  const body = { zones: zones.map((z) => z.shape.kind === "rect"
    ? { name: z.name, x: z.shape.x, y: z.shape.y, width: z.shape.w, height: z.shape.h, classify: z.classify }
    : { name: z.name, points: z.shape.pts, classify: z.classify }) };
  const r = await api("PUT", "/api/zones", body);
  if (!r.ok) { $("z-state").textContent = "not saved: " + r.data.error; return; }
  $("z-state").textContent = "saved to " + r.data.saved + "; applying…";
  const before = r.data.reloads;
  for (let i = 0; i < 50; i++) {  // the daemon applies it between two frames
    await new Promise((res) => setTimeout(res, 200));
    const z = await api("GET", "/api/zones");
    if (!z.ok) continue;
    if (z.data.reloads.ok > before.ok) { await loadZones(); $("z-state").textContent = "applied"; return; }
    if (z.data.reloads.failed > before.failed) { $("z-state").textContent = "saved, but the reload failed: see the daemon's log"; return; }
  }
  $("z-state").textContent = "saved; not applied yet (is the daemon processing frames?)";
}

// ---------------------------------------------------------------- labelling
let captures = [], capIdx = -1, cap = null, boxes = [], boxSel = -1;
const labelEditor = shapeEditor($("l-svg"), {
  shapes: () => boxes,
  selected: () => boxSel,
  select: (i) => { boxSel = i; },
  cls: (i) => "label" + (i === boxSel ? " selected" : ""),
  label: () => null,
  drawKind: () => null,
  drawAnywhere: true,
  onCreate: (s) => { boxes.push(s); boxSel = boxes.length - 1; cap.no_car = false; labelState("edited"); },
  changed: () => labelState("edited"),
  background: (svg) => {
    if (!cap) return;
    for (const p of cap.proposals) {
      el("rect", { x: p.x, y: p.y, width: p.width, height: p.height, class: "proposal" }, svg);
      el("text", { x: p.x + 2, y: p.y - 2, class: "zlabel" }, svg).textContent = p.score.toFixed(2) + " " + p.source;
    }
  },
});
function labelState(t) {
  $("l-state").textContent = (cap ? cap.id + ": " : "") + t + (cap && cap.no_car ? " — no car" : "") + ` — ${boxes.length} box(es)`;
}
async function loadCaptures() {
  const r = await api("GET", "/api/captures");
  if (!r.ok) { $("l-state").textContent = r.data.error || "no captures"; return; }
  captures = r.data.captures;
  const ul = $("captures"); ul.textContent = "";
  captures.forEach((c, i) => {
    const li = document.createElement("li");
    li.textContent = c.id; li.dataset.id = c.id;
    li.classList.toggle("done", c.labelled); li.classList.toggle("nocar", c.no_car);
    li.addEventListener("click", () => openCapture(i));
    ul.append(li);
  });
  if (capIdx < 0 && captures.length) openCapture(captures.findIndex((c) => !c.labelled) >= 0 ? captures.findIndex((c) => !c.labelled) : 0);
  else markList();
}
function markList() {
  for (const li of $("captures").children) li.classList.toggle("current", captures[capIdx] && li.dataset.id === captures[capIdx].id);
}
async function openCapture(i) {
  if (i < 0 || i >= captures.length) return;
  capIdx = i;
  const id = captures[i].id;
  const r = await api("GET", "/api/captures/" + encodeURIComponent(id));
  if (!r.ok) { $("l-state").textContent = r.data.error; return; }
  cap = r.data;
  frameSize = { width: cap.width, height: cap.height };
  boxes = (cap.labels || []).map((b) => ({ kind: "rect", x: b.x, y: b.y, w: b.width, h: b.height }));
  boxSel = -1;
  const u = await blobUrl("capture", "/api/captures/" + encodeURIComponent(id) + "/image");
  if (u) $("l-img").src = u;
  markList(); labelEditor.render();
  labelState(cap.labels === null ? "not labelled yet" : "labelled");
}
function acceptProposals() {
  if (!cap) return;
  for (const p of cap.proposals) {  // a car cut by the border has a box partly outside the picture
    const x0 = Math.max(0, Math.round(p.x)), y0 = Math.max(0, Math.round(p.y));
    const x1 = Math.min(cap.width, Math.round(p.x + p.width)), y1 = Math.min(cap.height, Math.round(p.y + p.height));
    if (x1 - x0 >= 2 && y1 - y0 >= 2) boxes.push({ kind: "rect", x: x0, y: y0, w: x1 - x0, h: y1 - y0 });
  }
  cap.no_car = false; labelEditor.render(); labelState("edited");
}
function toggleNoCar() { if (!cap) return; cap.no_car = !cap.no_car; if (cap.no_car) boxes = []; boxSel = -1; labelEditor.render(); labelState("edited"); }
function deleteBox() { if (boxSel >= 0) { boxes.splice(boxSel, 1); boxSel = -1; labelEditor.render(); labelState("edited"); } }
async function saveLabels() {
  if (!cap) return;
  const labels = boxes.map((b) => ({ x: b.x, y: b.y, width: b.w, height: b.h }));
  const r = await api("PUT", "/api/captures/" + encodeURIComponent(cap.id), { labels, no_car: !!cap.no_car });
  if (!r.ok) { labelState("not saved: " + r.data.error); return; }
  captures[capIdx].labelled = true; captures[capIdx].no_car = r.data.no_car;
  const li = $("captures").children[capIdx];
  li.classList.add("done"); li.classList.toggle("nocar", r.data.no_car);
  cap = r.data; labelState("saved");
}
$("l-accept").addEventListener("click", acceptProposals);
$("l-nocar").addEventListener("click", toggleNoCar);
$("l-del").addEventListener("click", deleteBox);
$("l-save").addEventListener("click", saveLabels);
$("l-next").addEventListener("click", () => openCapture(capIdx + 1));
$("l-prev").addEventListener("click", () => openCapture(capIdx - 1));
$("l-export").addEventListener("click", async () => {
  const r = await api("POST", "/api/export");
  $("l-export-out").textContent = r.ok ? `${r.data.frames} frames, ${r.data.boxes} boxes → ${r.data.dest}` : "not exported: " + r.data.error;
});

document.addEventListener("keydown", (ev) => {
  if (ev.target.tagName === "INPUT") { if (ev.key === "Enter" && tab === "zones") ev.target.blur(); return; }
  if (tab === "zones") {
    if (ev.key === "Enter" && zoneEditor.drawingPoly()) zoneEditor.closePoly();
    else if (ev.key === "Delete" || ev.key === "Backspace") deleteZone();
    else if (ev.key === "Escape") { zoneDraw = null; zoneSel = -1; syncZoneForm(); zoneEditor.render(); }
    return;
  }
  if (tab !== "label") return;
  const k = ev.key.toLowerCase();
  if (k === "a") acceptProposals();
  else if (k === "n") toggleNoCar();
  else if (k === "delete" || k === "backspace") deleteBox();
  else if (k === "s") { ev.preventDefault(); saveLabels(); }
  else if (k === "j" || ev.key === "ArrowRight") openCapture(capIdx + 1);
  else if (k === "k" || ev.key === "ArrowLeft") openCapture(capIdx - 1);
  else return;
  ev.preventDefault();
});

pollStatus();
pollLive();

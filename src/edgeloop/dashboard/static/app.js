// The edgeloop dashboard: plain DOM, no framework, never parsing HTML. Every value from the API
// reaches the page as a text node or an attribute set by this file, so nothing it shows can
// run as markup. Charts are inline SVG drawn here.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "edgeloop.token";
const REFRESH_MS = 5000;
const SILENT_AFTER_S = 60; // a site not heard from for this long is shown as silent
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#3b6ea8", "#e07b39", "#3d9970", "#b10dc9", "#c0392b", "#7f8c8d", "#f1c40f", "#16a085"];

const state = { who: null, timer: null, renderId: 0, auditRows: [], auditAfter: 0, auditFor: null,
  timelineFamilies: null, modelVersion: {} };

// -- DOM helpers ---------------------------------------------------------------------------

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  return el;
}

function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

function svg(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const $ = (id) => document.getElementById(id);

// -- formatting ----------------------------------------------------------------------------

function toDate(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return new Date(value * 1000);
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

function fmtTime(value) {
  const d = toDate(value);
  if (!d) return "-";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function ago(value) {
  const d = toDate(value);
  if (!d) return "never";
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "-";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return Math.abs(value) >= 1e4 ? value.toExponential(2) : Number(value.toPrecision(digits)).toString();
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

function table(headers, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "nothing yet"))));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === "" ? "-" : v)]));
}

function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

function link(hash, text) {
  return h("a", { href: hash }, text);
}

function shortJson(data) {
  const text = JSON.stringify(data);
  return text.length > 160 ? text.slice(0, 157) + "..." : text;
}

// -- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, token) {
  const secret = token || sessionStorage.getItem(TOKEN_KEY);
  const response = await fetch(API + path, {
    headers: { Authorization: `Bearer ${secret}`, Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401 && !token) signOut(`Signed out: ${message}`);
    throw new ApiError(response.status, message);
  }
  return body;
}

// -- sign in and out -----------------------------------------------------------------------

const PERSON_ROLES = ["admin", "operator", "scientist", "viewer"];

async function signIn(token) {
  const who = await api("/whoami", token);
  if (!PERSON_ROLES.includes(who.role)) {
    throw new ApiError(403, `a ${who.role} token cannot use the dashboard; use a person's token (viewer or above)`);
  }
  return who;
}

function showLogin(message) {
  $("login").hidden = false;
  $("main").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.who = null;
  if (state.timer) clearTimeout(state.timer);
  showLogin(message);
}

function showApp(who) {
  state.who = who;
  $("login").hidden = true;
  $("main").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = `${who.name} (${who.role}, project ${who.project})`;
  if (!location.hash || location.hash === "#") location.hash = "#/fleet";
  else render();
}

async function onLogin(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  try {
    const who = await signIn(token);
    sessionStorage.setItem(TOKEN_KEY, token);
    showApp(who);
  } catch (err) {
    showLogin(`Sign-in refused: ${err.message}`);
  }
}

// -- routing -------------------------------------------------------------------------------

const PAGES = { fleet: fleetPage, models: modelsPage, rollouts: rolloutsPage,
  monitoring: monitoringPage, timeline: timelinePage, audit: auditPage };

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = PAGES[parts[0]] ? parts[0] : "fleet";
  return { name, args: parts.slice(1).filter(Boolean) };
}

async function render(quiet) {
  if (!state.who) return;
  if (state.timer) clearTimeout(state.timer);
  const id = ++state.renderId;
  const { name, args } = route();
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  const status = $("status");
  try {
    const node = await PAGES[name](args);
    if (id !== state.renderId) return; // a newer render started meanwhile
    const page = $("page");
    const scroll = window.scrollY;
    clear(page).appendChild(node);
    if (quiet) window.scrollTo(0, scroll);
    status.textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
    status.classList.remove("error");
  } catch (err) {
    if (id !== state.renderId || !state.who) return;
    status.textContent = `Could not load this page: ${err.message}`;
    status.classList.add("error");
  }
  if (id === state.renderId && state.who) {
    state.timer = setTimeout(() => {
      // Leave the page alone while someone is using a control on it.
      const busy = document.activeElement && $("page").contains(document.activeElement) &&
        ["SELECT", "INPUT"].includes(document.activeElement.tagName);
      if (!document.hidden && !busy) render(true);
      else state.timer = setTimeout(() => render(true), REFRESH_MS);
    }, REFRESH_MS);
  }
}

// -- charts --------------------------------------------------------------------------------

function niceMax(value) {
  if (!(value > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
  return 10 * p;
}

// A time-series chart: series [{name, points: [{x: Date, y}]}], optional horizontal `bound`
// and `marks` (x positions drawn as red ticks, e.g. windows that drifted).
function lineChart({ series, bound, marks, yLabel, height = 190, width = 640, yMax }) {
  const pad = { l: 48, r: 12, t: 14, b: 26 };
  const xs = series.flatMap((s) => s.points.map((p) => p.x.getTime()));
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y !== null && Number.isFinite(y));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": yLabel || "chart" });
  if (!xs.length) {
    root.appendChild(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
    return root;
  }
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1800e3; x1 += 1800e3; }
  const top = yMax !== undefined ? yMax : niceMax(Math.max(...ys, bound || 0));
  const X = (t) => pad.l + ((t - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (v) => height - pad.b - (Math.min(v, top) / top) * (height - pad.t - pad.b);
  for (const frac of [0, 0.5, 1]) {
    const y = Y(top * frac);
    root.appendChild(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid" }));
    root.appendChild(svg("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", class: "axis" }, num(top * frac, 2)));
  }
  root.appendChild(svg("text", { x: pad.l, y: height - 6, class: "axis" }, fmtTime(new Date(x0))));
  root.appendChild(svg("text", { x: width - pad.r, y: height - 6, "text-anchor": "end", class: "axis" }, fmtTime(new Date(x1))));
  if (bound !== undefined && bound !== null) {
    const y = Y(bound);
    root.appendChild(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "bound" }));
    root.appendChild(svg("text", { x: width - pad.r, y: y - 4, "text-anchor": "end", class: "axis" }, `bound ${num(bound)}`));
  }
  for (const t of marks || []) {
    const x = X(t.getTime());
    root.appendChild(svg("line", { x1: x, x2: x, y1: pad.t - 8, y2: height - pad.b, class: "mark" }));
  }
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const pts = s.points.filter((p) => p.y !== null && Number.isFinite(p.y));
    if (pts.length > 1) {
      root.appendChild(svg("polyline", { points: pts.map((p) => `${X(p.x.getTime()).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    }
    for (const p of pts) {
      root.appendChild(svg("circle", { cx: X(p.x.getTime()).toFixed(1), cy: Y(p.y).toFixed(1), r: 3, fill: colour },
        svg("title", {}, `${s.name}: ${num(p.y)} at ${fmtTime(p.x)}`)));
    }
  });
  return root;
}

function legend(names) {
  return h("p", { class: "legend" }, names.map((n, i) =>
    h("span", { class: "key" }, svg("svg", { width: 12, height: 12, class: "swatch" }, svg("rect", { width: 12, height: 12, fill: PALETTE[i % PALETTE.length] })), n)));
}

// Reference (line) against window (bars) of one feature of a drift report.
function histogram(plot) {
  const width = 300, height = 130, pad = 22;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart small", role: "img", "aria-label": `${plot.name} reference against window` });
  const ref = plot.reference || [], cur = plot.current || [];
  const n = Math.max(ref.length, cur.length);
  if (!n) return root;
  let refD = ref, curD = cur;
  if (plot.edges && plot.edges.length === n + 1) {
    const span = (plot.edges[n] - plot.edges[0]) || 1;
    const widths = plot.edges.slice(1).map((e, i) => Math.max(e - plot.edges[i], span * 1e-3));
    refD = ref.map((v, i) => v / widths[i]);
    curD = cur.map((v, i) => v / widths[i]);
  }
  const top = Math.max(...refD, ...curD, 1e-12);
  const slot = (width - 2 * pad) / n;
  const Y = (v) => height - pad - (v / top) * (height - 2 * pad);
  curD.forEach((v, i) => root.appendChild(svg("rect", { x: (pad + i * slot).toFixed(1), y: Y(v).toFixed(1), width: Math.max(slot - 1, 0.5).toFixed(1), height: (height - pad - Y(v)).toFixed(1), class: "window-bar" })));
  const step = refD.map((v, i) => `${(pad + i * slot).toFixed(1)},${Y(v).toFixed(1)} ${(pad + (i + 1) * slot).toFixed(1)},${Y(v).toFixed(1)}`).join(" ");
  root.appendChild(svg("polyline", { points: step, class: "reference-line", fill: "none" }));
  root.appendChild(svg("line", { x1: pad, x2: width - pad, y1: height - pad, y2: height - pad, class: "grid" }));
  if (plot.edges) {
    root.appendChild(svg("text", { x: pad, y: height - 6, class: "axis" }, num(plot.edges[0])));
    root.appendChild(svg("text", { x: width - pad, y: height - 6, "text-anchor": "end", class: "axis" }, num(plot.edges[plot.edges.length - 1])));
  } else if (plot.labels) {
    plot.labels.forEach((label, i) => root.appendChild(svg("text", { x: (pad + (i + 0.5) * slot).toFixed(1), y: height - 8, "text-anchor": "middle", class: "axis" }, String(label).slice(0, 10))));
  }
  return root;
}

// Segments of a rollout's waves: passed, active, pending, halted.
function waveBar(rollout) {
  const width = 220, height = 14, gap = 3;
  const n = Math.max(rollout.wave_count || 0, 1);
  const w = (width - gap * (n - 1)) / n;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "wavebar", role: "img", "aria-label": `wave ${rollout.current_wave + 1} of ${rollout.wave_count}` });
  for (let i = 0; i < n; i++) {
    let kind = "pending";
    if (rollout.state === "completed" || i < rollout.current_wave) kind = "passed";
    else if (i === rollout.current_wave) kind = halted(rollout) ? "halted" : (rollout.state === "running" ? "active" : rollout.state);
    root.appendChild(svg("rect", { x: (i * (w + gap)).toFixed(1), y: 0, width: w.toFixed(1), height, rx: 3, class: `wave ${kind}` }, svg("title", {}, `wave ${i + 1}: ${kind}`)));
  }
  return root;
}

// The lineage graph: capture sites -> datasets -> runs -> versions, and parent -> child.
function lineageSvg(graph, selected, onSelect) {
  const order = ["site", "dataset", "run", "version"];
  const kinds = order.filter((k) => graph.nodes.some((n) => n.kind === k));
  const colW = 190, rowH = 46, boxW = 160, boxH = 30, pad = 16;
  const columns = kinds.map((k) => graph.nodes.filter((n) => n.kind === k));
  const rows = Math.max(...columns.map((c) => c.length), 1);
  const width = pad * 2 + kinds.length * colW + 40, height = pad * 2 + rows * rowH + 14;
  const pos = {};
  columns.forEach((nodes, ci) => nodes.forEach((n, ri) => { pos[n.id] = { x: pad + ci * colW, y: pad + 14 + ri * rowH }; }));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "lineage", role: "img", "aria-label": "lineage graph" });
  kinds.forEach((k, ci) => root.appendChild(svg("text", { x: pad + ci * colW, y: pad, class: "axis" }, { site: "captured at", dataset: "dataset", run: "pipeline run", version: "version" }[k])));
  for (const e of graph.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    let d;
    if (a.x === b.x) { // parent -> child in the version column: an arc on the right
      const x = a.x + boxW, bulge = x + 28;
      d = `M${x},${a.y + boxH / 2} C${bulge},${a.y + boxH / 2} ${bulge},${b.y + boxH / 2} ${x},${b.y + boxH / 2}`;
    } else {
      const x1 = a.x + boxW, y1 = a.y + boxH / 2, x2 = b.x, y2 = b.y + boxH / 2, mid = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    }
    root.appendChild(svg("path", { d, class: a.x === b.x ? "edge parent" : "edge", "marker-end": "url(#arrow)" }));
  }
  root.appendChild(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  for (const n of graph.nodes) {
    const p = pos[n.id];
    const isSel = n.kind === "version" && n.label === selected;
    const g = svg("g", { class: `node ${n.kind}${isSel ? " selected" : ""}`, transform: `translate(${p.x},${p.y})`, "data-node": n.id, tabindex: n.kind === "version" ? 0 : null });
    g.appendChild(svg("rect", { width: boxW, height: boxH, rx: 6 }));
    const label = n.label.length > 22 ? n.label.slice(0, 21) + "…" : n.label;
    g.appendChild(svg("text", { x: 8, y: 19 }, label));
    g.appendChild(svg("title", {}, `${n.kind} ${n.label}\n${JSON.stringify(n.detail)}`));
    if (n.kind === "version") g.addEventListener("click", () => onSelect(n.label));
    root.appendChild(g);
  }
  return root;
}

// -- pages ---------------------------------------------------------------------------------

function halted(rollout) {
  return (rollout.reason || "").startsWith("halted");
}

function rolloutBadge(rollout) {
  if (halted(rollout)) return badge("halted", "bad");
  const kinds = { running: "info", paused: "warn", completed: "ok", aborted: "bad", rolled_back: "warn" };
  return badge(rollout.state.replace("_", " "), kinds[rollout.state]);
}

function healthBadge(site) {
  if (site.healthy === null || site.healthy === undefined || !site.last_seen) return badge("no heartbeat yet", "muted");
  if ((Date.now() / 1000 - site.last_seen) > SILENT_AFTER_S) return badge("silent", "warn");
  return site.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad");
}

function loadedList(loaded) {
  const entries = Object.entries(loaded || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return entries.map(([m, v]) => h("span", { class: "chip" }, `${m}:${v}`));
}

function tile(label, value, kind) {
  return h("div", { class: `tile ${kind || ""}` }, h("div", { class: "value" }, value), h("div", { class: "label" }, label));
}

async function fleetPage() {
  const [sites, rollouts, deployments] = await Promise.all([api("/sites"), api("/rollouts"), api("/deployments")]);
  const now = Date.now() / 1000;
  const silent = sites.filter((s) => s.last_seen && now - s.last_seen > SILENT_AFTER_S).length;
  const active = rollouts.filter((r) => r.state === "running" || r.state === "paused");
  const backlog = sites.reduce((a, s) => a + (s.backlog || 0), 0);
  const drops = sites.reduce((a, s) => a + (s.capture_drops || 0), 0);
  const unhealthy = sites.filter((s) => s.healthy === false).length;
  return h("div", {},
    h("h1", {}, "Fleet"),
    h("div", { class: "tiles" },
      tile("sites", sites.length),
      tile("healthy", sites.filter((s) => s.healthy === true).length, "ok"),
      tile("unhealthy", unhealthy, unhealthy ? "bad" : ""),
      tile(`silent > ${SILENT_AFTER_S} s`, silent, silent ? "warn" : ""),
      tile("active rollouts", active.length, active.length ? "info" : ""),
      tile("replication backlog", backlog, backlog ? "warn" : ""),
      tile("capture drops", drops, drops ? "bad" : "")),
    section("Sites", table(
      ["site", "labels", "health", "loaded versions", "last seen", "backlog", "capture drops", "error rate", "p99 ms", "message"],
      sites.map((s) => h("tr", { "data-site": s.name },
        h("td", {}, h("b", {}, s.name)),
        h("td", {}, Object.entries(s.labels || {}).map(([k, v]) => h("span", { class: "chip muted" }, `${k}=${v}`))),
        h("td", {}, healthBadge(s)),
        h("td", { class: "loaded" }, loadedList(s.loaded)),
        h("td", { title: fmtTime(s.last_seen) }, ago(s.last_seen)),
        h("td", { class: "num" }, num(s.backlog)),
        h("td", { class: "num" }, num(s.capture_drops)),
        h("td", { class: "num" }, num(s.error_rate)),
        h("td", { class: "num" }, num(s.p99_ms)),
        h("td", { class: "message" }, s.message || ""))),
      { id: "sites" })),
    section("Deployments", table(
      ["deployment", "model", "version", "follows alias", "selector"],
      deployments.map((d) => h("tr", {},
        h("td", {}, d.name), h("td", {}, d.model), h("td", {}, d.version || "-"),
        h("td", {}, d.alias || "-"), h("td", {}, h("code", {}, d.selector || "(all sites)")))))),
    active.length ? section("Rollouts in progress", rolloutTable(active)) : null);
}

async function modelsPage(args) {
  if (args.length) return modelPage(args[0]);
  const result = await api("/registry/models");
  if (!result.available) {
    return h("div", {}, h("h1", {}, "Models"), h("p", { class: "muted" },
      "This control plane has no model registry: it was started without a workspace (`edgeloop fleet serve -w DIR` or `edgeloop core` give it one)."));
  }
  return h("div", {}, h("h1", {}, "Models"), section("Registered models", table(
    ["model", "versions", "latest", "champion", "aliases", "last registered"],
    result.models.map((m) => h("tr", { "data-model": m.name },
      h("td", {}, link(`#/models/${encodeURIComponent(m.name)}`, m.name)),
      h("td", { class: "num" }, m.versions), h("td", { class: "num" }, m.latest ?? "-"),
      h("td", { class: "num" }, m.champion ?? "-"),
      h("td", {}, Object.entries(m.aliases).map(([a, v]) => h("span", { class: "chip" }, `${a} → ${v}`))),
      h("td", {}, fmtTime(m.updated)))))));
}

async function modelPage(name) {
  const model = await api(`/registry/models/${encodeURIComponent(name)}`);
  const versions = model.versions;
  const champion = model.aliases.champion;
  const latest = versions.length ? versions[versions.length - 1].version : null;
  const wanted = state.modelVersion[name] || champion || latest;
  const chosen = versions.find((v) => v.version === wanted) || versions[versions.length - 1];
  const metricNames = [...new Set(versions.flatMap((v) => Object.keys(v.metrics || {})))].sort();
  const select = (label) => {
    state.modelVersion[name] = Number(label.split(":").pop());
    render(true);
  };
  const card = chosen ? chosen.card || {} : {};
  const cardPairs = [["description", card.description], ["intended use", card.intended_use],
    ["limitations", card.limitations], ["owners", (card.owners || []).join(", ")], ["training data", card.training_data]];
  for (const [k, v] of Object.entries(card)) {
    if (!["description", "intended_use", "limitations", "owners", "training_data"].includes(k)) cardPairs.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  const lin = chosen ? chosen.lineage || {} : {};
  return h("div", {},
    h("p", {}, link("#/models", "← all models")),
    h("h1", {}, `Model ${name}`),
    h("p", {}, Object.entries(model.aliases).map(([a, v]) => h("span", { class: "chip" }, `${a} → ${v}`))),
    section("Versions", table(
      ["version", "state", "aliases", "registered", ...metricNames, "run", "parent", "signer"],
      versions.map((v) => h("tr", { class: chosen && v.version === chosen.version ? "selected" : "", "data-version": v.version },
        h("td", {}, h("a", { href: `#/models/${encodeURIComponent(name)}`, onclick: (e) => { e.preventDefault(); select(`${name}:${v.version}`); } }, `${name}:${v.version}`)),
        h("td", {}, badge(v.state, v.state === "registered" ? "ok" : v.state === "revoked" || v.state === "failed" ? "bad" : "muted")),
        h("td", {}, (v.aliases || []).map((a) => h("span", { class: "chip" }, a))),
        h("td", {}, fmtTime(v.registered)),
        metricNames.map((m) => h("td", { class: "num" }, num((v.metrics || {})[m]))),
        h("td", {}, (v.lineage || {}).run_id || "-"),
        h("td", {}, (v.lineage || {}).parent ?? "-"),
        h("td", {}, h("code", {}, v.signer || "-")))))),
    section("Lineage", h("p", { class: "hint" }, "Where each version came from: the sites whose captured data it learned from, its dataset snapshot, the pipeline run that trained it, and the version it refines. Click a version to see its card."),
      lineageSvg(model.lineage, chosen ? `${name}:${chosen.version}` : null, select)),
    chosen ? section(`Version ${name}:${chosen.version}`,
      h("div", { class: "columns" },
        h("div", {}, h("h3", {}, "Model card"), kv(cardPairs)),
        h("div", {}, h("h3", {}, "Made from"), kv([
          ["pipeline", lin.pipeline || "-"], ["run", lin.run_id || "-"], ["code version", lin.code_version || "-"],
          ["dataset", lin.dataset ? `${lin.dataset.snapshot} (${num(lin.dataset.rows)} rows)` : "-"],
          ["captures", `${(lin.captures || []).length} objects`], ["labels", `${(lin.labels || []).length} objects`],
          ["parameters", Object.keys(lin.parameters || {}).length ? shortJson(lin.parameters) : "-"],
          ["format", `${chosen.format} (${chosen.runtime})`], ["files", Object.keys(chosen.files || {}).length]])))) : null,
    metricNames.length ? section("Metrics by version", metricNames.map((m) => h("div", { class: "metric" }, h("h3", {}, m),
      barChart(versions.filter((v) => (v.metrics || {})[m] !== undefined).map((v) => ({ label: `v${v.version}`, value: v.metrics[m] })))))) : null);
}

function barChart(bars) {
  const width = 320, height = 120, pad = 22;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart small", role: "img", "aria-label": "metric by version" });
  if (!bars.length) return root;
  const top = niceMax(Math.max(...bars.map((b) => Math.abs(b.value))));
  const slot = (width - 2 * pad) / bars.length;
  bars.forEach((b, i) => {
    const hgt = (Math.abs(b.value) / top) * (height - 2 * pad);
    const x = pad + i * slot + slot * 0.15;
    root.appendChild(svg("rect", { x: x.toFixed(1), y: (height - pad - hgt).toFixed(1), width: (slot * 0.7).toFixed(1), height: hgt.toFixed(1), class: "metric-bar" }, svg("title", {}, `${b.label}: ${num(b.value, 4)}`)));
    root.appendChild(svg("text", { x: (x + slot * 0.35).toFixed(1), y: height - 6, "text-anchor": "middle", class: "axis" }, b.label));
    root.appendChild(svg("text", { x: (x + slot * 0.35).toFixed(1), y: (height - pad - hgt - 4).toFixed(1), "text-anchor": "middle", class: "axis" }, num(b.value, 3)));
  });
  return root;
}

function rolloutTable(rollouts) {
  return table(["rollout", "deployment", "model", "versions", "state", "waves", "reason", "started", "by"],
    rollouts.map((r) => h("tr", { "data-rollout": r.id, class: halted(r) ? "halted" : "" },
      h("td", {}, link(`#/rollouts/${encodeURIComponent(r.id)}`, r.id)),
      h("td", {}, r.deployment), h("td", {}, r.model),
      h("td", {}, `${r.from_version || "-"} → ${r.to_version}`),
      h("td", {}, rolloutBadge(r)),
      h("td", {}, waveBar(r), h("span", { class: "muted" }, ` ${Math.min(r.current_wave + 1, r.wave_count)}/${r.wave_count} (${r.site_count} sites)`)),
      h("td", { class: "message" }, r.reason || ""),
      h("td", { title: fmtTime(r.created_at) }, ago(r.created_at)),
      h("td", {}, r.created_by || "-"))));
}

async function rolloutsPage(args) {
  if (args.length) return rolloutPage(args[0]);
  const rollouts = await api("/rollouts");
  const halts = rollouts.filter(halted);
  return h("div", {}, h("h1", {}, "Rollouts"),
    halts.length ? h("p", { class: "alert" }, `${halts.length} rollout(s) halted by their health gate and rolled back.`) : null,
    section("All rollouts, newest first", rolloutTable(rollouts)));
}

async function rolloutPage(id) {
  const r = await api(`/rollouts/${encodeURIComponent(id)}`);
  const gate = r.gate || {};
  return h("div", {},
    h("p", {}, link("#/rollouts", "← all rollouts")),
    h("h1", {}, `Rollout ${r.id} `, rolloutBadge(r)),
    halted(r) ? h("p", { class: "alert" }, r.reason) : null,
    section("Summary", h("div", { class: "columns" },
      kv([["deployment", r.deployment], ["model", r.model], ["from", r.from_version || "-"], ["to", r.to_version],
        ["state", r.state], ["reason", r.reason || "-"], ["started", fmtTime(r.created_at)], ["updated", fmtTime(r.updated_at)], ["by", r.created_by || "-"]]),
      h("div", {}, h("h3", {}, "Health gate"), kv(Object.entries(gate).map(([k, v]) => [k.replaceAll("_", " "), v === null ? "-" : String(v)]))))),
    r.waves.map((w) => section(`Wave ${w.index + 1}: ${w.state}`, table(
      ["site", "loaded", "on target", "health", "last seen", "problem"],
      w.sites.map((s) => h("tr", { "data-site": s.site, class: s.problem ? "halted" : "" },
        h("td", {}, s.site), h("td", {}, s.loaded || "-"),
        h("td", {}, s.on_target ? badge("yes", "ok") : badge("no", "muted")),
        h("td", {}, s.healthy === null ? badge("unknown", "muted") : s.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad")),
        h("td", {}, ago(s.last_seen)), h("td", { class: "message" }, s.problem || "")))))));
}

async function monitoringPage(args) {
  const [monitored, registry] = await Promise.all([api("/monitoring"), api("/registry/models")]);
  const models = [...new Set([...monitored.models, ...registry.models.map((m) => m.name)])].sort();
  const model = args[0] || models[0];
  const picker = h("select", { id: "model-picker", "aria-label": "model", onchange: (e) => { location.hash = `#/monitoring/${encodeURIComponent(e.target.value)}`; } },
    models.map((m) => h("option", { value: m, selected: m === model }, m)));
  const head = [h("h1", {}, "Drift & quality"), h("p", {}, h("label", { for: "model-picker" }, "Model "), picker)];
  if (!model) return h("div", {}, head, h("p", { class: "muted" }, "No model is monitored yet: the drift job needs a reference profile (`edgeloop drift profile`)."));
  const [drift, quality] = await Promise.all([
    api(`/monitoring/${encodeURIComponent(model)}/drift`),
    api(`/monitoring/${encodeURIComponent(model)}/quality`).catch((err) => ({ error: err.message, points: [] })),
  ]);
  const sites = [...new Set([...drift.sites.map((s) => s.site), ...quality.points.map((p) => p.site)])].sort();
  const cards = sites.map((site) => siteMonitoring(site, drift.sites.find((s) => s.site === site), quality));
  return h("div", {}, head,
    quality.error ? h("p", { class: "error" }, `Live quality could not be scored: ${quality.error}`) : null,
    cards.length ? cards : h("p", { class: "muted" }, `No drift report or labelled capture of ${model} yet.`));
}

function siteMonitoring(site, drift, quality) {
  const reports = drift ? drift.reports : [];
  const latest = reports[reports.length - 1];
  const features = [...new Set(reports.flatMap((r) => r.features.map((f) => f.name)))];
  const series = features.map((name) => ({ name, points: reports.map((r) => {
    const f = r.features.find((x) => x.name === name);
    return { x: toDate(r.window_end), y: f ? f.psi : null };
  }) }));
  const marks = reports.filter((r) => r.status === "drift").map((r) => toDate(r.window_end));
  const points = quality.points.filter((p) => p.site === site);
  const versions = [...new Set(points.map((p) => p.version))];
  const qSeries = versions.map((v) => ({ name: `version ${v}`, points: points.filter((p) => p.version === v).map((p) => ({ x: toDate(p.bucket_start), y: p.value })) }));
  const statusKind = { drift: "bad", no_drift: "ok" };
  return h("section", { class: "card site-monitoring", "data-site": site },
    h("h2", {}, `${site} `, latest ? badge(latest.status.replace("_", " "), statusKind[latest.status] || "muted") : badge("no drift report", "muted")),
    latest ? h("p", {}, `Latest window ${fmtTime(latest.window_start)} to ${fmtTime(latest.window_end)}: ${num(latest.rows)} rows, version ${latest.version}; drifted: `,
      h("b", { class: "drifted" }, latest.drifted.length ? latest.drifted.join(", ") : "nothing")) : null,
    reports.length ? [h("h3", {}, "Population stability index per feature (red ticks: windows that drifted)"),
      lineChart({ series, marks, yLabel: `PSI at ${site}` }), legend(features)] : null,
    drift && drift.latest_plots.length ? [h("h3", {}, "Latest window against the reference (line: reference, bars: window)"),
      h("div", { class: "histograms" }, drift.latest_plots.map((p) => h("figure", { class: p.status === "drift" ? "drift" : "" }, histogram(p), h("figcaption", {}, `${p.name} (${p.status})`))))] : null,
    h("h3", {}, `Live quality (${quality.metric || "-"} per ${points.length ? "bucket" : "bucket; no labelled captures yet"})`),
    points.length ? [lineChart({ series: qSeries, bound: quality.bound, yLabel: `quality at ${site}`, yMax: quality.metric === "mae" ? undefined : 1 }), legend(qSeries.map((s) => s.name))] : null);
}

const FAMILIES = [
  ["replication", "object.replicated", true],
  ["objects written", "object.created", false],
  ["pipeline runs", "run.*", true],
  ["triggers", "trigger.*", true],
  ["models", "model.*", true],
  ["rollouts", "rollout.*", true],
  ["drift", "drift.*", true],
  ["quality", "quality.*", true],
  ["sites", "site.*", true],
];

function familyOf(type) {
  const found = FAMILIES.find(([, pattern]) => pattern.endsWith(".*") ? type.startsWith(pattern.slice(0, -1)) : type === pattern);
  return found ? found[0] : "other";
}

async function timelinePage() {
  if (!state.timelineFamilies) state.timelineFamilies = new Set(FAMILIES.filter((f) => f[2]).map((f) => f[0]));
  const chosen = FAMILIES.filter(([name]) => state.timelineFamilies.has(name)).map(([, p]) => p);
  const query = chosen.map((p) => `type=${encodeURIComponent(p)}`).join("&");
  const result = chosen.length ? await api(`/journal?limit=300&${query}`) : { entries: [], last_seq: 0 };
  const filters = h("div", { class: "filters" }, FAMILIES.map(([name, pattern]) => h("label", { class: "chip" },
    h("input", { type: "checkbox", checked: state.timelineFamilies.has(name), "data-family": name, onchange: (e) => {
      if (e.target.checked) state.timelineFamilies.add(name); else state.timelineFamilies.delete(name);
      e.target.blur();
      render(true);
    } }), ` ${name} `, h("code", {}, pattern))));
  const entries = result.entries;
  return h("div", {}, h("h1", {}, "Loop timeline"),
    h("p", { class: "hint" }, `The core journal, newest first (${num(result.last_seq)} events in all): what replicated up, which runs the triggers started, what was registered, how rollouts moved, where drift was found.`),
    filters, swimlanes(entries),
    section("Events", table(["#", "time", "type", "site", "subject", "details"],
      entries.map((e) => h("tr", { "data-type": e.type, class: `family-${familyOf(e.type).replace(/\W+/g, "-")}` },
        h("td", { class: "num" }, e.seq), h("td", {}, fmtTime(e.time)),
        h("td", {}, badge(e.type, eventKind(e.type))), h("td", {}, e.site),
        h("td", { class: "subject" }, e.subject), h("td", { class: "message" }, shortJson(e.data)))), { id: "timeline" })));
}

function eventKind(type) {
  if (/(failed|halted|unhealthy|rolled_back|degraded|aborted)$/.test(type) || type.startsWith("drift.")) return "bad";
  if (/(succeeded|completed|registered|healthy|promoted)$/.test(type)) return "ok";
  return "info";
}

// Events on one lane per family along time, so the loop's rhythm shows at a glance.
function swimlanes(entries) {
  const lanes = [...new Set(entries.map((e) => familyOf(e.type)))];
  const width = 900, laneH = 22, left = 120, pad = 10;
  const height = pad * 2 + Math.max(lanes.length, 1) * laneH + 16;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart swimlanes", role: "img", "aria-label": "events by kind over time" });
  if (!entries.length) {
    root.appendChild(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no events yet"));
    return root;
  }
  const times = entries.map((e) => toDate(e.time).getTime());
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (t0 === t1) { t0 -= 60e3; t1 += 60e3; }
  const X = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - pad);
  lanes.forEach((lane, i) => {
    const y = pad + i * laneH + laneH / 2;
    root.appendChild(svg("text", { x: 4, y: y + 4, class: "axis" }, lane));
    root.appendChild(svg("line", { x1: left, x2: width - pad, y1: y, y2: y, class: "grid" }));
  });
  for (const e of entries) {
    const y = pad + lanes.indexOf(familyOf(e.type)) * laneH + laneH / 2;
    root.appendChild(svg("circle", { cx: X(toDate(e.time).getTime()).toFixed(1), cy: y, r: 4, class: `dot ${eventKind(e.type)}` },
      svg("title", {}, `${fmtTime(e.time)} ${e.type} ${e.site} ${e.subject}`)));
  }
  root.appendChild(svg("text", { x: left, y: height - 4, class: "axis" }, fmtTime(new Date(t0))));
  root.appendChild(svg("text", { x: width - pad, y: height - 4, "text-anchor": "end", class: "axis" }, fmtTime(new Date(t1))));
  return root;
}

async function auditPage() {
  if (state.who.role !== "admin") {
    return h("div", {}, h("h1", {}, "Audit log"), h("p", { class: "muted" }, "The audit log is for admins: sign in with an admin token to read it."));
  }
  if (state.auditFor !== state.who.token_id) {
    state.auditRows = [];
    state.auditAfter = 0;
    state.auditFor = state.who.token_id;
  }
  // The API reads forward from a sequence number: fetch what is new since the last visit.
  for (;;) {
    const rows = await api(`/audit?after=${state.auditAfter}&limit=5000`);
    if (!rows.length) break;
    state.auditRows = state.auditRows.concat(rows).slice(-1000);
    state.auditAfter = rows[rows.length - 1].seq;
    if (rows.length < 5000) break;
  }
  const rows = state.auditRows.slice().reverse();
  return h("div", {}, h("h1", {}, "Audit log"),
    h("p", { class: "hint" }, "Every change made through the control plane, allowed or refused, newest first (the last 1,000)."),
    section("Entries", table(["#", "time", "actor", "role", "call", "status", "from", "change"],
      rows.map((r) => h("tr", { class: r.status >= 400 ? "refused" : "" },
        h("td", { class: "num" }, r.seq), h("td", {}, fmtTime(r.time)), h("td", {}, r.actor || "(no valid token)"),
        h("td", {}, r.role || "-"), h("td", {}, h("code", {}, `${r.method} ${r.path}`)),
        h("td", {}, badge(String(r.status), r.status >= 400 ? "bad" : "ok")), h("td", {}, r.client || "-"),
        h("td", { class: "message" }, r.detail ? shortJson(r.detail) : ""))), { id: "audit" })));
}

// -- start ---------------------------------------------------------------------------------

async function start() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", () => render());
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin("");
    return;
  }
  try {
    showApp(await signIn(token));
  } catch (err) {
    signOut(`Sign-in refused: ${err.message}`);
  }
}

document.addEventListener("DOMContentLoaded", start);

// Sensorflow dashboard: fleet view, device pages with canvas charts, live alert feed.
"use strict";
const $ = (s) => document.querySelector(s);
let current = null; // device id on the device page
let deviceAlerts = [];

function fmtTime(t) { return new Date(t).toISOString().replace("T", " ").slice(0, 19); }
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; }

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

async function refreshFleet() {
  const f = await getJSON("api/fleet?n=25");
  $("#c-devices").textContent = f.devices;
  $("#c-rate").textContent = f.readings_per_sec;
  $("#c-readings").textContent = f.readings.toLocaleString();
  $("#c-warn").textContent = f.open_warning;
  $("#c-crit").textContent = f.open_critical;
  const tb = $("#devices tbody");
  tb.replaceChildren();
  for (const d of f.top || []) {
    const tr = el("tr");
    const a = el("a", null, d.device_id); a.href = "#/device/" + encodeURIComponent(d.device_id);
    const td = el("td"); td.append(a); tr.append(td);
    tr.append(el("td", null, d.site));
    const p = el("span", "pill" + (d.open_alerts ? " hot" : ""), d.open_alerts); const tdp = el("td"); tdp.append(p); tr.append(tdp);
    tr.append(el("td", null, d.score.toFixed(2)));
    tr.append(el("td", null, fmtTime(d.last_seen)));
    tb.append(tr);
  }
}

function drawChart(canvas, pts, alerts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  if (pts.length < 2) return;
  const scoreH = 40, top = 8, plotH = h - scoreH - top - 14;
  const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => 44 + (w - 50) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => top + plotH * (1 - (v - lo) / (hi - lo));
  g.fillStyle = "#8a96a3"; g.font = "10px system-ui";
  g.fillText(hi.toPrecision(4), 2, top + 8); g.fillText(lo.toPrecision(4), 2, top + plotH);
  // alert windows
  for (const a of alerts) {
    const s = Date.parse(a.started_at), e = a.resolved_at ? Date.parse(a.resolved_at) : t1;
    if (e < t0 || s > t1) continue;
    g.fillStyle = a.severity === "critical" ? "rgba(255,92,92,0.18)" : "rgba(242,184,75,0.18)";
    g.fillRect(x(Math.max(s, t0)), top, Math.max(2, x(Math.min(e, t1)) - x(Math.max(s, t0))), plotH);
    g.fillStyle = a.severity === "critical" ? "#ff5c5c" : "#f2b84b";
    g.beginPath(); g.moveTo(x(Math.max(s, t0)), top); g.lineTo(x(Math.max(s, t0)) + 5, top - 6); g.lineTo(x(Math.max(s, t0)) - 5, top - 6); g.fill();
  }
  // values
  g.strokeStyle = "#4fb3ff"; g.lineWidth = 1.3; g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
  g.stroke();
  // anomaly score
  const sy = (s) => h - 12 - scoreH * s;
  g.fillStyle = "rgba(255,92,92,0.35)"; g.beginPath(); g.moveTo(x(t0), sy(0));
  for (const p of pts) g.lineTo(x(p.t), sy(Math.max(0, p.s)));
  g.lineTo(x(t1), sy(0)); g.closePath(); g.fill();
  g.strokeStyle = "#2a323c"; g.beginPath(); g.moveTo(44, sy(0.5)); g.lineTo(w, sy(0.5)); g.stroke();
  g.fillStyle = "#8a96a3"; g.fillText("score", 2, h - 14);
}

async function refreshDevice() {
  const d = await getJSON("api/device?id=" + encodeURIComponent(current));
  // One entry per alert: its latest event (open, or resolved with resolved_at).
  const byId = new Map();
  for (const a of d.alerts || []) byId.set(a.alert_id, a);
  deviceAlerts = [...byId.values()];
  $("#device-title").textContent = d.device_id + " · " + d.site + " · " + d.open_alerts + " open alert(s)";
  const box = $("#charts");
  for (const name of d.metrics) {
    let c = box.querySelector('[data-metric="' + name + '"]');
    if (!c) {
      c = el("div", "chart"); c.dataset.metric = name;
      const t = el("div", "title"); t.append(el("span", null, name), el("span", "last"));
      c.append(t, el("canvas"));
      box.append(c);
    }
    const pts = d.series[name] || [];
    c.dataset.points = pts.length;
    if (pts.length) c.querySelector(".last").textContent = pts[pts.length - 1].v + "  (score " + Math.max(0, pts[pts.length - 1].s).toFixed(2) + ")";
    drawChart(c.querySelector("canvas"), pts, deviceAlerts.filter((a) => a.metric === name));
  }
}

function addAlert(a, prepend) {
  const li = el("li", "alert " + a.severity + " " + a.state);
  const link = el("a", null, a.device_id); link.href = "#/device/" + encodeURIComponent(a.device_id);
  li.append(el("div", "when", fmtTime(Date.parse(a.ts)) + " · " + a.state + " · " + a.severity + " · " + a.kind));
  const line = el("div");
  if (a.contributors && a.contributors.length) {
    // A device alert: the metrics behind it, their share of the evidence
    // and how far each is from its normal, in spreads.
    const why = a.contributors.map((c) => c.metric + " " + Math.round(100 * c.share) + "% (" + (c.z >= 0 ? "+" : "") + c.z.toFixed(1) + "σ)").join(", ");
    line.append(link, document.createTextNode(" out of its normal regime: " + why));
  } else {
    line.append(link, document.createTextNode(" " + a.metric + " = " + a.value + " (expected " + a.expected_low.toPrecision(4) + " – " + a.expected_high.toPrecision(4) + ")"));
  }
  li.append(line);
  const ul = $("#alerts");
  if (prepend) ul.prepend(li); else ul.append(li);
  while (ul.children.length > 100) ul.lastChild.remove();
}

function route() {
  const m = location.hash.match(/^#\/device\/(.+)$/);
  current = m ? decodeURIComponent(m[1]) : null;
  $("#fleet-view").hidden = !!current;
  $("#device-view").hidden = !current;
  if (current) { $("#charts").replaceChildren(); refreshDevice().catch(() => {}); } else refreshFleet().catch(() => {});
}

async function start() {
  window.addEventListener("hashchange", route);
  route();
  for (const a of (await getJSON("api/alerts?n=50").catch(() => [])).reverse()) addAlert(a, true);
  const es = new EventSource("api/events");
  es.onopen = () => { $("#status").textContent = "live"; $("#status").className = "status live"; };
  es.onerror = () => { $("#status").textContent = "reconnecting…"; $("#status").className = "status"; };
  es.addEventListener("alert", (e) => {
    document.body.dataset.sseEvents = Number(document.body.dataset.sseEvents) + 1;
    addAlert(JSON.parse(e.data), true);
  });
  setInterval(() => (current ? refreshDevice() : refreshFleet()).catch(() => {}), 2000);
}
start();

// The lambdamesh dashboard: reads the registry API with a token kept in this tab's session
// storage only (never in a URL, never in local storage), refreshes every two seconds, and
// marks what changed since the last refresh.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "lambdamesh.token";
const $ = (id) => document.getElementById(id);
let previous = new Map(); // row key -> cell texts, from the last refresh
let timer = null;

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(path) {
  // Relative to the page, so the stage (or a custom domain's base path) is kept.
  const answer = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  const body = answer.status === 204 ? null : await answer.json().catch(() => null);
  if (answer.ok) { return body; }
  if (answer.status === 404 && (path.endsWith("/policy") || path.endsWith("/exposure"))) {
    return null;
  }
  const error = (body && body.error) || {};
  const refused = answer.status === 401 || answer.status === 403;
  throw new Error((refused ? "The token was refused: " : "The registry answered " +
    answer.status + ": ") + (error.code || "") + (error.message ? " (" + error.message + ")" : ""));
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function seconds(value) { return Number(value).toFixed(1) + " s"; }

// Three significant digits below a second, whole milliseconds from then on.
function ms(value) {
  return (value >= 1000 ? Math.round(value) : Number(value.toPrecision(3))) + " ms";
}

// One port's calls in the window before the last heartbeat that carried figures.
function calls(figures, port) {
  const found = figures && figures[port];
  if (!found) { return "-"; }
  const window = figures.seconds < 10 ? figures.seconds.toFixed(1) : Math.round(figures.seconds);
  const parts = [found.requests + " in " + window + " s"];
  if (found.p50_ms !== null) { parts.push("p50 " + ms(found.p50_ms), "p99 " + ms(found.p99_ms)); }
  parts.push(found.errors + (found.errors === 1 ? " error" : " errors"));
  return parts.join(" · ");
}

// How long ago the figures came, by the registry's clock (now = expiry - time left).
function figuresAge(instance) {
  const now = instance.expires_at - instance.expires_in;
  return Math.max(0, now - instance.figures.reported_at);
}

// Stale: older than two of their windows while heartbeats came since without any, so the
// sidecar has stopped sending them. (Heartbeats that stop altogether show in the heartbeat
// age, and the instance leaves when its lease lapses; a short window, such as a heartbeat
// sent at once on a readiness change, is not stale while no heartbeat has come since.)
function isStale(instance) {
  const figures = instance.figures;
  return Boolean(figures) && instance.updated_at > figures.reported_at &&
    figuresAge(instance) > 2 * figures.seconds;
}

function instanceRow(instance) {
  const status = instance.drained ? "DRAINED" : instance.status;
  const beat = Math.max(0, instance.lease_seconds - instance.expires_in);
  return [
    instance.instance_id, instance.version, instance.host, String(instance.port),
    instance.zone || "-", status, String(instance.weight), seconds(beat),
    seconds(instance.expires_in), calls(instance.figures, "in"), calls(instance.figures, "out"),
  ];
}

const HEADINGS = ["Instance", "Version", "Host", "Port", "Zone", "Status", "Weight",
  "Heartbeat age", "Lease left", "Calls in", "Calls out"];
const NUMERIC = new Set([3, 6, 7, 8]);
const CALLS = new Set([9, 10]);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) { node.textContent = text; }
  if (className) { node.className = className; }
  return node;
}

function renderTable(service, instances, seen) {
  const table = element("table");
  const head = table.createTHead().insertRow();
  HEADINGS.forEach((h) => head.appendChild(element("th", h)));
  const body = table.createTBody();
  const keys = new Set();
  for (const instance of instances) {
    const key = service + "/" + instance.instance_id;
    const cells = instanceRow(instance);
    keys.add(key);
    seen.set(key, cells);
    const row = body.insertRow();
    row.dataset.instance = instance.instance_id;
    const before = previous.get(key);
    if (previous.size && !before) { row.className = "added"; }
    const stale = isStale(instance);
    cells.forEach((text, i) => {
      const cell = element("td", text, NUMERIC.has(i) ? "num" : "");
      if (i === 5) { cell.classList.add(text); }
      if (CALLS.has(i) && instance.figures) {
        const age = "reported " + seconds(figuresAge(instance)) + " ago";
        cell.title = stale ? age + ", stale" : age;
        cell.classList.toggle("stale", stale);
      }
      // Ages, leases and calls move every refresh; mark only what an operator would call a
      // change.
      if (before && i < 7 && before[i] !== text) { cell.classList.add("changed"); }
      row.appendChild(cell);
    });
  }
  for (const [key, cells] of previous) {
    if (key.startsWith(service + "/") && !keys.has(key)) {
      const row = body.insertRow();
      row.className = "removed";
      row.dataset.instance = cells[0];
      cells.forEach((text) => row.appendChild(element("td", text)));
    }
  }
  if (!instances.length && !body.rows.length) {
    const row = body.insertRow();
    const cell = element("td", "no live instance", "empty");
    cell.colSpan = HEADINGS.length;
    row.appendChild(cell);
  }
  return table;
}

function versionsText(entry) {
  return Object.entries(entry.versions)
    .map(([version, counts]) => version + ": " + counts.live + " live of " + counts.total)
    .join(" · ");
}

function exposureText(stored) {
  if (!stored) { return "Internet: no exposure document (the stage's default applies)"; }
  const doc = stored.exposure;
  if (!doc.exposed) { return "Internet: not exposed"; }
  const parts = ["Internet: exposed", "auth: " + doc.auth.join(", "),
    "versions: " + (doc.versions ? doc.versions.join(", ") : "all")];
  if (doc.addresses) { parts.push("address lists"); }
  if (doc.cors) { parts.push("CORS for " + doc.cors.allow_origins.join(", ")); }
  if (doc.rate_limits) { parts.push("rate limited"); }
  return parts.join(" · ");
}

async function refresh() {
  try {
    const listing = await api("registry/services");
    const seen = new Map();
    const sections = [];
    for (const entry of listing.services) {
      const name = encodeURIComponent(entry.service);
      const [instances, policy, exposure] = await Promise.all([
        api("registry/services/" + name + "/instances"),
        api("registry/services/" + name + "/policy"),
        api("registry/services/" + name + "/exposure"),
      ]);
      const section = element("section", undefined, "service");
      section.dataset.service = entry.service;
      section.appendChild(element("h2", entry.service));
      section.appendChild(element("div", versionsText(entry), "versions"));
      section.appendChild(element("div", exposureText(exposure), "exposure"));
      if (policy) {
        section.appendChild(element("div", "Routing policy:", "policy"));
        section.appendChild(element("pre", JSON.stringify(policy.policy, null, 1), "policy"));
      }
      section.appendChild(renderTable(entry.service, instances.instances, seen));
      sections.push(section);
    }
    if (!sections.length) { sections.push(element("p", "No services registered.", "empty")); }
    $("services").replaceChildren(...sections);
    previous = seen;
    showError("");
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    showError(error.message || String(error));
    $("status").textContent = "not updated";
    if (/refused/.test(error.message)) { signOut(false); }
  }
}

function signedIn(on) {
  $("sign-in").hidden = on;
  $("sign-out").hidden = !on;
}

function start() {
  signedIn(true);
  previous = new Map();
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(clearMessage) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  signedIn(false);
  $("services").replaceChildren();
  $("status").textContent = "signed out";
  if (clearMessage) { showError(""); }
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  $("token").value = "";
  if (!value) { return; }
  sessionStorage.setItem(TOKEN_KEY, value);
  start();
});
$("sign-out").addEventListener("click", () => signOut(true));
if (token()) { start(); }

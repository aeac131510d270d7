// marketban dashboard: plain JS, no build step. Reads the worker's /api (docs: README.md).
"use strict";

const PAGE = 50;
const COLORS = { "verdict:allow": "#12b76a", "verdict:allow_exempt": "#f79009",
  "verdict:block": "#d92d20", "kind:blocked_attempt": "#fdb022", "kind:executed_breach": "#7a271a",
  "kind:suspected_proxy_trading": "#6941c6" };
const state = { violationsOffset: 0, bansOffset: 0, bansText: "", rows: new Map() };
const $ = (sel) => document.querySelector(sel);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function token() { return sessionStorage.getItem("marketban-token") || ""; }

function say(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (response.status === 401 || response.status === 403) {
    say(`${body.error} — set the API token (the "token" button).`);
  }
  return { ok: response.ok, status: response.status, body };
}

// ---- live page ----------------------------------------------------------------------------

function filters() {
  const params = new URLSearchParams();
  const kind = $("#filter-kind").value, broker = $("#filter-broker").value.trim(), session = $("#filter-session").value;
  if (kind) params.set("kind", kind);
  if (broker) params.set("broker", broker);
  if (session) params.set("session", session);
  return params;
}

function matches(v) {
  const f = filters();
  return (!f.get("kind") || v.kind === f.get("kind")) && (!f.get("broker") || v.broker === f.get("broker"))
    && (!f.get("session") || v.session === f.get("session"));
}

function violationRow(entry, fresh) {
  const v = entry.violation, d = entry.disposition;
  const tr = document.createElement("tr");
  tr.dataset.id = v.violation_id;
  if (fresh) tr.className = "new";
  const suspicion = v.kind === "suspected_proxy_trading";
  const id = esc(v.violation_id);
  const actions = suspicion
    ? `<button class="act-button" data-action="confirm" data-id="${id}">confirm control</button>
       <button class="act-button" data-action="dismiss" data-id="${id}">dismiss</button>`
    : `<button class="act-button ack-button" data-action="acknowledge" data-id="${id}">acknowledge</button>`;
  const status = d
    ? `<span class="ack" title="${esc(d.note)}">${esc(d.status)}${d.by ? " by " + esc(d.by) : ""}</span>`
    : actions;
  // A suspicion's detail names the terminal, the IPs, the banned person's account and order.
  const what = suspicion
    ? `${esc(v.kind.replaceAll("_", " "))} <span class="detail">${esc(v.detail)}</span>`
    : esc(v.kind.replace("_", " "));
  tr.innerHTML = `<td>${esc((v.detected_at || "").replace("T", " ").slice(0, 19))}</td>
    <td class="kind-${esc(v.kind)}" title="${esc(v.detail)}">${what}</td>
    <td><a href="#/accounts/${encodeURIComponent(v.account_id)}">${esc(v.account_id)}</a></td>
    <td>${esc(v.order_id)}</td><td>${esc(v.broker)}</td><td>${esc(v.session)}</td>
    <td>${v.decision_ids.map((id) => `<a href="#/bans/${encodeURIComponent(id)}">${esc(id)}</a>`).join(" ")}</td>
    <td>${status}</td>`;
  return tr;
}

async function loadViolations() {
  const params = filters();
  params.set("offset", state.violationsOffset);
  params.set("limit", PAGE);
  const { ok, body } = await api(`/api/violations?${params}`);
  if (!ok) return say(body.error);
  const tbody = $("#violations tbody");
  tbody.replaceChildren(...body.items.map((e) => violationRow(e, false)));
  pager("#violations-pager", body, (offset) => { state.violationsOffset = offset; loadViolations(); });
}

function onViolation(entry) {
  const tbody = $("#violations tbody");
  const old = tbody.querySelector(`tr[data-id="${CSS.escape(entry.violation.violation_id)}"]`);
  if (old) { old.replaceWith(violationRow(entry, false)); return; }
  if (state.violationsOffset !== 0 || !matches(entry.violation)) return;
  tbody.prepend(violationRow(entry, true));
  while (tbody.rows.length > PAGE) tbody.deleteRow(-1);
  scheduleStats();
}

let statsTimer = null;
function scheduleStats() { if (!statsTimer) statsTimer = setTimeout(() => { statsTimer = null; loadStats(); }, 1000); }

async function loadStats() {
  const { ok, body } = await api("/api/stats?minutes=60");
  if (!ok) return;
  const labels = { "verdict:allow": "allowed", "verdict:allow_exempt": "allowed (exempt)", "verdict:block": "blocked",
    "kind:blocked_attempt": "blocked attempts", "kind:executed_breach": "executed breaches",
    "kind:suspected_proxy_trading": "proxy suspicions" };
  $("#cards").innerHTML = Object.keys(labels).map((k) =>
    `<div class="card" data-count="${k}"><div class="n">${body.totals[k] || 0}</div><div class="l">${labels[k]}</div></div>`).join("");
  drawChart(body.series);
  $("#legend").innerHTML = Object.keys(COLORS).map((k) => `<span><i style="background:${COLORS[k]}"></i>${labels[k]}</span>`).join("");
}

const CHART_MINUTES = 30;

function drawChart(series) {
  const svg = $("#chart"), keys = Object.keys(COLORS), w = 900, h = 140;
  if (!series.length) { svg.innerHTML = `<text x="10" y="80" fill="#667085">no activity yet</text>`; return; }
  // A fixed axis of the last CHART_MINUTES minutes up to the newest one, empty minutes included.
  const byMinute = new Map(series.map((s) => [Date.parse(s.minute), s]));
  const newest = Math.max(...byMinute.keys());
  const minutes = Array.from({ length: CHART_MINUTES }, (_, i) => newest - (CHART_MINUTES - 1 - i) * 60000);
  // A square-root scale: blocks and breaches are a few per thousand allowed orders.
  const max = Math.sqrt(Math.max(1, ...series.map((s) => Math.max(...keys.map((k) => s[k] || 0)))));
  const step = w / CHART_MINUTES, bar = step / (keys.length + 1);
  const time = (t) => new Date(t).toTimeString().slice(0, 5);
  let out = "";
  minutes.forEach((t, i) => {
    const s = byMinute.get(t) || {};
    keys.forEach((k, j) => {
      const v = s[k] || 0, bh = (Math.sqrt(v) / max) * (h - 10);
      if (v) out += `<rect x="${i * step + j * bar}" y="${h - bh}" width="${bar}" height="${bh}" fill="${COLORS[k]}"><title>${time(t)} ${k}: ${v}</title></rect>`;
    });
  });
  out += `<text x="2" y="156" font-size="11" fill="#667085">${time(minutes[0])}</text>`;
  out += `<text x="${w - 2}" y="156" font-size="11" fill="#667085" text-anchor="end">${time(newest)}</text>`;
  svg.innerHTML = out;
}

// ---- live alerts (server-sent events, read with fetch so the token header can be sent) ----

async function stream() {
  const indicator = $("#stream-state");
  for (;;) {
    try {
      const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
      const response = await fetch("/api/violations/stream", { headers });
      if (!response.ok) throw new Error(`stream answered ${response.status}`);
      indicator.textContent = "live"; indicator.className = "state on";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (block.includes("event: violation") && data) onViolation(JSON.parse(data));
        }
      }
    } catch (err) {
      console.warn(err);
    }
    indicator.textContent = "offline"; indicator.className = "state off";
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- an analyst's actions (recorded as the analyst of the token) -------------------------------

const ACTIONS = {
  acknowledge: { title: "Acknowledge", done: "acknowledged" },
  confirm: { title: "Confirm control (the account is then decided under this person's bans)", done: "confirmed control of" },
  dismiss: { title: "Dismiss the suspicion", done: "dismissed" },
  revoke: { title: "Revoke the controlled link", done: "revoked" },
};

function act(action, id, path, after) {
  $("#ack-title").textContent = ACTIONS[action].title;
  $("#ack-id").textContent = id;
  $("#ack-note").value = "";
  $("#ack-confirm").textContent = action === "confirm" ? "Confirm" : ACTIONS[action].title.split(" ")[0];
  const dialog = $("#ack-dialog");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.onclose = async () => {
    if (dialog.returnValue !== "ok") return;
    const body = JSON.stringify({ note: $("#ack-note").value });
    const answer = await api(path || `/api/violations/${encodeURIComponent(id)}/${action}`,
      { method: "POST", body, headers: { "Content-Type": "application/json" } });
    if (answer.ok) { say(`${ACTIONS[action].done} ${id}`); if (after) after(); }
    else if (answer.status !== 401 && answer.status !== 403) say(answer.body.error);
  };
}

// ---- register, decision and account pages ---------------------------------------------------

function measures(list) { return list.map((m) => esc(describeMeasure(m))).join("<br>"); }
function describeMeasure(m) {
  const what = m.kind === "trading" ? "trading ban" : "business ban";
  if (m.lifetime) return `lifetime ${what}`;
  return `${what} ${[m.years ? `${m.years} y` : "", m.months ? `${m.months} m` : ""].join(" ").trim()}`;
}

async function loadBans() {
  const params = new URLSearchParams({ offset: state.bansOffset, limit: PAGE });
  if (state.bansText) params.set("q", state.bansText);
  const { ok, body } = await api(`/api/bans?${params}`);
  if (!ok) return say(body.error);
  $("#bans tbody").innerHTML = body.items.map((b) => `<tr>
    <td><a href="#/bans/${encodeURIComponent(b.decision_id)}">${esc(b.decision_id)}</a></td>
    <td>${esc(b.person_id)}</td><td>${esc(b.person_name)}</td><td>${esc(b.issuer)}</td>
    <td>${esc(b.served_on)}</td><td>${measures(b.measures)}</td>
    <td>${b.revoked_on ? "revoked from " + esc(b.revoked_on) : "in force"}</td></tr>`).join("");
  pager("#bans-pager", body, (offset) => { state.bansOffset = offset; loadBans(); });
}

async function showBan(id) {
  const { ok, body } = await api(`/api/bans/${encodeURIComponent(id)}`);
  const page = $("#page-ban");
  if (!ok) { page.innerHTML = `<h2>${esc(id)}</h2><p>${esc(body.error)}</p>`; return; }
  page.innerHTML = `<h2>Decision ${esc(body.decision_id)} <span class="sub">version ${body.version}</span></h2>
    <dl><dt>person</dt><dd>${esc(body.person_id)} ${esc(body.person_name)}</dd><dt>issuer</dt><dd>${esc(body.issuer)}</dd>
    <dt>served</dt><dd>${esc(body.served_on)}</dd><dt>revoked from</dt><dd>${esc(body.revoked_on || "—")}</dd>
    <dt>measures</dt><dd>${body.windows.map((w) => esc(w.measure) + ": " + esc(w.start) + " to " + esc(w.end || "life") + (w.estimated ? " (estimated)" : "")).join("<br>")}</dd></dl>
    <h2>Versions</h2><table><thead><tr><th>version</th><th>action</th><th>served</th><th>effective</th><th>measures</th></tr></thead>
    <tbody>${body.history.map((c) => `<tr><td>${c.version}</td><td>${esc(c.action)}</td><td>${esc(c.served_on)}</td><td>${esc(c.effective_on)}</td><td>${measures(c.measures)}</td></tr>`).join("")}</tbody></table>`;
}

async function showAccount(id) {
  const page = $("#page-account");
  const { ok, body } = await api(`/api/accounts/${encodeURIComponent(id)}`);
  if (!ok) { page.innerHTML = `<h2>Account ${esc(id)}</h2><p>${esc(body.error)}</p>`; return; }
  const violations = await api(`/api/violations?account_id=${encodeURIComponent(id)}&limit=${PAGE}`);
  page.innerHTML = `<h2>Account ${esc(body.account_id)} <span class="sub">as of ${esc(body.as_of)}, session ${esc(body.session)}</span></h2>
    <dl><dt>person</dt><dd>${esc(body.person_id || "none linked")}</dd><dt>kind</dt><dd>${esc(body.kind || "—")}</dd>
    <dt>tracked orders</dt><dd>${body.tracked_orders}</dd></dl>
    <h2>Controlled by <span class="sub">persons an analyst confirmed (R8): their bans apply to this account</span></h2>
    <table id="controllers"><thead><tr><th>person</th><th>ground</th><th>confirmed by</th><th>trading measure this session</th><th></th></tr></thead><tbody>
    ${body.controllers.map((c) => `<tr data-person="${esc(c.person_id)}"><td>${esc(c.person_id)}</td><td>${esc(c.reference || "—")}</td>
      <td>${esc(c.confirmed_by || "—")}</td><td>${c.trading_measure_on_session ? "yes" : "no"}</td>
      <td><button class="revoke-button" data-person="${esc(c.person_id)}">revoke</button></td></tr>`).join("") || "<tr><td colspan=5>nobody</td></tr>"}</tbody></table>
    <h2>Measures now and later</h2>
    <table><thead><tr><th>decision</th><th>measure</th><th>start</th><th>ends before</th><th>status</th></tr></thead><tbody>
    ${body.measures.map((m) => `<tr><td><a href="#/bans/${encodeURIComponent(m.decision_id)}">${esc(m.decision_id)}</a></td><td>${esc(m.measure)}</td>
      <td>${esc(m.start)}${m.estimated ? " (estimated)" : ""}</td><td>${esc(m.end || "life")}</td><td>${esc(m.status)}</td></tr>`).join("") || "<tr><td colspan=5>none</td></tr>"}</tbody></table>
    <h2>Exemption quotas</h2>
    <table><thead><tr><th>clause</th><th>evidence</th><th>security</th><th>side</th><th>limit</th><th>used</th><th>reserved</th><th>remaining</th></tr></thead><tbody>
    ${body.quotas.map((q) => `<tr><td>${esc(q.clause)}</td><td>${esc(q.evidence_id || "pre-ban holdings")}</td><td>${esc(q.security || "any")}</td>
      <td>${esc(q.side)}</td><td>${q.limit}</td><td>${q.used}</td><td>${q.reserved}</td><td>${q.remaining}</td></tr>`).join("") || "<tr><td colspan=8>none</td></tr>"}</tbody></table>
    <h2>Violations</h2><table><tbody>${violations.ok ? violations.body.items.map((e) => violationRow(e, false).outerHTML).join("") : ""}</tbody></table>`;
}

async function search(text) {
  text = text.trim();
  if (!text) return;
  const account = await api(`/api/accounts/${encodeURIComponent(text)}`);
  if (account.ok) { location.hash = `#/accounts/${encodeURIComponent(text)}`; return; }
  const ban = await api(`/api/bans/${encodeURIComponent(text)}`);
  if (ban.ok) { location.hash = `#/bans/${encodeURIComponent(text)}`; return; }
  state.bansText = text; state.bansOffset = 0;
  location.hash = "#/bans";
  route();
}

function pager(selector, page, go) {
  const box = $(selector), last = page.offset + page.items.length;
  box.innerHTML = `<span>${page.total ? page.offset + 1 : 0}–${last} of ${page.total}</span>`;
  if (page.offset > 0) box.append(button("newer", () => go(Math.max(0, page.offset - page.limit))));
  if (last < page.total) box.append(button("older", () => go(last)));
}

function button(text, onclick) { const b = document.createElement("button"); b.textContent = text; b.onclick = onclick; return b; }

// ---- routing -------------------------------------------------------------------------------

function show(name) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `page-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === name);
}

function route() {
  const [, what, id] = location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  if (what === "bans" && id) { show("ban"); showBan(id); }
  else if (what === "bans") { show("bans"); loadBans(); }
  else if (what === "accounts" && id) { show("account"); showAccount(id); }
  else { show("live"); loadStats(); loadViolations(); }
}

document.addEventListener("click", (event) => {
  const target = event.target.closest(".act-button");
  if (target) act(target.dataset.action, target.dataset.id);
  const revoke = event.target.closest(".revoke-button");
  if (revoke) {
    const account = decodeURIComponent(location.hash.split("/")[2] || "");
    const person = revoke.dataset.person;
    act("revoke", `${person} of ${account}`,
      `/api/accounts/${encodeURIComponent(account)}/controllers/${encodeURIComponent(person)}/revoke`,
      () => setTimeout(() => showAccount(account), 1500));
  }
});
$("#search").addEventListener("submit", (event) => { event.preventDefault(); search($("#search-text").value); });
for (const id of ["#filter-kind", "#filter-broker", "#filter-session"]) {
  $(id).addEventListener("change", () => { state.violationsOffset = 0; loadViolations(); });
}
$("#token-button").addEventListener("click", () => { $("#token-input").value = token(); $("#token-dialog").showModal(); });
$("#token-dialog").addEventListener("close", () => {
  if ($("#token-dialog").returnValue === "ok") { sessionStorage.setItem("marketban-token", $("#token-input").value); say(""); route(); }
});
window.addEventListener("hashchange", route);
setInterval(() => { if (!$("#page-live").hidden) loadStats(); }, 10000);
route();
stream();

// The dashboard: reads the API with the key kept in sessionStorage. Every text from the API
// goes into the page through textContent, never as HTML.
"use strict";

const session = window.sessionStorage;
const $ = (id) => document.getElementById(id);
const state = { listQuery: null, nextCursor: null };

function credentials() {
  return { tenant: session.getItem("tenant"), key: session.getItem("key") };
}

async function api(path) {
  const { key } = credentials();
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) {
    signOut(body.error ? body.error.message : "not allowed");
    throw new Error("unauthorised");
  }
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  return body;
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function isoDay(date) { return date.toISOString().slice(0, 10); }
function addDays(day, days) {
  const date = new Date(`${day}T00:00:00Z`);
  date.setUTCDate(date.getUTCDate() + days);
  return isoDay(date);
}
function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${(value / 60).toFixed(1)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

// --- sign in ------------------------------------------------------------------------------

function signOut(message) {
  session.removeItem("key");
  $("board").hidden = true;
  $("range").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function showBoard() {
  const { tenant } = credentials();
  $("login").hidden = true;
  $("board").hidden = false;
  $("range").hidden = false;
  $("tenant-name").textContent = tenant;
  if (!$("to").value) {
    const today = isoDay(new Date());
    $("to").value = today;
    $("from").value = addDays(today, -29);
  }
  loadStats();
  openList({}, "Latest conversations");
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  session.setItem("tenant", $("login-tenant").value.trim());
  session.setItem("key", $("login-key").value.trim());
  $("login-key").value = "";
  showBoard();
});
$("sign-out").addEventListener("click", () => signOut(""));
$("range").addEventListener("submit", (event) => { event.preventDefault(); loadStats(); });

// --- statistics -----------------------------------------------------------------------------

function rangeQuery() {
  const from = `${$("from").value}T00:00:00Z`;
  const to = `${addDays($("to").value, 1)}T00:00:00Z`;
  return `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
}

// Periods are labels (a day, a week's Monday, a month's first day), not a time axis.
const LAYOUT = { margin: { l: 50, r: 50, t: 40, b: 40 }, legend: { orientation: "h" },
                 paper_bgcolor: "#fff", plot_bgcolor: "#fff", xaxis: { type: "category" } };
const CONFIG = { displayModeBar: false, responsive: true };

async function loadStats() {
  const { tenant } = credentials();
  $("status").textContent = "";
  let stats;
  try {
    stats = await api(`/api/conversations/stats/${encodeURIComponent(tenant)}?` +
                      `${rangeQuery()}&group_by=${$("group-by").value}`);
  } catch (error) {
    $("status").textContent = error.message;
    return;
  }
  const totals = stats.totals;
  $("kpi-conversations").textContent = totals.conversations;
  $("kpi-messages").textContent = totals.messages;
  $("kpi-active").textContent = stats.active_now;
  $("kpi-first-response").textContent = seconds(totals.first_response_seconds.median);
  $("kpi-resolution").textContent = seconds(totals.resolution_seconds.median);
  $("kpi-dead-letters").textContent = stats.dead_letters;

  const periods = stats.series.map((p) => p.period);
  const pick = (f) => stats.series.map(f);
  Plotly.react("chart-volume", [
    { type: "bar", name: "conversations", x: periods, y: pick((p) => p.conversations) },
    { type: "scatter", mode: "lines+markers", name: "messages", x: periods,
      y: pick((p) => p.messages), yaxis: "y2" },
  ], { ...LAYOUT, title: { text: "Conversations and messages" },
       yaxis2: { overlaying: "y", side: "right" } }, CONFIG);
  Plotly.react("chart-times", [
    { type: "scatter", name: "first response, median", x: periods,
      y: pick((p) => p.first_response_seconds.median) },
    { type: "scatter", name: "first response, p90", x: periods,
      y: pick((p) => p.first_response_seconds.p90), line: { dash: "dot" } },
    { type: "scatter", name: "resolution, median", x: periods,
      y: pick((p) => p.resolution_seconds.median) },
    { type: "scatter", name: "resolution, p90", x: periods,
      y: pick((p) => p.resolution_seconds.p90), line: { dash: "dot" } },
  ], { ...LAYOUT, title: { text: "Response and resolution time (s, log scale)" },
       yaxis: { type: "log" } }, CONFIG);
  Plotly.react("chart-tokens", [
    { type: "bar", name: "tokens in", x: periods, y: pick((p) => p.tokens_in) },
    { type: "bar", name: "tokens out", x: periods, y: pick((p) => p.tokens_out) },
  ], { ...LAYOUT, barmode: "stack", title: { text: "Tokens" } }, CONFIG);
  const agents = [...stats.agents].reverse();
  Plotly.react("chart-agents", [
    { type: "bar", orientation: "h", name: "conversations", y: agents.map((a) => a.agent_id),
      x: agents.map((a) => a.conversations) },
  ], { ...LAYOUT, margin: { ...LAYOUT.margin, l: 110 }, title: { text: "Most used agents" },
       xaxis: {}, yaxis: { type: "category" } }, CONFIG);

  const groupBy = $("group-by").value;
  for (const id of ["chart-volume", "chart-tokens"]) {
    $(id).removeAllListeners?.("plotly_click");
    $(id).on("plotly_click", (event) => {
      const day = String(event.points[0].x).slice(0, 10);
      const end = groupBy === "month" ? firstOfNextMonth(day)
        : addDays(day, groupBy === "week" ? 7 : 1);
      openList({ from: `${day}T00:00:00Z`, to: `${end}T00:00:00Z` }, `Started ${day}`);
    });
  }
  $("chart-agents").removeAllListeners?.("plotly_click");
  $("chart-agents").on("plotly_click", (event) => {
    const agent = String(event.points[0].y);
    openList({ agent_id: agent }, `Agent ${agent}`);
  });
  document.body.dataset.loaded = "stats";
}

function firstOfNextMonth(day) {
  const date = new Date(`${day.slice(0, 8)}01T00:00:00Z`);
  date.setUTCMonth(date.getUTCMonth() + 1);
  return isoDay(date);
}

// --- lists, search and transcripts ------------------------------------------------------------

async function openList(filters, title) {
  state.listQuery = new URLSearchParams({ ...filters, limit: "25" });
  state.nextCursor = null;
  $("list-title").textContent = title;
  $("list").replaceChildren();
  await moreList();
}

async function moreList() {
  const { tenant } = credentials();
  const query = new URLSearchParams(state.listQuery);
  if (state.nextCursor) query.set("cursor", state.nextCursor);
  let page;
  try {
    page = await api(`/api/conversations/list/${encodeURIComponent(tenant)}?${query}`);
  } catch (error) {
    $("status").textContent = error.message;
    return;
  }
  for (const item of page.items) {
    const meta = `${item.agent_id} · ${item.status} · ${item.message_count} messages · ` +
                 item.created_at.slice(0, 16).replace("T", " ");
    const row = el("li", { dataset: { conversation: item.id } },
                   [el("span", { text: item.session_id }), el("br"),
                    el("span", { class: "meta", text: meta })]);
    row.addEventListener("click", () => openTranscript(item.id));
    $("list").append(row);
  }
  state.nextCursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
  document.body.dataset.list = String($("list").children.length);
}
$("more").addEventListener("click", moreList);

function highlighted(text, spans) {
  const parts = [];
  let at = 0;
  for (const [start, end] of spans) {
    if (start < at) continue;
    parts.push(document.createTextNode(text.slice(at, start)));
    parts.push(el("mark", { text: text.slice(start, end) }));
    at = end;
  }
  parts.push(document.createTextNode(text.slice(at)));
  return parts;
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { tenant } = credentials();
  const q = $("search-q").value.trim();
  let result;
  try {
    result = await api(`/api/conversations/search/${encodeURIComponent(tenant)}?` +
                       new URLSearchParams({ q, limit: "25" }));
  } catch (error) {
    $("status").textContent = error.message;
    return;
  }
  $("list-title").textContent = `Search: ${q}`;
  $("more").hidden = true;
  const hits = [...result.active, ...result.items];
  $("list").replaceChildren(...hits.map((hit) => {
    const row = el("li", { dataset: { conversation: hit.conversation_id } },
                   [el("span", {}, highlighted(hit.snippet, hit.highlights)), el("br"),
                    el("span", { class: "meta",
                                 text: `${hit.agent_id} · ${hit.role} · ${hit.tier} · ` +
                                       hit.created_at.slice(0, 16).replace("T", " ") })]);
    row.addEventListener("click", () => openTranscript(hit.conversation_id));
    return row;
  }));
  if (!hits.length) $("list").append(el("li", { text: "Nothing found." }));
  document.body.dataset.search = String(hits.length);
});

async function openTranscript(conversationId) {
  let conversation;
  try {
    conversation = await api(`/api/conversations/${encodeURIComponent(conversationId)}/full`);
  } catch (error) {
    $("status").textContent = error.message;
    return;
  }
  $("transcript-title").textContent =
    `Transcript · ${conversation.session_id} · ${conversation.agent_id} · ${conversation.status}`;
  $("transcript").replaceChildren(...transcriptNodes(conversation.messages));
  document.body.dataset.transcript = conversationId;
}

// Messages as nodes, all text through textContent. A tool call shows its name and arguments;
// the tool message answering it goes under it (a result whose call is not in the transcript
// stays a message of its own, naming the call id).
function transcriptNodes(messages) {
  const calls = new Map();
  const nodes = [];
  for (const message of messages) {
    const when = message.created_at.slice(0, 19).replace("T", " ");
    const call = message.tool_call_id !== undefined && calls.get(message.tool_call_id);
    if (call) {
      call.append(el("div", { class: "tool-result", text: `→ ${message.content}` }));
      continue;
    }
    const children = [el("div", { class: "role", text: `${message.role} · ${when}` })];
    if (message.content || !message.tool_calls) {
      children.push(el("div", { class: "content", text: message.content }));
    }
    for (const toolCall of message.tool_calls || []) {
      const node = el("div", { class: "tool-call", dataset: { callId: toolCall.id } }, [
        el("div", { class: "tool-name",
                    text: `${toolCall.function.name}(${toolCall.function.arguments})` }),
      ]);
      calls.set(toolCall.id, node);
      children.push(node);
    }
    if (message.tool_call_id !== undefined) {
      children.push(el("div", { class: "tool-name", text: `result of ${message.tool_call_id}` }));
    }
    nodes.push(el("div", { class: `message ${message.role}` }, children));
  }
  return nodes;
}

if (credentials().key) showBoard();

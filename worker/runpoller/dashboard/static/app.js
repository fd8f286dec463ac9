// runpoller dashboard: a page per route (#/, #/runs, #/runs/<id>, #/dead-letters[/<id>]),
// built from the JSON API with DOM calls only (no innerHTML: nothing from Redis is parsed
// as markup). Live parts poll the API every POLL_MS while the tab is visible.

const POLL_MS = 2000;
const main = document.getElementById("main");
const problemBox = document.getElementById("problem");
let session = { actions: false, signed_in: false, csrf: null };
let stopView = () => {};

// ------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  el.append(...nodes(children));
  return el;
}

// Children as nodes: nested arrays flattened, null/undefined/false dropped, the rest as text.
function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

const fill = (el, ...children) => el.replaceChildren(...nodes(children));

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.method === "POST") {
    init.headers["Content-Type"] = "application/json";
    if (session.csrf) init.headers["X-CSRF-Token"] = session.csrf;
    init.body = JSON.stringify(options.body || {});
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function showProblem(error) {
  if (error) {
    problemBox.textContent = String(error.message || error);
    problemBox.hidden = false;
  } else {
    problemBox.hidden = true;
    problemBox.textContent = "";
  }
}

function ago(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms > Date.now() + 1000) return `in ${duration((ms - Date.now()) / 1000)}`;
  let s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 10) return `${s.toFixed(1)} s ago`;
  if (s < 90) return `${Math.round(s)} s ago`;
  s /= 60;
  if (s < 90) return `${Math.round(s)} min ago`;
  s /= 60;
  if (s < 36) return `${Math.round(s)} h ago`;
  return `${Math.round(s / 24)} d ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function when(ms) {
  if (ms === null || ms === undefined) return "–";
  return h("time", { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() },
    `${new Date(ms).toISOString().slice(11, 19)}Z (${ago(ms)})`);
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const badge = (text, cls = text) => h("span", { class: `badge ${cls || ""}` }, text || "–");
const facts = (pairs) => h("dl", { class: "facts" },
  pairs.filter(Boolean).map(([k, v, key]) => [h("dt", {}, k), h("dd", { "data-field": key || null }, v)]));
const pretty = (value) => h("pre", {}, JSON.stringify(value, null, 2));

// Poll `fn` now and every POLL_MS while visible; returns the stop function.
function live(fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); showProblem(null); } catch (error) { showProblem(error); }
    if (!stopped && document.visibilityState === "visible") timer = setTimeout(tick, POLL_MS);
  };
  const onVisible = () => { if (document.visibilityState === "visible" && !stopped) { clearTimeout(timer); tick(); } };
  document.addEventListener("visibilitychange", onVisible);
  tick();
  return () => { stopped = true; clearTimeout(timer); document.removeEventListener("visibilitychange", onVisible); };
}

function setPage(title, ...content) {
  document.title = `${title} · runpoller dashboard`;
  fill(main, h("h1", {}, title), ...content);
}

// ------------------------------------------------------------------ session

async function loadSession() {
  session = await api("/api/session");
  renderSession();
}

function renderSession() {
  const box = document.getElementById("session");
  if (!session.actions) {
    fill(box, badge("read-only", ""));
    return;
  }
  if (session.signed_in) {
    fill(box, badge("operator", "live"), h("button", {
      type: "button",
      onclick: async () => { await api("/api/logout", { method: "POST" }); await loadSession(); route(); },
    }, "Sign out"));
    return;
  }
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true });
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("/api/login", { method: "POST", body: { token: input.value } });
        await loadSession();
        showProblem(null);
        route();
        main.focus({ preventScroll: true }); // the form is gone: go on from the page
      } catch (error) { showProblem(error); }
    },
  }, h("label", { for: "token" }, "Operator token"), input, h("button", { type: "submit" }, "Sign in"));
  fill(box, form);
}

// ------------------------------------------------------------------ overview

let chart = null;

function overviewPage() {
  const cards = h("div", { class: "cards" });
  const chartBox = h("div", { class: "chart-box" },
    h("canvas", { id: "outcomes-chart", role: "img", "aria-label": "Runs ended per minute, by final status, and 429 pauses, last two hours" }));
  const chartTable = h("div", { class: "table-wrap" });
  const workers = h("div", { class: "table-wrap" });
  const asOf = h("p", { class: "note" });
  setPage("Overview", asOf, cards,
    h("h2", {}, "Outcomes per minute (last 2 h)"), chartBox,
    h("details", {}, h("summary", {}, "The chart's numbers as a table"), chartTable),
    h("h2", {}, "Workers"), workers);
  chart = null;
  return live(async () => {
    const o = await api("/api/overview");
    const s = o.stats;
    const q = s.queue;
    const c = o.census;
    const counted = c.as_of > 0;
    const phase = (name) => (counted ? c.by_phase[name] || 0 : "counting…");
    asOf.textContent = `Prefix ${s.key_prefix} · queue ${q.name} · read ${new Date(s.ts).toISOString().slice(11, 19)}Z; ` +
      `phases counted ${c.as_of ? ago(c.as_of) : "–"} over ${c.scanned} index entries in ${c.took_ms} ms` +
      (c.truncated ? " (stopped at the cap: more in flight)" : "") +
      (o.census_problem ? `; the last count failed (${o.census_problem}), retrying` : "");
    const metric = (label, value, key) => [h("dt", {}, label), h("dd", { "data-metric": key }, value)];
    const r = o.rates;
    fill(cards, 
      h("section", { class: "card", "aria-labelledby": "c-queue" }, h("h2", { id: "c-queue" }, "Queue"),
        h("dl", {}, metric("ready", q.ready, "ready"), metric("deferred", q.deferred, "deferred"),
          metric("oldest waiting", duration(q.oldest_ready_age_s), "oldest"),
          metric("next deferred in", duration(q.next_deferred_in_s), "next-deferred"))),
      h("section", { class: "card", "aria-labelledby": "c-workers" }, h("h2", { id: "c-workers" }, "Workers"),
        h("dl", {}, metric("live", s.live_workers, "live-workers"), metric("dead (not yet released)", s.dead_workers, "dead-workers"),
          metric("released, waiting re-enqueue", s.orphans, "orphans"),
          metric("dead detected (15 min)", s.worker_events.dead_workers_detected, "dead-detected"))),
      h("section", { class: "card", "aria-labelledby": "c-flight" }, h("h2", { id: "c-flight" }, "Runs in flight"),
        h("dl", {}, metric("reported by workers", s.in_flight, "in-flight"),
          metric("polling", counted ? phase("polling") + phase("fetching") : "counting…", "polling"),
          metric("awaiting tool outputs", phase("awaiting_outputs"), "awaiting-outputs"),
          metric("cancelling", phase("cancelling"), "cancelling"),
          metric("not owned (handing on)", counted ? c.unowned : "counting…", "unowned"),
          metric("ended, kept", o.ended_index, "ended-index"))),
      h("section", { class: "card", "aria-labelledby": "c-rates" }, h("h2", { id: "c-rates" }, `Last ${r.minutes} min`),
        h("dl", {}, metric("ended per min", r.ended_per_min, "ended-per-min"),
          metric("failed share", r.failed_share === null ? "–" : `${(r.failed_share * 100).toFixed(1)} %`, "failed-share"),
          metric("errors per min", r.errors_per_min, "errors-per-min"),
          metric("429 pauses per min", r.pauses_429_per_min, "pauses-per-min"),
          metric("dead letters", h("a", { href: "#/dead-letters" }, String(s.dead_letters.count)), "dead-letters"))),
    );
    drawChart(o.series);
    const statuses = [...new Set(o.series.flatMap((m) => Object.keys(m.by_status)))].sort();
    const rows = o.series.filter((m) => m.pauses_429 || Object.keys(m.by_status).length);
    fill(chartTable, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "minute (UTC)"), statuses.map((st) => h("th", { scope: "col" }, st)), h("th", { scope: "col" }, "429 pauses"))),
      h("tbody", {}, rows.length ? rows.map((m) => h("tr", {}, h("td", {}, new Date(m.ts).toISOString().slice(11, 16)),
        statuses.map((st) => h("td", {}, m.by_status[st] || 0)), h("td", {}, m.pauses_429)))
        : h("tr", {}, h("td", { colspan: statuses.length + 2 }, "No run ended in the last two hours.")))));
    fill(workers, h("table", { "aria-label": "Workers" },
      h("thead", {}, h("tr", {}, ["worker", "state", "in flight", "owned", "last beat", "runs counted", "version"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, s.workers.length ? s.workers.map((w) => h("tr", { "data-worker": w.worker_id },
        h("td", {}, h("a", { href: `#/runs?worker=${encodeURIComponent(w.worker_id)}` }, w.worker_id)),
        h("td", {}, badge(w.alive ? "live" : "dead")), h("td", {}, w.in_flight ?? "–"), h("td", {}, w.owned),
        h("td", {}, `${duration(w.last_beat_age_s)} ago`), h("td", {}, c.by_owner[w.worker_id] || 0), h("td", {}, w.version || "–")))
        : h("tr", {}, h("td", { colspan: 7 }, "No worker has registered.")))));
  });
}

const STATUS_COLOURS = {
  completed: "#1a7f37", cancelled: "#9a6700", failed: "#cf222e", error: "#82071e",
  timed_out: "#bc4c00", expired: "#8250df", incomplete: "#0969da", refused: "#57606a",
};

function drawChart(series) {
  if (!window.Chart) return; // the vendored file did not load: the table still has the numbers
  const labels = series.map((m) => new Date(m.ts).toISOString().slice(11, 16));
  const statuses = [...new Set(series.flatMap((m) => Object.keys(m.by_status)))].sort();
  const datasets = statuses.map((st) => ({
    type: "bar", label: st, stack: "ended", data: series.map((m) => m.by_status[st] || 0),
    backgroundColor: STATUS_COLOURS[st] || "#6e7781",
  }));
  datasets.push({ type: "line", label: "429 pauses", data: series.map((m) => m.pauses_429),
    borderColor: "#0550ae", pointRadius: 0, borderWidth: 2, yAxisID: "y" });
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update("none");
    return;
  }
  chart = new window.Chart(document.getElementById("outcomes-chart"), {
    data: { labels, datasets },
    options: {
      animation: false, maintainAspectRatio: false, responsive: true,
      scales: { x: { stacked: true, ticks: { maxTicksLimit: 12 } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

// ------------------------------------------------------------------ runs

function runsPage(params) {
  const field = (label, input) => h("label", {}, label, input);
  const value = (name) => params.get(name) || "";
  const select = (name, options) => h("select", { name },
    options.map(([v, t]) => h("option", { value: v, selected: value(name) === v }, t)));
  const filters = h("form", { class: "filters", role: "search", "aria-label": "Filter runs",
    onsubmit: (event) => {
      event.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
      location.hash = `#/runs?${q}`;
    } },
  field("State", select("status", [["", "any"], ["queued", "queued"], ["in_flight", "in flight"], ["requires_action", "awaiting tool outputs"], ["ended", "ended"]])),
  field("Backend", select("backend", [["", "any"], ["assistants_run", "Assistants runs"], ["response", "Responses"], ["agent_turn", "Agent turns"]])),
  field("Worker", h("input", { name: "worker", value: value("worker"), size: 14 })),
  field("Older than", h("input", { name: "older_than", value: value("older_than"), placeholder: "10m", size: 6 })),
  field("Since", h("input", { name: "since", value: value("since"), placeholder: "2h", size: 8 })),
  field("Metadata", h("input", { name: "meta", value: value("meta"), placeholder: "key or key=value", size: 14 })),
  h("button", { type: "submit", class: "primary" }, "Filter"));
  const search = h("form", { class: "filters", role: "search", "aria-label": "Find a run by id",
    onsubmit: (event) => {
      event.preventDefault();
      const id = new FormData(search).get("id").trim();
      if (id) location.hash = `#/runs/${encodeURIComponent(id)}`;
    } },
  field("Run id", h("input", { name: "id", size: 28, required: true })), h("button", { type: "submit" }, "Open"));
  const table = h("div", { class: "table-wrap" });
  const more = h("div", { class: "actions" });
  setPage("Runs", search, filters, table, more);
  const load = async () => {
    const page = await api(`/api/runs?${params}`);
    fill(table, h("table", { "aria-label": "Runs" },
      h("thead", {}, h("tr", {}, ["run", "state", "phase / end", "backend", "worker", "round", "since"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, page.items.length ? page.items.map((r) => h("tr", { "data-run": r.run_id },
        h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(r.run_id)}` }, r.run_id)),
        h("td", {}, badge(r.status)), h("td", {}, badge(r.final_status || r.phase)),
        h("td", {}, r.kind || "–"), h("td", {}, r.owner || "–"), h("td", {}, r.round ?? "–"), h("td", {}, when(r.ts))))
        : h("tr", {}, h("td", { colspan: 7 }, "No run matches.")))));
    const next = new URLSearchParams(params);
    if (page.next_cursor) next.set("cursor", page.next_cursor);
    fill(more, 
      params.get("cursor") ? h("a", { href: "#/runs?" + (() => { const p = new URLSearchParams(params); p.delete("cursor"); return p; })() }, "First page") : null,
      page.next_cursor ? h("a", { href: `#/runs?${next}` }, "Next page") : h("span", { class: "note" }, "End of the list."),
      h("button", { type: "button", onclick: () => load().catch(showProblem) }, "Refresh"));
  };
  load().then(() => showProblem(null), showProblem);
  return () => {};
}

function eventBody(entry, answers) {
  const e = entry.event;
  switch (entry.type) {
    case "accepted":
      return [`accepted by a worker: ${e.kind}, deadline `, when(e.deadline), `, polled every ${e.poll_interval_ms} ms`];
    case "status":
      return ["status ", badge(e.status), ` (${e.object_id})`];
    case "requires_action": {
      const answer = answers.find((a) => a.round === e.round);
      return [
        h("strong", {}, `tool round ${e.round}`), ` (${e.object_id}), answer by `, when(e.deadline),
        e.tool_calls.map((call) => {
          const out = answer && answer.outputs.find((o) => o.tool_call_id === call.id);
          return h("div", { class: "tool", "data-tool-call": call.id },
            h("div", {}, h("code", {}, call.name), ` · ${call.id}`),
            h("div", { class: "note" }, "arguments"), h("pre", {}, call.arguments),
            h("div", { class: "note" }, out ? `the app's output (${when(answer.ts).textContent})` : "the app's output: not found (yet)"),
            out ? h("pre", { "data-output": call.id }, out.output + (out.truncated ? " …(cut)" : "")) : null);
        }),
      ];
    }
    case "progress":
      return ["text ", h("code", {}, `#${e.sequence_number}`), ` (${e.object_id}): `, h("q", {}, e.delta)];
    case "reply_rejected":
      return [`the app's reply to round ${e.round} was rejected: `, h("ul", {}, e.problems.map((p) => h("li", {}, p)))];
    case "final":
      return ["ended ", badge(e.status), ` · ${e.reason}`, e.error ? ` · ${e.error.code}` : "",
        e.output_text ? h("pre", {}, e.output_text) : null];
    default:
      return [entry.type, pretty(e)];
  }
}

function runPage(runId) {
  const head = h("div");
  const timeline = h("ol", { class: "timeline", "aria-label": "Timeline" });
  const extra = h("div");
  setPage(`Run ${runId}`, head, h("h2", {}, "Timeline"), timeline, extra);
  let confirming = false;
  let ended = false;
  const actionBox = h("div", { class: "actions" });
  const renderActions = (view) => {
    if (!session.signed_in || view.status === "ended") { fill(actionBox, ); return; }
    if (view.cancel_request && !confirming) {
      fill(actionBox, h("span", { class: "note" }, `Cancel requested ${ago(view.cancel_request.requested_at)}.`));
      return;
    }
    if (!confirming) {
      fill(actionBox, h("button", { type: "button", class: "danger", id: "cancel-run",
        onclick: () => { confirming = true; renderActions(view); document.getElementById("confirm-cancel").focus(); } }, "Cancel run"));
      return;
    }
    fill(actionBox, h("span", {}, `Cancel ${runId} through the API?`),
      h("button", { type: "button", class: "danger", id: "confirm-cancel", onclick: async () => {
        try {
          const out = await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST", body: {} });
          confirming = false;
          fill(actionBox, h("span", { class: "note", role: "status" },
            out.outcome === "requested" ? "Cancel requested; the worker cancels it through the API." : `Already ended: ${out.final_status}.`));
        } catch (error) { showProblem(error); }
      } }, "Yes, cancel it"),
      h("button", { type: "button", onclick: () => { confirming = false; renderActions(view); } }, "Keep it running"));
  };
  const stop = live(async () => {
    if (ended) return;
    const d = await api(`/api/runs/${encodeURIComponent(runId)}`);
    const v = d.view;
    fill(head, facts([
      ["state", badge(v.status), "status"],
      ["phase", v.phase || "–", "phase"],
      v.final_status ? ["ended", badge(v.final_status), "final-status"] : null,
      ["backend", (v.job && v.job.kind) || (v.result && v.result.kind) || "–"],
      ["worker", v.owner ? [v.owner, " ", badge(v.owner_alive ? "live" : "dead")] : "–", "owner"],
      ["deadline", when(v.deadline_ms)],
      ["accepted", when(v.accepted_at ?? (d.timeline.find((e) => e.type === "accepted") || {}).ts)],
      ["ended at", when(v.ended_at)],
      ["API object", v.object_ids.join(" → ") || v.object_id || "–"],
      ["last API status", v.last_status || "–"],
      ["tool round", v.round],
      v.pending_calls.length ? ["waiting answers for", v.pending_calls.join(", ")] : null,
      v.cancelling ? ["cancelling", v.cancelling] : null,
      v.cancel_request ? ["cancel request", `${v.cancel_request.reason || "(no reason)"}, ${ago(v.cancel_request.requested_at)}`] : null,
      ["events", v.events],
    ]), actionBox);
    renderActions(v);
    fill(timeline, ...d.timeline.map((entry) => h("li", { "data-event": entry.type },
      h("span", { class: "when" }, new Date(entry.ts).toISOString().slice(11, 23) + "Z"), ...eventBody(entry, d.answers))));
    fill(extra, [
      v.job ? h("details", {}, h("summary", {}, "The job (as stored; API key hidden)"), pretty(v.job)) : null,
      v.result ? h("details", { open: true }, h("summary", {}, "The final result"), pretty(v.result)) : null]);
    ended = v.status === "ended";
  });
  return stop;
}

// ------------------------------------------------------------------ dead letters

async function requeue(id, after) {
  try {
    const out = await api(`/api/dead-letters/${encodeURIComponent(id)}/requeue`, { method: "POST", body: {} });
    showProblem(null);
    after(`Requeued as run ${out.run_id}.`);
  } catch (error) { showProblem(error); }
}

function deadLettersPage(params) {
  const note = h("p", { class: "note", role: "status" });
  const table = h("div", { class: "table-wrap" });
  const more = h("div", { class: "actions" });
  const confirmBox = h("div", { class: "actions" });
  const purge = h("form", { class: "filters", "aria-label": "Purge dead letters", onsubmit: (event) => {
    event.preventDefault();
    const older = new FormData(purge).get("older_than").trim();
    const what = older ? `the dead letters older than ${older}` : "every dead letter";
    const keep = h("button", { type: "button", onclick: () => fill(confirmBox) }, "Keep them");
    fill(confirmBox, h("span", {}, `Delete ${what}? They cannot be requeued after.`),
      h("button", { type: "button", class: "danger", id: "confirm-purge", onclick: async () => {
        try {
          const out = await api("/api/dead-letters/purge", { method: "POST", body: { older_than: older || null } });
          fill(confirmBox);
          note.textContent = `Purged ${plural(out.purged, "dead letter")}.`;
          await load();
        } catch (error) { showProblem(error); }
      } }, "Yes, purge"), keep);
    document.getElementById("confirm-purge").focus();
  } }, h("label", {}, "Older than (empty: all)", h("input", { name: "older_than", placeholder: "1d", size: 8 })),
  h("button", { type: "submit", class: "danger" }, "Purge…"));
  setPage("Dead letters", note, table, more, session.signed_in ? [h("h2", {}, "Purge"), purge, confirmBox] : null);
  const load = async () => {
    const page = await api(`/api/dead-letters?${params}`);
    if (!note.textContent) note.textContent = `${plural(page.count, "dead letter")} (jobs no run could be tied to; never retried).`;
    fill(table, h("table", { "aria-label": "Dead letters" },
      h("thead", {}, h("tr", {}, ["entry", "when", "reason", "job (raw)", session.signed_in ? "action" : null].filter(Boolean).map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, page.items.length ? page.items.map((item) => h("tr", { "data-letter": item.id },
        h("td", {}, h("a", { href: `#/dead-letters/${encodeURIComponent(item.id)}` }, item.id)),
        h("td", {}, item.letter ? when(item.letter.ts) : "–"),
        h("td", {}, item.letter ? item.letter.reason : item.problem),
        h("td", {}, h("code", {}, item.letter ? item.letter.raw.slice(0, 160) : "")),
        session.signed_in ? h("td", {}, h("button", { type: "button", onclick: () => requeue(item.id, async (m) => { note.textContent = m; await load(); }) }, "Requeue")) : null))
        : h("tr", {}, h("td", { colspan: 5 }, "No dead letter.")))));
    const next = new URLSearchParams({ after: page.next_after || "" });
    fill(more, page.next_after ? h("a", { href: `#/dead-letters?${next}` }, "Next page") : null);
  };
  load().then(() => showProblem(null), showProblem);
  return () => {};
}

function deadLetterPage(id) {
  const body = h("div");
  setPage(`Dead letter ${id}`, body);
  api(`/api/dead-letters/${encodeURIComponent(id)}`).then((item) => {
    showProblem(null);
    fill(body, 
      item.letter ? facts([["written", when(item.letter.ts)], ["reason", item.letter.reason]]) : facts([["unreadable", item.problem]]),
      item.letter ? [h("h2", {}, "The job as received (cut at 4 KiB)"), h("pre", {}, item.letter.raw)] : null,
      session.signed_in ? h("div", { class: "actions" }, h("button", { type: "button", class: "primary",
        onclick: () => requeue(id, (m) => { fill(body, h("p", { role: "status" }, m, " ", h("a", { href: "#/dead-letters" }, "Back to the list"))); }) }, "Requeue")) : null);
  }, showProblem);
  return () => {};
}

// ------------------------------------------------------------------ router

// A route change moves focus to the new page (not the first load: Tab starts at the top).
function route(event) {
  stopView();
  showProblem(null);
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  let nav = "overview";
  if (parts[0] === "runs" && parts[1]) { stopView = runPage(parts[1]); nav = "runs"; }
  else if (parts[0] === "runs") { stopView = runsPage(params); nav = "runs"; }
  else if (parts[0] === "dead-letters" && parts[1]) { stopView = deadLetterPage(parts[1]); nav = "dead-letters"; }
  else if (parts[0] === "dead-letters") { stopView = deadLettersPage(params); nav = "dead-letters"; }
  else stopView = overviewPage();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (event && event.type === "hashchange") main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
loadSession().then(() => route(), (error) => { showProblem(error); route(); });

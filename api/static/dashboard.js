/* The operator dashboard: reads and acts through the JSON API with the session cookie.
   Short polling (every 2 s) keeps the open view current without reloading the page.
   Every node is built with the DOM API (never innerHTML), so no value from the API is parsed as markup. */
"use strict";

const POLL_MS = 2000;
const STATUSES = ["pending_review", "received", "queued", "running", "verifying", "needs_review", "completed",
                  "rejected", "failed", "canceled"];
const OPEN = new Set(["pending_review", "received", "queued", "running", "verifying", "needs_review"]);
const CANCELABLE = new Set(["pending_review", "received", "queued"]);

const state = { view: "requests", detail: null, report: null, rendered: {}, timer: null, busy: false };
const $ = (sel) => document.querySelector(sel);

/* ------------------------------------------------------------------ helpers */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(0, 16).replace("T", " ");
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function fmtNum(v, digits = 4) {
  if (v === null || v === undefined) return "–";
  return typeof v === "number" ? Number(v.toPrecision(digits)).toString() : String(v);
}

const short = (id) => (id ? id.slice(0, 8) : "–");
const badge = (text, kind) => h("span", { class: `badge badge-${kind || text}` }, text.replace("_", " "));

class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
    this.title = title;
  }
}

async function api(method, path, body) {
  const init = { method, credentials: "same-origin",
                 headers: { Accept: "application/json", "X-Requested-With": "unlearn-dashboard" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    if (resp.status === 401 && !path.startsWith("/dashboard/login")) showLogin();
    throw new ApiError(resp.status, data.title || `HTTP ${resp.status}`, data.detail);
  }
  return data;
}

function say(text) {
  const el = $("#status");
  el.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { el.textContent = ""; }, 6000);
}

function warn(text) {
  const el = $("#notice");
  el.replaceChildren(h("span", {}, text),
                     h("button", { type: "button", class: "quiet", onclick: () => { el.hidden = true; } },
                       "Dismiss"));
  el.hidden = false;
}

/* Replace a region's content only when its data changed; keep keyboard focus where it was. */
function renderInto(el, key, data, build) {
  const sig = JSON.stringify(data);
  if (state.rendered[key] === sig) return;
  state.rendered[key] = sig;
  const focusKey = document.activeElement && el.contains(document.activeElement)
    ? document.activeElement.dataset.key : null;
  el.replaceChildren(...[].concat(build(data)));
  if (focusKey) {
    const again = el.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}

/* ------------------------------------------------------------------ confirmation dialog */

function confirmAction({ title, text, reason = false, days = false, confirmLabel = "Confirm" }) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = confirmLabel;
  $("#confirm-error").textContent = "";
  $("#confirm-reason-wrap").hidden = !reason;
  $("#confirm-days-wrap").hidden = !days;
  $("#confirm-reason").value = "";
  $("#confirm-reason").required = reason === "required";
  $("#confirm-days").value = "30";
  return new Promise((resolve) => {
    const form = $("#confirm-form");
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      $("#confirm-cancel").removeEventListener("click", onCancel);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const r = $("#confirm-reason").value.trim();
      if (reason === "required" && !r) {
        $("#confirm-error").textContent = "A reason is required.";
        $("#confirm-reason").focus();
        return;
      }
      done({ reason: r, days: Number($("#confirm-days").value) });
    };
    const onCancel = (ev) => { ev.preventDefault(); done(null); };
    form.addEventListener("submit", onSubmit);
    $("#confirm-cancel").addEventListener("click", onCancel);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    (reason ? $("#confirm-reason") : days ? $("#confirm-days") : $("#confirm-ok")).focus();
  });
}

async function act(options, call, success) {
  const answer = await confirmAction(options);
  if (!answer) return;
  try {
    await call(answer);
    $("#notice").hidden = true;
    say(success);
    state.rendered = {};
    await refresh();
    if (state.report && !$("#report-panel").hidden) {
      await openReport(state.report.model, state.report.versionId, { focus: false }).catch(() => null);
    }
  } catch (err) {
    warn(`${options.title} refused: ${err.message}`);
  }
}

/* ------------------------------------------------------------------ requests */

function requestActions(r) {
  const out = [];
  const rid = r.id;
  if (r.status === "pending_review") {
    out.push(h("button", { type: "button", dataset: { key: `approve-${rid}` }, onclick: () => act(
      { title: "Approve request", text: `Approve request ${short(rid)} for unlearning?`, reason: "required",
        confirmLabel: "Approve" },
      (a) => api("POST", `/v1/deletion-requests/${rid}/approve`, { reason: a.reason }), "Request approved.") },
      "Approve"));
    out.push(h("button", { type: "button", dataset: { key: `deny-${rid}` }, onclick: () => act(
      { title: "Deny request", text: `Deny request ${short(rid)}? It will be rejected.`, reason: "required",
        confirmLabel: "Deny" },
      (a) => api("POST", `/v1/deletion-requests/${rid}/deny`, { reason: a.reason }), "Request denied.") },
      "Deny"));
  }
  if (r.status === "needs_review") {  // every method of the chain failed, or its budget or deadline stopped it
    out.push(h("button", { type: "button", dataset: { key: `retry-${rid}` }, onclick: () => act(
      { title: "Retry request", text: `Queue request ${short(rid)} again for a fresh chain of methods?`,
        reason: "required", confirmLabel: "Retry" },
      (a) => api("POST", `/v1/deletion-requests/${rid}/decision`, { action: "retry", reason: a.reason }),
      "Request queued again.") }, "Retry"));
    out.push(h("button", { type: "button", class: "danger", dataset: { key: `reject-${rid}` }, onclick: () => act(
      { title: "Reject request", text: `Reject request ${short(rid)}? Its data stays in the model.`,
        reason: "required", confirmLabel: "Reject" },
      (a) => api("POST", `/v1/deletion-requests/${rid}/decision`, { action: "reject", reason: a.reason }),
      "Request rejected.") }, "Reject"));
  }
  if (CANCELABLE.has(r.status)) {
    out.push(h("button", { type: "button", class: "danger", dataset: { key: `cancel-${rid}` }, onclick: () => act(
      { title: "Cancel request", text: `Cancel request ${short(rid)}? This cannot be undone.`,
        confirmLabel: "Cancel request" },
      () => api("POST", `/v1/deletion-requests/${rid}/cancel`), "Request canceled.") }, "Cancel"));
  }
  if (OPEN.has(r.status)) {
    out.push(h("button", { type: "button", dataset: { key: `extend-${rid}` }, onclick: () => act(
      { title: "Extend deadline", text: `Move the due date of ${short(rid)} (now ${fmtTime(r.due_at)}) later.`,
        reason: "required", days: true, confirmLabel: "Extend" },
      (a) => api("POST", `/v1/deletion-requests/${rid}/extend`, { days: a.days, reason: a.reason }),
      "Deadline extended.") }, "Extend"));
  }
  return out;
}

function requestRow(r) {
  const method = r.jobs.length ? [...new Set(r.jobs.map((j) => j.method))].join(", ") : r.method;
  const flags = [];
  if (r.overdue) flags.push(badge("overdue"));
  if (r.at_risk) flags.push(badge("at_risk", "at-risk"));
  return h("tr", { dataset: { request: r.id }, class: state.detail === r.id ? "selected" : null },
    h("td", {}, h("button", { type: "button", class: "link mono", dataset: { key: `open-${r.id}` },
                              "aria-label": `Open request ${r.id}`, onclick: () => openRequest(r.id) },
                  short(r.id))),
    h("td", { class: "case" }, r.external_id || "–"),
    h("td", {}, badge(r.status)),
    h("td", {}, verdictBadges(r)),
    h("td", {}, r.tenant),
    h("td", {}, r.model || (r.targets.map((t) => t.model).join(", ") || "–")),
    h("td", { class: "wide" }, method),
    h("td", { class: "wide" }, fmtTime(r.received_at)),
    h("td", {}, fmtTime(r.due_at)),
    h("td", { class: "num" }, OPEN.has(r.status) ? r.days_left.toFixed(1) : "–"),
    h("td", {}, flags.length ? flags : "–"),
    h("td", { class: "num wide" }, fmtDuration(r.seconds_to_compliance)),
    h("td", {}, h("div", { class: "row-actions" }, [...requestActions(r), ...rowLinks(r)])));
}

/* What the verifier said of the versions that served the request: one badge per verdict. */
function verdictBadges(r) {
  const verdicts = Object.values(r.verdicts || {}).map((v) => v && v.verdict).filter(Boolean);
  return verdicts.length ? verdicts.map((v) => badge(v, v === "pass" ? "pass" : "fail")) : "–";
}

/* Per-row follow-ups: a failed job's retry, the certificate of a completed request, the details. */
function rowLinks(r) {
  const out = [];
  for (const j of r.jobs.filter((job) => job.stage === "failed")) {
    out.push(h("button", { type: "button", class: "small", dataset: { key: `retry-row-${j.id}` },
                           "aria-label": `Retry job ${j.id} of request ${r.id}`, onclick: () => act(
      { title: "Retry job", text: `Retry job ${short(j.id)} of request ${short(r.id)} with a fresh attempt budget?`,
        confirmLabel: "Retry" },
      () => api("POST", `/v1/jobs/${j.id}/retry`), "Job queued again.") }, "Retry"));
  }
  if (r.links.certificate) {
    out.push(h("a", { href: r.links.certificate, class: "button small", target: "_blank", rel: "noopener",
                      "aria-label": `Certificate of request ${r.id}` }, "Certificate"));
  }
  out.push(h("button", { type: "button", class: "small quiet", dataset: { key: `details-${r.id}` },
                         "aria-label": `Details of request ${r.id}`, onclick: () => openRequest(r.id) }, "Details"));
  return out;
}

function requestQuery() {
  const form = $("#request-filters");
  const params = new URLSearchParams({ size: "100" });
  for (const name of ["status", "model", "flag", "q"]) {
    const v = form.elements[name].value.trim();
    if (v) params.set(name, v);
  }
  return params;
}

async function loadRequests() {
  const [ov, page] = await Promise.all([api("GET", "/v1/overview"),
                                        api("GET", `/v1/deletion-requests?${requestQuery()}`)]);
  renderInto($("#sla-cards"), "sla", [ov.overdue, ov.at_risk, ov.at_risk_days, ov.funnel], () => [
    h("div", { class: `card ${ov.overdue ? "card-bad" : ""}` }, h("span", { class: "big" }, ov.overdue),
      h("span", {}, "overdue")),
    h("div", { class: `card ${ov.at_risk ? "card-warn" : ""}` }, h("span", { class: "big" }, ov.at_risk),
      h("span", {}, `at risk (< ${ov.at_risk_days} days left, not started)`)),
    h("div", { class: "card" }, h("span", { class: "big" },
      STATUSES.filter((s) => OPEN.has(s)).reduce((n, s) => n + (ov.funnel[s] || 0), 0)), h("span", {}, "open")),
  ]);
  const max = Math.max(1, ...Object.values(ov.funnel));
  renderInto($("#funnel"), "funnel", ov.funnel, (f) => STATUSES.map((s) => {
    const bar = h("span", { class: `bar bar-${s}` });
    bar.style.width = `${(100 * (f[s] || 0)) / max}%`;
    return h("li", {}, h("button", { type: "button", class: "funnel-step", dataset: { key: `funnel-${s}` },
                                     "aria-label": `${f[s] || 0} ${s.replace("_", " ")}: show these`,
                                     onclick: () => { $("#request-filters").elements.status.value = s; refresh(); } },
      h("span", { class: "funnel-label" }, s.replace("_", " ")), h("span", { class: "funnel-bar" }, bar),
      h("span", { class: "num funnel-n" }, f[s] || 0)));
  }));
  renderInto($("#requests-table tbody"), "requests", [page, state.detail], () =>
    page.items.length ? page.items.map(requestRow)
      : h("tr", {}, h("td", { colspan: "13", class: "empty" }, "No requests match.")));
  $("#requests-count").textContent = `${page.items.length} of ${page.total} shown`;
  if (state.detail) await loadDetail();
}

/* Drawers open below the (sticky) header, whatever its height at this window width. */
function placeDrawers() {
  document.documentElement.style.setProperty("--top-h", `${document.querySelector(".top").offsetHeight}px`);
}

function openRequest(id) {
  placeDrawers();
  state.detail = id;
  state.rendered = {};
  $("#request-detail").hidden = false;
  refresh().then(() => $("#h-request-detail").focus());
}

async function loadDetail() {
  const id = state.detail;
  let r, trail;
  try {
    [r, trail] = await Promise.all([api("GET", `/v1/deletion-requests/${id}`),
                                    api("GET", `/v1/deletion-requests/${id}/audit`)]);
  } catch (err) {
    if (err.status === 404) { state.detail = null; $("#request-detail").hidden = true; return; }
    throw err;
  }
  $("#h-request-detail").textContent = `Request ${r.id}`;
  $("#h-request-detail").tabIndex = -1;
  renderInto($("#request-facts"), "facts", r, () => {
    const facts = [["Status", badge(r.status)], ["Tenant", r.tenant], ["External id", r.external_id || "–"],
      ["Scope", `${r.scope.type}${r.scope.label != null ? ` ${r.scope.label}` : ""}`], ["Kind", r.kind],
      ["Models", r.targets.map((t) => `${t.model} (${t.samples} samples, ${t.status})`).join("; ") || "–"],
      ["Received", fmtTime(r.received_at)], ["Due", fmtTime(r.due_at)],
      ["Completed", fmtTime(r.completed_at)], ["Time to compliance", fmtDuration(r.seconds_to_compliance)],
      ["Reason", r.reason || "–"]];
    return facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
  });
  renderInto($("#request-links"), "links", r, () => {
    const out = [];
    for (const t of r.targets) {
      if (t.version_id) {
        out.push(h("button", { type: "button", dataset: { key: `report-${t.version_id}` },
                               onclick: () => openReport(t.model, t.version_id) },
          `Verifier report (${t.model})`));
      }
    }
    if (r.links.certificate) {
      out.push(h("a", { href: r.links.certificate, class: "button", target: "_blank", rel: "noopener" },
        "Deletion certificate (JSON)"));
    }
    return out;
  });
  // Every candidate the request's jobs made: a method that failed its gate, then the next one of the chain.
  const attempts = r.attempts || [];
  $("#attempts-wrap").hidden = !attempts.length;
  renderInto($("#attempts-table tbody"), "attempts", attempts, () => attempts.map((a) => h("tr", {},
    h("td", {}, `${a.model} v${a.version}`),
    h("td", {}, a.method),
    h("td", {}, a.verdict ? badge(a.verdict, a.verdict === "pass" ? "pass" : "fail") : "–"),
    h("td", { class: "num" }, a.wall_seconds != null ? fmtDuration(a.wall_seconds) : "–"),
    h("td", {}, a.device || "–"),
    h("td", {}, [...(a.reasons || []), ...(a.warning ? [`warning: ${a.warning}`] : [])].join("; ")))));
  renderInto($("#audit-table tbody"), "audit", trail, () => trail.map((e) => h("tr", {},
    h("td", {}, fmtTime(e.at)),
    h("td", {}, `${e.entity_type} ${e.entity_type === "request" ? "" : short(e.entity_id)}`),
    h("td", {}, e.from_state ? `${e.from_state} → ${e.to_state}` : e.to_state),
    h("td", { title: e.actor }, e.actor_detail ? e.actor_detail.display : e.actor),
    h("td", {}, e.reason || ""))));
}

/* ------------------------------------------------------------------ verifier report */

async function openReport(model, versionId, { focus = true } = {}) {
  state.report = { model, versionId };
  const rep = await api("GET", `/v1/models/${encodeURIComponent(model)}/versions/${versionId}/report`);
  const r = rep.report;
  const criteria = Object.values(r.criteria || {});
  const body = [
    h("p", {}, `${model} v${rep.version} (${rep.method}), ${rep.status}${rep.tainted ? ", tainted" : ""}. Verdict: `,
      r.verdict ? badge(r.verdict, r.verdict === "pass" ? "pass" : "fail") : "none recorded"),
  ];
  if (criteria.length) {
    body.push(h("div", { class: "table-wrap" }, h("table", { id: "criteria-table" },
      h("caption", {}, "Metrics against their thresholds"),
      h("thead", {}, h("tr", {}, ["Criterion", "Value", "Gate", "Retrain reference", "Result", "What it measures"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, criteria.map((c) => h("tr", {},
        h("th", { scope: "row" }, c.name), h("td", { class: "num" }, fmtNum(c.value)),
        h("td", { class: "num" }, c.threshold === null ? "not gated" : `${c.op} ${fmtNum(c.threshold)}`),
        h("td", { class: "num" }, fmtNum(c.reference)),
        h("td", {}, c.threshold === null ? "–" : c.gated === false ? badge("not gated", "retired") : badge(c.passed ? "pass" : "fail")),
        h("td", {}, c.detail || "")))))));
  } else {
    body.push(h("p", { class: "help" }, "This version was not verified (an imported base model)."));
  }
  if ((r.reasons || []).length) body.push(h("ul", { class: "reasons" }, r.reasons.map((x) => h("li", {}, x))));
  const plots = Object.entries(r.plots || {});
  body.push(h("h4", {}, "Plots (C5 scalability, C6 sustainability and others)"));
  body.push(plots.length
    ? h("div", { class: "plots" }, plots.map(([name, url]) => h("figure", {},
      h("img", { src: url, alt: `${name} plot for ${model} v${rep.version}`, loading: "lazy" }),
      h("figcaption", {}, name))))
    : h("p", { class: "help" }, "No plots were recorded for this version."));
  if (r.info && Object.keys(r.info).length) {
    body.push(h("details", {}, h("summary", {}, "Other measurements"),
      h("dl", { class: "facts" }, Object.entries(r.info).flatMap(([k, v]) => [h("dt", {}, k),
        h("dd", {}, typeof v === "object" ? JSON.stringify(v) : fmtNum(v))]))));
  }
  $("#report-body").replaceChildren(...body);
  $("#h-report").textContent = `Verifier report: ${model} v${rep.version}`;
  $("#h-report").tabIndex = -1;
  // Opened from a request's details (a drawer), the report slides in over them; elsewhere it sits
  // below the page's content, scrolled into view.
  const overDrawer = state.view === "requests" && !$("#request-detail").hidden;
  placeDrawers();
  $("#report-panel").classList.toggle("drawer", overDrawer);
  $("#report-panel").hidden = false;
  if (focus) {
    $("#h-report").focus();
    if (!overDrawer) $("#report-panel").scrollIntoView({ block: "start" });
  }
}

/* ------------------------------------------------------------------ jobs */

async function loadJobs() {
  const [ov, workers, jobs] = await Promise.all([api("GET", "/v1/overview"), api("GET", "/v1/workers"),
                                                 api("GET", "/v1/jobs?limit=50")]);
  renderInto($("#queue-cards"), "queues", [ov.queues, ov.active_jobs, ov.workers_alive], () => [
    ...(ov.queues.length ? ov.queues : [{ queue: "all queues", depth: 0, oldest_age_s: null }]).map((q) =>
      h("div", { class: "card" }, h("span", { class: "big" }, q.depth), h("span", {}, `queued on ${q.queue}`),
        h("span", { class: "help" }, q.oldest_age_s === null ? "" : `oldest waits ${fmtDuration(q.oldest_age_s)}`))),
    h("div", { class: "card" }, h("span", { class: "big" }, ov.active_jobs), h("span", {}, "running")),
    h("div", { class: "card" }, h("span", { class: "big" }, ov.workers_alive), h("span", {}, "workers alive")),
  ]);
  renderInto($("#workers-table tbody"), "workers", workers, () => workers.length ? workers.map((w) => h("tr", {},
    h("td", { class: "mono" }, w.worker),
    h("td", {}, badge(w.alive ? "alive" : "silent")),
    h("td", {}, w.queues || "–"),
    h("td", { class: "mono" }, short(w.current_job_id)),
    h("td", {}, w.device),
    h("td", { class: "num" }, w.gpu_memory_mb === null ? "–"
      : `${Math.round(w.gpu_memory_mb)} / ${Math.round(w.gpu_memory_total_mb)} MiB`),
    h("td", {}, `${fmtDuration(w.seconds_since_seen)} ago`)))
    : h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No worker has reported yet.")));
  renderInto($("#jobs-table tbody"), "jobs", jobs, () => jobs.length ? jobs.map((j) => h("tr", {},
    h("td", { class: "mono" }, short(j.id)),
    h("td", {}, j.model),
    h("td", {}, j.method),
    h("td", {}, badge(j.stage)),
    h("td", {}, h("progress", { max: "1", value: String(j.progress), "aria-label": `job ${short(j.id)} progress` }),
      h("span", { class: "num" }, ` ${Math.round(j.progress * 100)}%`), h("div", { class: "help" }, j.message)),
    h("td", { class: "num" }, `${j.attempts} / ${j.max_attempts}`),
    h("td", { class: "mono" }, j.worker ? j.worker.split(":")[0] : "–"),
    h("td", { class: "error-text" }, j.error || ""),
    h("td", {}, j.stage === "failed" ? h("button", { type: "button",
      dataset: { key: `retry-${j.id}` }, onclick: () => act(
        { title: "Retry job", text: `Retry job ${short(j.id)} with a fresh attempt budget?`,
          confirmLabel: "Retry" },
        () => api("POST", `/v1/jobs/${j.id}/retry`), "Job queued again.") }, "Retry") : null)))
    : h("tr", {}, h("td", { colspan: "9", class: "empty" }, "No jobs yet.")));
}

/* ------------------------------------------------------------------ models and lineage */

function lineageTree(model, versions, championId) {
  const children = new Map();
  for (const v of versions) {
    const key = v.parent_id && versions.some((p) => p.id === v.parent_id) ? v.parent_id : "root";
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(v);
  }
  const node = (v) => {
    const tags = [badge(v.status)];
    if (v.id === championId) tags.push(badge("champion"));
    if (v.tainted) tags.push(badge("tainted"));
    if (v.verdict) tags.push(badge(v.verdict === "pass" ? "verified" : "failed verification",
                                   v.verdict === "pass" ? "pass" : "fail"));
    const actions = [h("button", { type: "button", class: "small", dataset: { key: `report-${v.id}` },
                                   onclick: () => openReport(model, v.id) }, "Report")];
    // A quarantined version's files do not match its manifest: the service refuses to serve it again.
    if (v.id !== championId && v.status !== "rejected" && v.status !== "quarantined") {
      actions.push(h("button", { type: "button", class: "small", dataset: { key: `rollback-${v.id}` },
        onclick: () => act({ title: "Roll back", reason: true, confirmLabel: "Roll back",
                             text: `Make ${model} v${v.version} the champion?` +
                                   (v.tainted ? " It is marked tainted: the service will refuse." : "") },
          (a) => api("POST", `/v1/models/${encodeURIComponent(model)}/rollback`,
                     { version_id: v.id, reason: a.reason || "operator rollback" }),
          `Rolled back ${model} to v${v.version}.`) }, `Roll back to v${v.version}`));
    }
    const reqs = v.request_ids.length
      ? h("details", { class: "reqs" }, h("summary", {}, `${v.request_ids.length} request(s) incorporated`),
        h("ul", {}, v.request_ids.map((rid) => h("li", { class: "mono" }, rid))))
      : null;
    const kids = children.get(v.id) || [];
    return h("li", { dataset: { version: v.id }, class: v.tainted ? "tainted" : null },
      h("div", { class: "node" },
        h("strong", {}, `v${v.version}`), " ", h("span", { class: "mono" }, short(v.id)), ` · ${v.method} · `,
        `${v.excluded_samples} samples forgotten · sha256 ${v.weights_sha256.slice(0, 12)}… `, tags,
        h("span", { class: "row-actions" }, actions)),
      reqs,
      kids.length ? h("ul", {}, kids.map(node)) : null);
  };
  return h("ul", { class: "tree", "aria-label": `Lineage of ${model}` }, (children.get("root") || []).map(node));
}

async function loadModels() {
  const models = await api("GET", "/v1/models");
  const all = await Promise.all(models.map((m) => api("GET", `/v1/models/${encodeURIComponent(m.name)}/versions`)));
  renderInto($("#models-list"), "models", [models, all], () => models.map((m, i) => {
    const versions = all[i];
    const champ = m.champion;
    const candidates = versions.filter((v) => v.status === "candidate" || v.status === "rejected");
    return h("article", { class: "model", "aria-labelledby": `model-${m.name}` },
      h("h3", { id: `model-${m.name}` }, m.name, " ", h("span", { class: "help" }, `${m.family} · ${m.versions} versions`)),
      h("p", {}, "Champion: ", champ ? h("strong", {}, `v${champ.version}`) : "none",
        champ ? ` (${champ.method}, ${champ.excluded_samples} samples forgotten)` : "",
        champ && champ.status === "quarantined"
          ? [" ", badge("quarantined"), " its files do not match their manifest: roll back to an intact version."]
          : null),
      h("p", {}, "Candidates: ", candidates.length
        ? candidates.map((v) => `v${v.version} ${v.status}${v.verdict ? ` (${v.verdict})` : ""}`).join(", ") : "none"),
      h("h4", {}, "Lineage"),
      lineageTree(m.name, versions, champ ? champ.id : null));
  }));
}

/* ------------------------------------------------------------------ compliance */

async function loadCompliance() {
  const [summary, models] = await Promise.all([api("GET", "/v1/compliance"), api("GET", "/v1/models")]);
  const latest = new Map(summary.latest.map((c) => [c.model, c]));
  renderInto($("#compliance-table tbody"), "compliance", [summary.latest, models], () => models.map((m) => {
    const c = latest.get(m.name);
    return h("tr", {},
      h("th", { scope: "row" }, m.name),
      h("td", {}, m.champion ? `v${m.champion.version}` : "–"),
      h("td", {}, c ? [badge(c.passed ? "pass" : "fail"), c.regression ? badge("regression", "fail") : null]
        : `never checked (scheduled every ${fmtDuration(summary.check_interval_s)})`),
      h("td", { class: "num" }, c ? c.forgotten : "–"),
      h("td", {}, c ? fmtTime(c.checked_at) : "–"),
      h("td", {}, c ? c.trigger : "–"),
      h("td", {}, h("button", { type: "button", dataset: { key: `check-${m.name}` },
        onclick: () => act({ title: "Re-run compliance check",
                             text: `Re-verify the champion of ${m.name} against everything forgotten so far?`,
                             confirmLabel: "Run check" },
          () => api("POST", `/v1/models/${encodeURIComponent(m.name)}/compliance-check`),
          `Compliance check of ${m.name} finished.`) }, "Re-run check")));
  }));
  renderInto($("#regressions"), "regressions", summary.regressions, (rs) => rs.length
    ? h("ul", {}, rs.map((c) => h("li", {}, `${fmtTime(c.checked_at)}: ${c.model} version ${short(c.version_id)} `
      + `failed re-verification; ${c.reopened_request_ids.length} request(s) reopened`)))
    : h("p", { class: "help" }, "No regressions."));
  renderInto($("#reopened"), "reopened", summary.reopened, (rs) => rs.length
    ? h("ul", {}, rs.map((r) => h("li", {}, h("button", { type: "button", class: "link mono",
      onclick: () => { location.hash = "#requests"; openRequest(r.request_id); } }, short(r.request_id)),
      ` ${r.model}, now `, badge(r.status || "unknown"))))
    : h("p", { class: "help" }, "No reopened requests."));
}

/* ------------------------------------------------------------------ shell */

const LOADERS = { requests: loadRequests, jobs: loadJobs, models: loadModels, compliance: loadCompliance };

async function refresh() {
  if (state.busy || $("#confirm").open || $("#login-view").hidden === false) return;
  state.busy = true;
  try {
    await LOADERS[state.view]();
    $("#live").classList.remove("stale");
  } catch (err) {
    if (err.status !== 401) {
      $("#live").classList.add("stale");
      if (!(err instanceof ApiError)) console.error(err);
    }
  } finally {
    state.busy = false;
  }
}

function showView() {
  const view = (location.hash || "#requests").slice(1);
  state.view = LOADERS[view] ? view : "requests";
  for (const name of Object.keys(LOADERS)) $(`#view-${name}`).hidden = name !== state.view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === state.view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (state.view !== "requests" && state.view !== "models") $("#report-panel").hidden = true;
  if (state.view !== "requests") $("#report-panel").classList.remove("drawer");  // the request drawer is gone
  state.rendered = {};
  refresh();
}

function showLogin() {
  clearInterval(state.timer);
  state.timer = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  for (const name of Object.keys(LOADERS)) $(`#view-${name}`).hidden = true;
  $("#report-panel").hidden = true;
  $("#login-view").hidden = false;
  $("#api-key").focus();
}

function showApp(who) {
  $("#login-view").hidden = true;
  $("#nav").hidden = false;
  $("#who").hidden = false;
  $("#who-name").textContent = `${who.tenant} (${who.role})`;
  showView();
  if (!state.timer) state.timer = setInterval(refresh, POLL_MS);
}

async function start() {
  const statusSelect = $("#request-filters").elements.status;
  for (const s of STATUSES) statusSelect.append(h("option", { value: s }, s.replace("_", " ")));
  let timer = null;
  $("#request-filters").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.rendered = {}; refresh(); }, 250);
  });
  $("#request-filters").addEventListener("submit", (ev) => ev.preventDefault());
  for (const btn of document.querySelectorAll("[data-close]")) {
    btn.addEventListener("click", () => {
      $(`#${btn.dataset.close}`).hidden = true;
      if (btn.dataset.close === "request-detail") {
        state.detail = null;
        state.rendered = {};
        $("#report-panel").classList.remove("drawer");
      }
    });
  }
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    const key = $("#api-key").value.trim();
    if (!key) { $("#login-error").textContent = "Enter an operator API key."; return; }
    try {
      const who = await api("POST", "/dashboard/login", { api_key: key });
      $("#api-key").value = "";
      showApp(who);
    } catch (err) {
      $("#login-error").textContent = `Sign-in failed: ${err.message}`;
    }
  });
  $("#logout").addEventListener("click", async () => {
    await api("POST", "/dashboard/logout").catch(() => null);
    showLogin();
  });
  window.addEventListener("hashchange", () => { if ($("#login-view").hidden) showView(); });
  try {
    const who = await api("GET", "/dashboard/session");
    if (who.role === "operator") showApp(who);
    else showLogin();
  } catch {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", start);
window.addEventListener("resize", placeDrawers);

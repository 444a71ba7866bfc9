/* global document, window, fetch, URLSearchParams, Blob, URL, setTimeout, setInterval, clearInterval, FileReader */
/**
 * The KMS admin console: plain JavaScript over the server's admin API. The admin credential is sent
 * once, to POST /admin/console/session, and is then cleared from the page; the session is an
 * HttpOnly cookie the script cannot read, and the CSRF token lives in this closure only (never in
 * web storage or a URL). Every non-GET call carries it in `x-csrf-token`. Nothing
 * from the server is ever inserted as HTML: text only.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const VIEWS = ["overview", "tenants", "validation", "evidence", "setup"];
  const POLL_MS = 5000;
  const PAGE_SIZE = 25;

  /** The session's CSRF token; undefined when signed out. */
  let csrfToken;
  let pollTimer;

  // ---------- helpers

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }
  const svg = (tag, attrs) => {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    return node;
  };
  const setText = (id, text) => {
    $(id).textContent = text || "";
  };
  const announce = (text) => setText("announce", text);
  const fmtNumber = (n) => Number(n).toLocaleString("en-US");
  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "—";
    const s = Math.round(ms / 1000);
    if (s < 120) return `${s} s`;
    const m = Math.round(s / 60);
    if (m < 120) return `${m} min`;
    const h = Math.round(m / 60);
    if (h < 48) return `${h} h`;
    return `${Math.round(h / 24)} days`;
  }
  const fmtTime = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—");

  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code;
    }
  }

  /** Calls the admin API with the session cookie (and the CSRF token on non-GET calls). */
  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    if (method !== "GET" && csrfToken) headers["x-csrf-token"] = csrfToken;
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed;
    try {
      parsed = text === "" ? {} : JSON.parse(text);
    } catch {
      parsed = {};
    }
    if (res.status === 401 && path !== "/admin/console/session") {
      signedOut("Your session has ended: sign in again.");
      throw new ApiError(res.status, parsed);
    }
    if (!res.ok) throw new ApiError(res.status, parsed);
    return parsed;
  }

  /** Runs an action with its button disabled, showing a failure in `errorId`. */
  async function busy(button, errorId, action) {
    if (button) button.disabled = true;
    if (errorId) setText(errorId, "");
    try {
      await action();
    } catch (error) {
      if (errorId && !(error instanceof ApiError && error.status === 401)) setText(errorId, `${error.code ? `${error.code}: ` : ""}${error.message}`);
    } finally {
      if (button) button.disabled = false;
    }
  }

  function download(fileName, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = el("a", { href: url, download: fileName, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  const readFile = (file) =>
    new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result));
      reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
      reader.readAsText(file);
    });

  // ---------- session and navigation

  function show(view) {
    for (const id of ["signin", ...VIEWS]) $(`view-${id}`).hidden = id !== view;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    $("loading").hidden = true;
  }

  function signedOut(message) {
    csrfToken = undefined;
    stopPolling();
    $("nav").hidden = true;
    $("sign-out").hidden = true;
    show("signin");
    setText("signin-error", message || "");
    $("signin-token").value = "";
  }

  function signedIn(session) {
    csrfToken = session.csrfToken;
    $("nav").hidden = false;
    $("sign-out").hidden = false;
    route();
  }

  function currentView() {
    const name = window.location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "overview";
  }

  const loaders = {
    overview: loadOverview,
    tenants: () => loadTenants(),
    validation: () => undefined,
    evidence: () => undefined,
    setup: loadSetup,
  };

  function route() {
    if (!csrfToken) return;
    const view = currentView();
    show(view);
    stopPolling();
    if (view === "overview") startPolling();
    void loaders[view]();
    const heading = document.querySelector(`#view-${view} h1`);
    if (heading) document.title = `${heading.textContent} · KMS admin console`;
  }

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("signin-token");
    const token = input.value.trim();
    input.value = "";
    if (token === "") {
      setText("signin-error", "Enter the admin credential.");
      return;
    }
    const button = event.submitter || $("signin-form").querySelector("button");
    button.disabled = true;
    try {
      const session = await api("POST", "/admin/console/session", { token });
      setText("signin-error", "");
      signedIn(session);
      $("main").focus();
    } catch (error) {
      setText("signin-error", error.status === 401 || error.status === 403 ? "That is not the admin credential." : error.message);
      input.focus();
    } finally {
      button.disabled = false;
    }
  });

  $("sign-out").addEventListener("click", async () => {
    try {
      await api("DELETE", "/admin/console/session");
    } catch {
      // Signed out either way: the page forgets its token.
    }
    signedOut("You are signed out.");
    $("signin-token").focus();
  });

  window.addEventListener("hashchange", route);

  // ---------- overview

  function startPolling() {
    pollTimer = setInterval(() => {
      if (document.visibilityState === "visible") void loadOverview();
    }, POLL_MS);
  }
  function stopPolling() {
    if (pollTimer !== undefined) clearInterval(pollTimer);
    pollTimer = undefined;
  }

  /** Each load is numbered; an answer older than one already shown is dropped. */
  let overviewIssued = 0;
  let overviewShown = 0;
  async function loadOverview() {
    const seq = ++overviewIssued;
    await busy(null, "overview-error", async () => {
      const overview = await api("GET", "/admin/overview");
      if (seq < overviewShown) return;
      overviewShown = seq;
      renderOverview(overview);
    });
  }
  $("overview-refresh").addEventListener("click", (event) => busy(event.currentTarget, null, loadOverview));

  function statusBadge(status) {
    const kind = status === "up" ? "ok" : status === "degraded" ? "warn" : "bad";
    return el("span", { class: `badge ${kind}` }, status);
  }

  function renderOverview({ health, cache, history, alerts }) {
    const ready = $("overview-ready");
    ready.textContent = health.ready ? "Ready: every tenant can be served." : "Not ready: some tenants cannot be served.";
    ready.className = `readiness ${health.ready ? "result-ok" : "result-bad"}`;
    if (health.error) setText("overview-error", `${health.error.code}: ${health.error.message}`);
    const shared = health.sharedCache;
    $("overview-shared").hidden = !shared;
    if (shared) setText("overview-shared", `Shared cache tier: ${shared.status}${shared.lastError ? ` (last error ${shared.lastError.code})` : ""}`);

    const tbody = $("providers-table").querySelector("tbody");
    const rows = Object.entries(health.providers).map(([id, p]) =>
      el(
        "tr",
        { "data-provider": id },
        el("th", { scope: "row" }, id, p.insecure ? [" ", el("span", { class: "badge warn", title: "Not for production data" }, "insecure")] : null),
        el("td", { "data-field": "status", "data-label": "Status" }, statusBadge(p.status)),
        el("td", { "data-label": "Latency" }, p.latencyMs === undefined ? "—" : `${fmtNumber(Math.round(p.latencyMs))} ms`),
        el("td", { "data-field": "circuit", "data-label": "Circuit" }, p.circuit),
        el("td", { "data-label": "Cached keys" }, fmtNumber(p.cachedKeys ?? 0)),
        el("td", { "data-label": "Last error" }, p.lastError ? `${p.lastError.code} at ${fmtTime(new Date(p.lastError.at).toISOString())}` : "—"),
        el("td", { "data-label": "Detail" }, p.detail || "—"),
      ),
    );
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7 }, "No provider answered the health check."))]));
    const insecure = Object.entries(health.providers).filter(([, p]) => p.insecure).map(([id]) => id);
    if (insecure.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "error" }, `Insecure provider in use (${insecure.join(", ")}): development only, not for production data.`)));

    const samples = history.samples;
    const windowSamples = samples.slice(-30);
    const sum = (f) => windowSamples.reduce((n, s) => n + f(s), 0);
    const hits = sum((s) => s.hits);
    const misses = sum((s) => s.misses);
    const calls = sum((s) => s.kmsCalls);
    const minutes = Math.max(1, Math.round(sum((s) => s.intervalMs) / 60000));
    const figure = (label, value, field) => el("div", {}, el("dt", {}, label), el("dd", { id: `figure-${field}`, "data-field": field }, value));
    $("cache-figures").replaceChildren(
      figure(`Hit rate (last ${minutes} min)`, hits + misses === 0 ? "—" : `${Math.round((100 * hits) / (hits + misses))} %`, "hit-rate"),
      figure("Cached data keys", fmtNumber(cache.encrypt.entries + cache.decrypt.entries), "entries"),
      figure("Cache hits (total)", fmtNumber(cache.encrypt.hits + cache.decrypt.hits), "hits"),
      figure("Cache misses (total)", fmtNumber(cache.encrypt.misses + cache.decrypt.misses), "misses"),
      figure(`KMS calls (last ${minutes} min)`, fmtNumber(calls), "kms-calls"),
    );
    renderChart(samples, history.intervalMs);

    const list = $("alerts");
    list.replaceChildren(
      ...(alerts.length
        ? alerts.map((a) =>
            el(
              "li",
              { class: a.severity, "data-alert": a.name },
              el("strong", {}, `${a.name} `),
              el("span", { class: `badge ${a.severity === "critical" ? "bad" : "warn"}` }, a.severity),
              el("div", {}, a.summary),
              el("a", { href: a.runbookUrl, target: "_blank", rel: "noopener noreferrer" }, "Runbook"),
            ),
          )
        : [el("li", { class: "none" }, "None: no alert condition holds on this server's figures.")]),
    );
  }

  function renderChart(samples, intervalMs) {
    const W = 1000;
    const H = 200;
    const pad = { l: 36, r: 36, t: 10, b: 22 };
    const data = samples.slice(-45);
    const maxLookups = Math.max(1, ...data.map((s) => s.hits + s.misses));
    const maxCalls = Math.max(1, ...data.map((s) => s.kmsCalls));
    const slot = (W - pad.l - pad.r) / Math.max(data.length, 1);
    const y = (v, max) => H - pad.b - ((H - pad.t - pad.b) * v) / max;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "cache-chart-caption" });
    root.append(svg("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" }));
    const points = [];
    data.forEach((s, i) => {
      const x = pad.l + i * slot + slot * 0.15;
      const w = Math.max(1, slot * 0.7);
      const hitTop = y(s.hits, maxLookups);
      const missTop = y(s.hits + s.misses, maxLookups);
      root.append(svg("rect", { x, y: hitTop, width: w, height: H - pad.b - hitTop, class: "hits" }));
      root.append(svg("rect", { x, y: missTop, width: w, height: hitTop - missTop, class: "misses" }));
      points.push(`${x + w / 2},${y(s.kmsCalls, maxCalls)}`);
    });
    if (points.length > 1) root.append(svg("polyline", { points: points.join(" "), class: "calls" }));
    const label = (x, yy, text, anchor) => {
      const t = svg("text", { x, y: yy, "text-anchor": anchor });
      t.textContent = text;
      root.append(t);
    };
    label(pad.l - 4, pad.t + 8, fmtNumber(maxLookups), "end");
    label(W - pad.r + 4, pad.t + 8, fmtNumber(maxCalls), "start");
    label(pad.l, H - 6, `${fmtDuration(data.length * intervalMs)} ago`, "start");
    label(W - pad.r, H - 6, "now", "end");
    const legend = el(
      "div",
      { class: "legend", "aria-hidden": "true" },
      el("span", {}, el("span", { class: "swatch hits" }), "cache hits"),
      el("span", {}, el("span", { class: "swatch misses" }), "cache misses"),
      el("span", {}, el("span", { class: "swatch calls" }), "KMS calls (right scale)"),
    );
    $("cache-chart").replaceChildren(root, legend);
    const lookups = data.reduce((n, s) => n + s.hits + s.misses, 0);
    const calls = data.reduce((n, s) => n + s.kmsCalls, 0);
    setText("cache-chart-caption", `Per ${Math.round(intervalMs / 1000)} s interval over the last ${fmtDuration(data.length * intervalMs)}: ${fmtNumber(lookups)} cache lookups, ${fmtNumber(calls)} KMS calls.`);
  }

  // ---------- tenants

  const tenantState = { search: "", offset: 0, total: 0 };

  async function loadTenants() {
    await busy(null, "tenants-error", async () => {
      const query = new URLSearchParams({ offset: String(tenantState.offset), limit: String(PAGE_SIZE) });
      if (tenantState.search) query.set("search", tenantState.search);
      const page = await api("GET", `/admin/tenants?${query}`);
      tenantState.total = page.total;
      renderTenants(page);
    });
  }

  function renderTenants(page) {
    const tbody = $("tenants-table").querySelector("tbody");
    tbody.replaceChildren(
      ...page.items.map((t) => {
        const s = t.status;
        const error = t.statusError ? `${t.statusError.code}` : s && s.lastError ? `${s.lastError.code} at ${fmtTime(s.lastError.at)}` : "—";
        return el(
          "tr",
          { "data-tenant": t.tenantId },
          el("th", { scope: "row" }, t.tenantId),
          el("td", { "data-label": "Key" }, el("code", {}, `${t.provider}:${t.keyId}`)),
          el("td", { "data-field": "version", "data-label": "Version", class: "version" }, s ? s.currentVersion || "—" : "—"),
          el("td", { "data-label": "Age" }, s ? fmtDuration(s.ageMs) : "—"),
          el("td", { "data-label": "Next rotation due" }, s ? [fmtTime(s.nextDueAt), s.overdue ? [" ", el("span", { class: "badge bad" }, "overdue")] : null] : "—"),
          el("td", { "data-field": "error", "data-label": "Last error" }, error),
          el(
            "td",
            { class: "actions-cell" },
            el("button", { type: "button", class: "small danger", "aria-label": `Rotate the key of ${t.tenantId} now`, onclick: () => confirmRotate(t) }, "Rotate now"),
            el("button", { type: "button", class: "small secondary", "aria-label": `Flush the cache of ${t.tenantId}`, onclick: (e) => flush(t, e.currentTarget) }, "Flush cache"),
          ),
        );
      }),
    );
    if (page.items.length === 0) tbody.append(el("tr", {}, el("td", { colspan: 7 }, "No tenant matches.")));
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.items.length;
    setText("tenants-range", `${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(page.total)}`);
    $("tenants-prev").disabled = page.offset === 0;
    $("tenants-next").disabled = last >= page.total;
  }

  $("tenants-search").addEventListener("submit", (event) => {
    event.preventDefault();
    tenantState.search = $("tenants-query").value.trim();
    tenantState.offset = 0;
    setText("tenants-message", "");
    void loadTenants();
  });
  $("tenants-prev").addEventListener("click", () => {
    tenantState.offset = Math.max(0, tenantState.offset - PAGE_SIZE);
    void loadTenants();
  });
  $("tenants-next").addEventListener("click", () => {
    if (tenantState.offset + PAGE_SIZE < tenantState.total) tenantState.offset += PAGE_SIZE;
    void loadTenants();
  });

  let rotating;
  function confirmRotate(tenant) {
    rotating = tenant;
    setText("rotate-dialog-text", `Rotate ${tenant.provider}:${tenant.keyId}, the key of tenant ${tenant.tenantId}, now? Every tenant on this key gets the new version; existing data still decrypts.`);
    $("rotate-dialog").showModal();
    $("rotate-confirm").focus();
  }
  $("rotate-dialog").addEventListener("close", () => {
    const tenant = rotating;
    rotating = undefined;
    if ($("rotate-dialog").returnValue !== "rotate" || !tenant) return;
    void busy(null, "tenants-error", async () => {
      const result = await api("POST", `/admin/tenants/${encodeURIComponent(tenant.tenantId)}/rotate`);
      const message = `Rotated ${result.provider}:${result.keyId}: version ${result.previousVersion} → ${result.currentVersion}.`;
      setText("tenants-message", message);
      announce(message);
      await loadTenants();
    });
  });

  async function flush(tenant, button) {
    await busy(button, "tenants-error", async () => {
      await api("DELETE", `/admin/tenants/${encodeURIComponent(tenant.tenantId)}/cache`);
      const message = `Flushed the cached data keys of ${tenant.tenantId}: its next request goes to the KMS.`;
      setText("tenants-message", message);
      announce(message);
    });
  }

  // ---------- validation

  $("validation-run").addEventListener("click", (event) =>
    busy(event.currentTarget, "validation-error", async () => {
      setText("validation-summary", "Running…");
      $("validation-results").replaceChildren();
      const report = await api("POST", "/admin/validate-kms");
      const checks = report.keys.flatMap((k) => k.checks);
      const failed = checks.filter((c) => !c.ok).length;
      const summary = $("validation-summary");
      summary.textContent = failed === 0 ? `All ${checks.length} checks passed.` : `${failed} of ${checks.length} checks failed.`;
      summary.className = failed === 0 ? "result-ok" : "result-bad";
      $("validation-results").replaceChildren(
        ...report.keys.map((k) =>
          el(
            "div",
            {},
            el("h2", {}, `${k.provider}: `, el("code", {}, k.keyId)),
            el(
              "div",
              { class: "table-wrap" },
              el(
                "table",
                { "data-key": `${k.provider}:${k.keyId}` },
                el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Permission"), el("th", { scope: "col" }, "Result"), el("th", { scope: "col" }, "Fix"), el("th", { scope: "col" }, "Docs"))),
                el(
                  "tbody",
                  {},
                  k.checks.map((c) =>
                    el(
                      "tr",
                      { "data-permission": c.permission, "data-ok": String(c.ok) },
                      el("th", { scope: "row" }, el("code", {}, c.permission)),
                      el("td", {}, c.ok ? el("span", { class: "badge ok" }, "pass") : [el("span", { class: "badge bad" }, "fail"), c.error ? ` ${c.error.code}: ${c.error.message}` : ""]),
                      el("td", {}, c.ok ? "—" : c.remediation || "—"),
                      el("td", {}, c.docsUrl ? el("a", { href: c.docsUrl, target: "_blank", rel: "noopener noreferrer" }, c.ok ? "Docs" : "How to fix") : "—"),
                    ),
                  ),
                ),
              ),
            ),
          ),
        ),
      );
      announce(summary.textContent);
    }),
  );

  // ---------- evidence

  /** `datetime-local` (read as UTC) → ISO 8601, or undefined. */
  const isoOf = (value) => (value ? new Date(`${value.length === 16 ? `${value}:00` : value}Z`).toISOString() : undefined);

  $("export-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(event.submitter, "export-error", async () => {
      setText("export-message", "");
      const query = new URLSearchParams({ format: $("export-format").value });
      const tenant = $("export-tenant").value.trim();
      const since = isoOf($("export-since").value);
      const until = isoOf($("export-until").value);
      if (tenant) query.set("tenant", tenant);
      if (since) query.set("since", since);
      if (until) query.set("until", until);
      const exported = await api("GET", `/admin/evidence/export?${query}`);
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      download(`evidence-${tenant || "all"}-${stamp}.json`, `${JSON.stringify(exported, null, 2)}\n`, "application/json");
      const message = `Exported ${fmtNumber(exported.manifest.count)} records${exported.manifest.signature ? " (signed)" : ""}.`;
      setText("export-message", message);
      announce(message);
    });
  });

  $("verify-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(event.submitter, "verify-error", async () => {
      $("verify-result").replaceChildren();
      const bundle = $("verify-bundle").files[0];
      const contentFile = $("verify-content").files[0];
      const manifestFile = $("verify-manifest").files[0];
      let manifest;
      let content;
      if (bundle) {
        let parsed;
        try {
          parsed = JSON.parse(await readFile(bundle));
        } catch {
          throw new Error(`${bundle.name} is not an export downloaded from this console (not JSON)`);
        }
        if (!parsed || typeof parsed.content !== "string" || typeof parsed.manifest !== "object") throw new Error(`${bundle.name} has no "manifest" and "content"`);
        ({ manifest, content } = parsed);
      } else if (contentFile && manifestFile) {
        content = await readFile(contentFile);
        try {
          manifest = JSON.parse(await readFile(manifestFile));
        } catch {
          throw new Error(`${manifestFile.name} is not a manifest (not JSON)`);
        }
      } else {
        throw new Error("Choose an export downloaded here, or an export file and its manifest.");
      }
      const result = await api("POST", "/admin/evidence/verify", { manifest, content });
      const out = $("verify-result");
      if (result.ok) {
        out.replaceChildren(el("p", { class: "result-ok", "data-verdict": "ok" }, `Verified: ${fmtNumber(result.count)} records, intact.`));
      } else {
        const bad = result.firstBad || {};
        out.replaceChildren(
          el("p", { class: "result-bad", "data-verdict": "bad" }, `Verification failed: ${bad.reason || "unknown"}${bad.position !== undefined ? ` at record ${bad.position}` : ""}${bad.seq !== undefined ? ` (seq ${bad.seq})` : ""}.`),
          result.record !== undefined ? el("div", {}, el("h2", {}, "First bad record"), el("pre", { "data-field": "record" }, JSON.stringify(result.record, null, 2))) : null,
        );
      }
      announce(out.textContent);
    });
  });

  // ---------- setup wizard

  let questions;
  let setupRendered = false;
  async function loadSetup() {
    if (setupRendered) return;
    await busy(null, "setup-error", async () => {
      questions = (await api("GET", "/admin/config/questions")).questions;
      renderSetup();
      setupRendered = true;
    });
  }

  function renderSetup() {
    const fields = $("setup-fields");
    fields.replaceChildren(
      ...questions.map((q) => {
        const id = `setup-${q.flag}`;
        let input;
        if (q.choices) {
          input = el("select", { id, "data-flag": q.flag, "aria-describedby": `${id}-issue` }, q.choices.map((c) => el("option", { value: c }, c)));
        } else if (q.file) {
          input = el("input", { id, type: "file", "data-flag": q.flag, "aria-describedby": `${id}-issue` });
        } else {
          input = el("input", { id, type: "text", autocomplete: "off", spellcheck: "false", "data-flag": q.flag, "aria-describedby": `${id}-issue` });
        }
        return el(
          "div",
          { "data-question": q.flag },
          el("label", { for: id }, q.text, q.optional ? " (optional)" : ""),
          input,
          el("p", { id: `${id}-issue`, class: "span issue" }),
        );
      }),
    );
    $("setup-provider").addEventListener("change", applyProvider);
    applyProvider();
  }

  /** Shows the questions of the chosen provider, with its defaults filled in. */
  function applyProvider() {
    const provider = $("setup-provider").value;
    for (const q of questions) {
      const row = document.querySelector(`[data-question="${q.flag}"]`);
      row.hidden = Boolean(q.providers) && !q.providers.includes(provider);
      const input = $(`setup-${q.flag}`);
      if (q.flag !== "provider" && !q.file && !q.choices) input.value = q.defaults[provider] || "";
      if (q.choices && q.flag !== "provider" && q.defaults[provider]) input.value = q.defaults[provider];
    }
    $("setup-result").replaceChildren();
  }

  $("setup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(event.submitter, "setup-error", async () => {
      const provider = $("setup-provider").value;
      const answers = {};
      for (const q of questions) {
        if (q.providers && !q.providers.includes(provider)) continue;
        const input = $(`setup-${q.flag}`);
        if (q.file) answers[q.flag] = input.files[0] ? await readFile(input.files[0]) : "";
        else answers[q.flag] = input.value;
      }
      for (const issue of document.querySelectorAll("#setup-form .issue, #setup-file-issue")) issue.textContent = "";
      const fileName = $("setup-file").value.trim();
      const result = await api("POST", "/admin/config/check", { answers, fileName });
      const out = $("setup-result");
      if (!result.ok) {
        const general = [];
        for (const issue of result.issues) {
          const target = issue.flag ? $(issue.flag === "file" ? "setup-file-issue" : `setup-${issue.flag}-issue`) : null;
          if (target) target.textContent = issue.message;
          else general.push(el("li", {}, `${issue.path || "(configuration)"}: ${issue.message}${issue.code ? ` [${issue.code}]` : ""} `, issue.docsUrl ? el("a", { href: issue.docsUrl, target: "_blank", rel: "noopener noreferrer" }, "docs") : null));
        }
        out.replaceChildren(el("p", { class: "result-bad", "data-verdict": "bad" }, `The configuration has ${result.issues.length} problem(s).`), general.length ? el("ul", {}, general) : null);
        const first = result.issues.find((i) => i.flag);
        if (first) $(first.flag === "file" ? "setup-file" : `setup-${first.flag}`).focus();
        return;
      }
      const button = el("button", { type: "button", onclick: () => download(result.fileName, result.text, /\.ya?ml$/i.test(result.fileName) ? "application/yaml" : "application/json") }, `Download ${result.fileName}`);
      out.replaceChildren(el("p", { class: "result-ok", "data-verdict": "ok" }, "The configuration passes the same checks as kms init."), el("pre", { "data-field": "config" }, result.text), button);
      button.focus();
    });
  });

  // ---------- start

  (async () => {
    try {
      const session = await api("GET", "/admin/console/session");
      if (session.signedIn) signedIn(session);
      else signedOut();
    } catch {
      signedOut("The server did not answer: reload to try again.");
    }
  })();
})();

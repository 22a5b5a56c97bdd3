// tracetap ui: the pages' code (no framework, nothing fetched but this server's answers).
"use strict";
const TT = (() => {
  const $ = (sel) => document.querySelector(sel);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  const ms = (x) => (x === null || x === undefined ? "–" :
    x < 1000 ? Math.round(x) + " ms" : (x / 1000).toFixed(x < 10000 ? 2 : 1) + " s");
  const dur = (s) => {
    if (s === null || s === undefined) return "–";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  };
  const usd = (x) => (x === null || x === undefined ? "–" : "$" + x.toFixed(x < 1 ? 4 : 2));
  const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) : "–");

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  }

  // The filter form <-> the page's query string.
  function bindFilters(onChange) {
    const form = $("#filters");
    const params = new URLSearchParams(location.search);
    for (const el of form.elements) if (el.name && params.has(el.name)) el.value = params.get(el.name);
    const query = () => {
      const q = new URLSearchParams();
      for (const el of form.elements) if (el.name && el.value.trim()) q.set(el.name, el.value.trim());
      return q;
    };
    let timer = null;
    const changed = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const q = query().toString();
        history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
        onChange(q);
      }, 200);
    };
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    form.addEventListener("submit", (e) => { e.preventDefault(); changed(); });
    return () => query().toString();
  }

  // Calls refresh(latest) whenever the store has a newer round (server-sent events).
  function live(refresh) {
    const status = $("#status");
    const source = new EventSource("/api/events");
    source.onmessage = (e) => {
      status.className = "status live";
      status.textContent = "live · newest round " + e.data;
      refresh(Number(e.data));
    };
    source.onerror = () => { status.className = "status"; status.textContent = "reconnecting…"; };
  }

  // Runs load() (it returns the newest round id it showed) now, then again whenever the event
  // stream names a newer round; never two at once, so a burst of rounds costs one reload.
  function keepFresh(load) {
    let shown = -1, wanted = -1, busy = false;
    const run = async () => {
      busy = true;
      try { shown = await load(); } finally { busy = false; }
      if (wanted > shown) run();
    };
    run();
    live((latest) => { wanted = latest; if (!busy && latest !== shown) run(); });
  }

  // ---- sessions page ---------------------------------------------------------------------
  function sessionsPage() {
    let pending = null, shown = -1;
    const query = bindFilters(() => load());
    async function load() {
      const q = query();
      pending = q;
      try {
        const data = await getJSON("/api/sessions" + (q ? "?" + q : ""));
        if (pending !== q) return;
        $("#error").textContent = "";
        render(data);
        shown = data.latest;
      } catch (err) {
        $("#error").textContent = err.message;
      }
      $("#nav-analysis").href = "/analysis" + (q ? "?" + q : "");
      return shown;
    }
    function render(data) {
      const rows = data.sessions.map((s) => {
        const span = s.first_at && s.last_at ? s.last_at - s.first_at : null;
        const kinds = Object.entries(s.by_kind).filter(([k]) => k !== "main")
          .map(([k, n]) => `${n} ${k}`).join(", ");
        return `<tr class="session-row" data-ref="${esc(s.ref)}" data-main="${s.by_kind.main || 0}">
          <td class="l mono"><a href="/session/${encodeURIComponent(s.ref)}">${esc(s.session.slice(0, 18))}</a></td>
          <td class="l">${esc(s.provider)}</td><td class="l">${esc(s.project || "–")}</td>
          <td class="l">${esc(s.models.join(", "))}</td>
          <td title="${esc(kinds)}">${num(s.rounds)}${kinds ? " <span class=muted>(" + esc(kinds) + ")</span>" : ""}</td>
          <td>${num(s.tool_calls)}</td><td>${num(s.input_tokens)}</td><td>${num(s.cached_tokens)}</td>
          <td>${num(s.output_tokens)}</td><td>${pct(s.measured_reuse)}</td>
          <td title="${s.unpriced_rounds ? s.unpriced_rounds + " rounds of models without a price" : ""}">${usd(s.cost_usd)}</td>
          <td class="l">${when(s.first_at)}</td><td>${dur(span)}</td></tr>`;
      });
      $("#sessions tbody").innerHTML = rows.join("") ||
        `<tr><td class="l muted" colspan="13">no session matches ${esc(data.filter)}</td></tr>`;
      document.title = `tracetap · ${data.sessions.length} sessions`;
      $("#more").textContent = data.sessions.length >= data.limit ?
        `showing the ${data.limit} sessions with the newest rounds: the filters narrow them` : "";
    }
    $("#sessions tbody").addEventListener("click", (e) => {
      const tr = e.target.closest("tr.session-row");
      if (tr && e.target.tagName !== "A") location.href = "/session/" + encodeURIComponent(tr.dataset.ref);
    });
    keepFresh(load);
  }

  // ---- session page ----------------------------------------------------------------------
  function bar(parts, total, cls) {
    if (!total) return `<div class="bar"></div>`;
    return `<div class="bar">` + parts.filter(([, v]) => v > 0).map(([k, v]) =>
      `<span class="${cls}${k}" style="width:${(100 * v / total).toFixed(2)}%" title="${esc(k)}: ${num(v)}"></span>`).join("") + `</div>`;
  }

  function sessionPage() {
    const ref = decodeURIComponent(location.pathname.slice("/session/".length));
    $("#title").textContent = ref;
    document.title = "tracetap · " + ref;
    let shown = -1, selected = null, data = null;
    async function load() {
      try {
        data = await getJSON("/api/session/" + encodeURIComponent(ref));
        $("#error").textContent = "";
      } catch (err) {
        $("#error").textContent = err.message;
        return shown;
      }
      shown = data.latest;
      const priced = data.rounds.filter((r) => r.cost_usd !== null);
      $("#summary").textContent = `${data.provider} · ${data.project || "no project"} · ${data.rounds.length} rounds` +
        (priced.length ? ` · ${usd(priced.reduce((a, r) => a + r.cost_usd, 0))}` : "");
      waterfall(data);
      table(data);
      return shown;
    }
    function waterfall(d) {
      let total = 1;
      for (const r of d.rounds) {
        total = Math.max(total, r.end_ms ?? r.last_token_ms ?? r.start_ms ?? 0);
        for (const t of r.tools) total = Math.max(total, t.end_ms ?? 0);
      }
      const x = (v) => (100 * v / total).toFixed(3) + "%";
      const w = (a, b) => (100 * Math.max(0, b - a) / total).toFixed(3) + "%";
      $("#lanes").textContent = "lanes: " + d.lanes.join(", ");
      // one round: its wait before, its bar (to first byte, first token, last token, end), its tools
      const parts = (r) => {
        const end = r.end_ms ?? r.last_token_ms ?? r.first_token_ms ?? r.start_ms;
        const marks = [r.start_ms, r.first_byte_ms ?? r.start_ms, r.first_token_ms ?? r.first_byte_ms ?? r.start_ms,
          r.last_token_ms ?? end, end];
        const span = Math.max(end - r.start_ms, 1e-9);
        const piece = (cls, a, b) => `<span class="${cls}" style="width:${(100 * Math.max(0, b - a) / span).toFixed(2)}%"></span>`;
        const title = `#${r.index} ${r.lane} · ${r.model || ""}\nfirst byte ${ms(r.first_byte_ms - r.start_ms)} · first token ${ms(r.first_token_ms - r.start_ms)} · last token ${ms(r.last_token_ms - r.start_ms)}`;
        const wait = r.wait ? `<div class="wf-wait ${r.wait.kind}" style="left:${x(r.wait.start_ms)};width:${w(r.wait.start_ms, r.wait.end_ms)}" title="${r.wait.kind} wait ${ms(r.wait.end_ms - r.wait.start_ms)}"></div>` : "";
        const tools = r.tools.filter((t) => t.start_ms !== null).map((t) =>
          `<div class="wf-tool${t.error ? " error" : ""}" style="left:${x(t.start_ms)};width:${w(t.start_ms, t.end_ms ?? t.start_ms)}" title="${esc(t.name)} ${ms(t.latency_ms)}${t.error ? " (error)" : ""}"></div>`).join("");
        return `${wait}<div class="wf-bar lane-${esc(r.kind)}" data-pk="${r.pk}" style="left:${x(r.start_ms)};width:${w(r.start_ms, end)}" title="${esc(title)}">
          ${piece("ttfb", marks[0], marks[1])}${piece("prefill", marks[1], marks[2])}${piece("decode", marks[2], marks[3])}${piece("tail", marks[3], marks[4])}</div>${tools}`;
      };
      const row = (cls, label, body) => `<div class="wf-row">
        <div class="wf-label ${cls}">${label}</div><div class="wf-track">${body}</div></div>`;
      if ($("#by-lane").checked) {  // one row per lane, its rounds side by side
        $("#waterfall").innerHTML = d.lanes.map((lane) => {
          const rounds = d.rounds.filter((r) => r.lane === lane);
          return row(`kind-${esc(rounds[0].kind)}`, `${esc(lane)} (${rounds.length})`, rounds.map(parts).join(""));
        }).join("");
      } else {  // one row per round
        $("#waterfall").innerHTML = d.rounds.map((r) =>
          row(`kind-${esc(r.kind)}`, `#${r.index} ${esc(r.lane)}`, parts(r))).join("");
      }
    }
    function table(d) {
      const maxPrompt = Math.max(1, ...d.rounds.map((r) => {
        const s = r.segments || {};
        const input = s.system === undefined ? r.input_tokens || 0 :
          (s.system || 0) + (s.tools || 0) + (s.history || 0) + (s.new_input || 0);
        return input + (s.output || r.output_tokens || 0);
      }));
      $("#rounds tbody").innerHTML = d.rounds.map((r) => {
        const s = r.segments || {};
        const known = s.system !== undefined;  // tracetap tokenized it (imported rows: not)
        const segs = bar(known ? [["system", s.system], ["tools", s.tools], ["history", s.history],
          ["new_input", s.new_input], ["output", s.output ?? r.output_tokens]] :
          [["input", r.input_tokens], ["output", r.output_tokens]], maxPrompt, "seg-");
        const prompt = r.prompt_tokens || r.input_tokens || 0;
        const cached = Math.min(r.cached_tokens || 0, prompt);
        const reusable = Math.max(0, Math.min(r.reusable_tokens || 0, prompt) - cached);
        const cache = bar([["cached", cached], ["reusable", reusable], ["new", prompt - cached - reusable]], prompt, "c-");
        const tools = r.tools.map((t) => `<span class="tool${t.error ? " error" : ""}">${esc(t.name)} ${ms(t.latency_ms)}${t.error ? " ✗" : ""}</span>`).join("");
        const reuse = r.prefix_break && r.prefix_break !== "append" ? `<span class="error" title="${esc(r.cause_text || "")}">${esc(r.prefix_break)}</span>` : (r.prefix_break ? "append" : "");
        return `<tr class="round-row${selected === r.pk ? " selected" : ""}" data-pk="${r.pk}">
          <td>${r.index}</td><td class="l kind-${esc(r.kind)}">${esc(r.lane)}</td><td class="l">${esc(r.model || "–")}</td>
          <td>${ms(r.first_token_ms === null ? null : r.first_token_ms - r.start_ms)}</td>
          <td>${ms(r.end_ms === null ? null : r.end_ms - r.start_ms)}</td>
          <td>${num(r.input_tokens)}</td><td>${num(r.cached_tokens)}</td><td>${num(r.output_tokens)}</td><td>${usd(r.cost_usd)}</td>
          <td class="l">${segs}</td><td class="l">${cache}</td><td class="l">${tools}</td>
          <td class="l">${reuse}${r.cause ? ` <span class="muted" title="${esc(r.cause_text || "")}">(${esc(r.cause)})</span>` : ""}</td></tr>`;
      }).join("");
    }
    function section(name, elems) {
      if (!elems.length) return "";
      const shownElems = elems.map((e) => `<div class="elem ${e.status}" data-section="${name}" data-index="${e.index}">
        <span class="tag">${esc(name)}[${e.index}] · ${esc(e.status)}</span>
        ${e.diff ? `<pre class="diff">${esc(e.diff)}</pre>` : ""}<pre>${esc(e.text)}</pre></div>`).join("");
      return `<h4>${esc(name)}</h4>${shownElems}`;
    }
    async function open(pk) {
      selected = pk;
      for (const tr of document.querySelectorAll("tr.round-row")) tr.classList.toggle("selected", Number(tr.dataset.pk) === pk);
      const box = $("#content");
      box.innerHTML = `<p class="muted">loading round…</p>`;
      let c;
      try {
        c = await getJSON("/api/round/" + pk);
      } catch (err) {
        box.innerHTML = `<p class="error">${esc(err.message)}</p>`;
        return;
      }
      const r = data.rounds.find((x) => x.pk === pk) || {};
      const stored = Object.values(c.sections).some((elems) => elems.length) || c.response !== "null";
      let head = `<h3>round #${esc(r.index)} · ${esc(r.lane)} · content ${esc(c.shown_as)}</h3>`;
      if (c.previous === null) head += `<p class="muted">no previous round to compare with</p>`;
      else if (c.broke_at) {
        head += `<div class="broke" id="broke">prefix reuse broke at ${esc(c.broke_at.section)}[${c.broke_at.index}]` +
          (c.prefix_break ? ` · ${esc(c.prefix_break)}${c.prefix_break_text ? ": " + esc(c.prefix_break_text) : ""}` : "") +
          (c.cause ? ` · miss cause ${esc(c.cause)}: ${esc(c.cause_text || "")}` : "") +
          (c.reusable_tokens !== null && c.reusable_tokens !== undefined ? ` · ${num(c.reusable_tokens)} of ${num(c.prompt_tokens)} tokens reusable` : "") + `</div>`;
      } else if (!stored) {
        head += `<p class="muted">this round was stored without its content (${esc(c.content_policy)})</p>`;
      } else head += `<p class="muted" id="appended">` + (c.prefix_break === "append" ?
        `appends to the previous round's measured prompt` +
        (c.normalized.length ? ` (left out of the measure: ${esc(c.normalized.join(", "))})` : "") :
        `repeats the previous round's prompt and appends to it (compared element by element)`) +
        (c.cause ? ` · miss cause ${esc(c.cause)}: ${esc(c.cause_text || "")}` : "") + `</p>`;
      box.innerHTML = head + section("system", c.sections.system) + section("tools", c.sections.tools) +
        section("messages", c.sections.messages) +
        (c.response === "null" ? "" : `<h4>response</h4><div class="elem new"><pre>${esc(c.response)}</pre></div>`);
      box.scrollIntoView({ block: "start" });
    }
    const pick = (e) => {
      const el = e.target.closest("[data-pk]");
      if (el) open(Number(el.dataset.pk));
    };
    $("#waterfall").addEventListener("click", pick);
    $("#by-lane").addEventListener("change", () => { if (data) waterfall(data); });
    $("#zoom").addEventListener("input", (e) => {  // stretch the time axis; scroll along it
      $("#waterfall").style.setProperty("--zoom", e.target.value);
    });
    $("#rounds tbody").addEventListener("click", pick);
    keepFresh(load);
  }

  // ---- analysis page ---------------------------------------------------------------------
  function analysisPage() {
    const run = async (q) => {
      $("#status").textContent = "analysing…";
      $("#error").textContent = "";
      $("#nav-sessions").href = "/" + (q ? "?" + q : "");
      let data;
      try {
        data = await getJSON("/api/analysis" + (q ? "?" + q : ""));
      } catch (err) {
        $("#error").textContent = err.message;
        $("#status").textContent = "";
        return;
      }
      $("#status").textContent = `${num(data.rounds)} rounds · ${data.filter}`;
      const o = data.overview || {};
      const keys = ["total_sessions", "llm_rounds_total", "total_tool_calls", "rounds_per_user_request",
        "tool_calls_per_user_request"];
      $("#overview").innerHTML = keys.filter((k) => k in o).map((k) =>
        `<span>${esc(k.replaceAll("_", " "))}</span><b>${typeof o[k] === "number" && !Number.isInteger(o[k]) ? o[k].toFixed(2) : num(o[k])}</b>`).join("");
      const box = $("#figures");
      box.innerHTML = data.rounds ? "" : `<p class="muted">no rounds match ${esc(data.filter)}</p>`;
      for (const fig of data.figures) {
        const div = document.createElement("div");
        div.className = "figure";
        box.appendChild(div);
        Plotly.newPlot(div, fig.data, fig.layout, { responsive: true, displaylogo: false });
      }
    };
    const query = bindFilters(run);
    run(query());
  }

  // ---- datasets page: folders made by `tracetap contribute` and their privacy reviews ------
  async function datasetsPage() {
    let data;
    try {
      data = await getJSON("/api/datasets");
    } catch (err) {
      $("#error").textContent = err.message;
      $("#status").textContent = "";
      return;
    }
    $("#status").textContent = `${data.length} dataset(s)`;
    $("#datasets tbody").innerHTML = data.map((d, i) => `<tr class="dataset-row">
      <td class="l"><a href="#review-${i}">${esc(d.name)}</a></td><td class="l">${esc(d.created)}</td>
      <td class="l">${esc(d.kind)}</td><td class="l">${esc(d.content_level)}</td>
      <td>${num(d.rows.rounds)}</td><td>${num(d.rows.tool_calls)}</td><td>${num(d.rows.timing_events)}</td>
      <td>${num(d.rows.sessions)}</td><td>${num(d.rows.projects)}</td>
      <td class="${d.residual_hits ? "error" : ""}">${num(d.residual_hits)}</td></tr>`).join("");
    // review_html is rendered by the server with raw HTML escaped
    $("#reviews").innerHTML = data.map((d, i) => `<section class="review" id="review-${i}">
      <h2 class="mono">${esc(d.name)}</h2>${d.review_html}</section>`).join("");
  }

  return { sessionsPage, sessionPage, analysisPage, datasetsPage };
})();

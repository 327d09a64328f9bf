// The local dashboard page: fetches /api/panels every few seconds and draws
// each panel — timeseries and bar charts with uPlot, tables and stats as
// HTML. For tests and scripts <body> carries data-state ("loading", "error",
// "ready" after the first good render), data-panels, data-errors (panels
// that failed) and data-loads (good refreshes so far); each panel carries
// data-rows.
"use strict";
(function () {
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const CLASS_COLORS = { "2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728" };

  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const ui = {
    title: $("title"), minutes: $("minutes"), search: $("search"), refresh: $("refresh"),
    status: $("status"), problem: $("problem"), panels: $("panels"),
  };
  const params = new URLSearchParams(location.search);
  const view = {
    minutes: params.get("minutes"),
    search: params.get("search"),
    refresh: params.has("refresh") ? Number(params.get("refresh")) : 5,
  };
  const panels = new Map(); // panel id → { el, heading, content, chart, signature }
  let timer = null;
  let loading = false;
  let synced = false;

  function fail(message) {
    console.error("dashboard error: " + message);
  }

  // ---- fetching -----------------------------------------------------------

  async function load() {
    if (loading) return;
    loading = true;
    clearTimeout(timer);
    const q = new URLSearchParams();
    if (view.minutes) q.set("minutes", view.minutes);
    if (view.search !== null) q.set("search", view.search);
    try {
      const response = await fetch("/api/panels?" + q, { cache: "no-store" });
      const text = await response.text();
      let data;
      try {
        data = JSON.parse(text);
      } catch (_) {
        throw new Error(`HTTP ${response.status}: ${text.slice(0, 300)}`);
      }
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
      render(data);
      showProblem(null);
      body.dataset.state = "ready";
      body.dataset.loads = String(Number(body.dataset.loads || 0) + 1);
      ui.status.textContent = `${data.panels.length} panels, ${shortTime(data.from)} – ${shortTime(data.to)}` +
        ` · updated ${new Date().toLocaleTimeString([], { hour12: false })}`;
    } catch (e) {
      fail(e.message);
      showProblem(`Cannot load the panels: ${e.message}`);
      if (body.dataset.state !== "ready") body.dataset.state = "error";
      ui.status.textContent = "not updated";
    } finally {
      loading = false;
      if (view.refresh > 0) timer = setTimeout(load, view.refresh * 1000);
    }
  }

  function showProblem(message) {
    ui.problem.hidden = !message;
    ui.problem.textContent = message || "";
    if (message) body.dataset.problem = message;
    else delete body.dataset.problem;
  }

  // ---- controls -----------------------------------------------------------

  function syncControls(data) {
    if (synced) return;
    synced = true;
    ui.title.textContent = data.title;
    document.title = `${data.title} · local dashboard`;
    const minutes = String(data.minutes);
    if (![...ui.minutes.options].some((o) => o.value === minutes)) {
      ui.minutes.add(new Option(`last ${minutes} minutes`, minutes));
    }
    ui.minutes.value = minutes;
    ui.search.value = data.search;
    const refresh = String(view.refresh);
    if (![...ui.refresh.options].some((o) => o.value === refresh)) {
      ui.refresh.add(new Option(`${refresh} s`, refresh));
    }
    ui.refresh.value = refresh;
  }

  function controlsChanged() {
    view.minutes = ui.minutes.value;
    view.search = ui.search.value;
    view.refresh = Number(ui.refresh.value);
    const q = new URLSearchParams({ minutes: view.minutes, search: view.search, refresh: view.refresh });
    history.replaceState(null, "", "?" + q);
    load();
  }

  ui.minutes.addEventListener("change", controlsChanged);
  ui.refresh.addEventListener("change", controlsChanged);
  ui.search.addEventListener("change", controlsChanged);
  $("controls").addEventListener("submit", (e) => { e.preventDefault(); controlsChanged(); });
  window.addEventListener("resize", () => {
    for (const p of panels.values()) if (p.chart) p.chart.setSize(chartSize(p));
  });

  // ---- panels -------------------------------------------------------------

  function render(data) {
    syncControls(data);
    let errors = 0;
    for (const panel of data.panels) {
      const p = panelElement(panel);
      p.heading.textContent = panel.title + (panel.truncated ? " (truncated)" : "");
      p.el.dataset.rows = String(panel.rows.length);
      try {
        if (panel.error) throw new Error(panel.error);
        draw(p, panel);
        delete p.el.dataset.error;
      } catch (e) {
        errors += 1;
        p.el.dataset.error = e.message;
        clear(p);
        p.content.append(element("div", "error", e.message));
        fail(`panel "${panel.title}": ${e.message}`);
      }
    }
    body.dataset.panels = String(data.panels.length);
    body.dataset.errors = String(errors);
  }

  function panelElement(panel) {
    let p = panels.get(panel.id);
    if (!p) {
      const el = element("section", "panel");
      const heading = element("h2");
      const content = element("div", "body");
      el.append(heading, content);
      el.dataset.panel = String(panel.id);
      el.dataset.kind = panel.kind;
      const g = panel.grid;
      el.style.gridColumn = `${g.x + 1} / span ${g.w}`;
      el.style.gridRow = `${g.y + 1} / span ${g.h}`;
      ui.panels.append(el);
      p = { el, heading, content, chart: null, signature: null };
      panels.set(panel.id, p);
    }
    return p;
  }

  function clear(p) {
    if (p.chart) p.chart.destroy();
    p.chart = null;
    p.signature = null;
    p.content.replaceChildren();
  }

  function draw(p, panel) {
    if (panel.rows.length === 0) {
      clear(p);
      p.content.append(element("div", "empty", "No data in this range"));
      return;
    }
    switch (panel.kind) {
      case "timeseries": return drawChart(p, timeseries(panel));
      case "barchart": return drawChart(p, bars(panel));
      case "stat": return drawStat(p, panel);
      default: return drawTable(p, panel);
    }
  }

  // A chart is rebuilt only when its series change; otherwise uPlot gets
  // the new data (no flicker on refresh).
  function drawChart(p, { kind, opts, data }) {
    const signature = kind + JSON.stringify(opts.series.map((s) => s.label || ""));
    if (p.chart && p.signature === signature) {
      p.chart.setData(data);
      return;
    }
    clear(p);
    const host = element("div", "chart");
    p.content.append(host);
    p.signature = signature;
    const size = { width: Math.max(200, p.content.clientWidth - 16), height: Math.max(120, p.content.clientHeight - 60) };
    p.chart = new uPlot({ ...opts, ...size }, data, host);
    p.chart.setSize(chartSize(p));
  }

  // The plot fills the panel body less its legend.
  function chartSize(p) {
    const legend = p.content.querySelector(".u-legend");
    const legendHeight = legend ? legend.offsetHeight : 0;
    return {
      width: Math.max(200, p.content.clientWidth - 16),
      height: Math.max(120, p.content.clientHeight - legendHeight - 12),
    };
  }

  function color(i) {
    return PALETTE[i % PALETTE.length];
  }

  // Grafana's time_series format: a time column, number columns, and
  // optionally a text "metric" column whose values name the series (long
  // format, pivoted here: one series per metric value).
  function timeseries(panel) {
    const cols = panel.columns;
    const t = cols.findIndex((c) => c.type === "time");
    if (t < 0) throw new Error("a timeseries panel needs a time column");
    const metric = cols.findIndex((c, i) => i !== t && c.type === "text");
    const values = cols.map((_, i) => i).filter((i) => i !== t && cols[i].type === "number");
    if (values.length === 0) throw new Error("a timeseries panel needs a number column");
    const seconds = (v) => Date.parse(v) / 1000;
    const times = [...new Set(panel.rows.map((r) => seconds(r[t])))].sort((a, b) => a - b);
    const at = new Map(times.map((x, i) => [x, i]));
    const series = new Map(); // name → values aligned with times
    for (const row of panel.rows) {
      for (const v of values) {
        const name = metric < 0 ? cols[v].name
          : values.length === 1 ? String(row[metric]) : `${row[metric]} ${cols[v].name}`;
        if (!series.has(name)) series.set(name, new Array(times.length).fill(null));
        series.get(name)[at.get(seconds(row[t]))] = row[v];
      }
    }
    const names = metric < 0 ? [...series.keys()] : [...series.keys()].sort();
    return {
      kind: "timeseries",
      opts: {
        series: [{}, ...names.map((name, i) => ({
          label: name, stroke: color(i), width: 1.5, value: (u, v) => formatNumber(v),
        }))],
        axes: [{}, { size: 56, values: (u, ticks) => ticks.map(formatNumber) }],
        scales: { x: { time: true } },
      },
      data: [times, ...names.map((n) => series.get(n))],
    };
  }

  // A bar per row: the first text column labels it, the first number column
  // is its height. One series per bar, so each has its colour and legend.
  function bars(panel) {
    const cols = panel.columns;
    const label = cols.findIndex((c) => c.type === "text");
    const value = cols.findIndex((c) => c.type === "number");
    if (label < 0 || value < 0) throw new Error("a bar chart needs a text and a number column");
    const labels = panel.rows.map((r) => String(r[label]));
    const xs = labels.map((_, i) => i);
    const barPaths = uPlot.paths.bars({ size: [0.6, 120] });
    return {
      kind: "barchart",
      opts: {
        series: [
          { label: cols[label].name, value: (u, i) => (i == null ? "" : labels[i] ?? "") },
          ...labels.map((name, i) => ({
            label: name, stroke: CLASS_COLORS[name] || color(i), fill: CLASS_COLORS[name] || color(i),
            paths: barPaths, points: { show: false }, value: (u, v) => formatNumber(v),
          })),
        ],
        scales: {
          x: { time: false, range: () => [-0.5, labels.length - 0.5] },
          y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
        },
        axes: [
          { splits: () => xs, values: (u, ticks) => ticks.map((i) => labels[i] ?? "") },
          { size: 56, values: (u, ticks) => ticks.map(formatNumber) },
        ],
      },
      data: [xs, ...panel.rows.map((r, i) => xs.map((x) => (x === i ? r[value] : null)))],
    };
  }

  function drawStat(p, panel) {
    clear(p);
    const row = panel.rows[0];
    const box = element("div", "stats");
    panel.columns.forEach((c, i) => {
      const stat = element("div", "stat");
      const unit = /seconds/.test(c.name) ? " s" : "";
      stat.append(
        element("div", "value", row[i] == null ? "–" : formatCell(c, row[i]) + unit),
        element("div", "label", c.name.replace(/_/g, " ")),
      );
      box.append(stat);
    });
    p.content.append(box);
  }

  function drawTable(p, panel) {
    clear(p);
    const table = element("table");
    const head = element("tr");
    for (const c of panel.columns) head.append(element("th", null, c.name));
    table.append(element("thead"));
    table.tHead.append(head);
    const tbody = element("tbody");
    const severity = panel.columns.findIndex((c) => c.name === "severity");
    for (const row of panel.rows) {
      const tr = element("tr", severity >= 0 && row[severity] ? `sev-${row[severity]}` : null);
      panel.columns.forEach((c, i) => {
        const cls = c.type === "number" ? "num" : c.name === "message" ? "message" : null;
        tr.append(element("td", cls, row[i] == null ? "" : formatCell(c, row[i])));
      });
      tbody.append(tr);
    }
    table.append(tbody);
    p.content.append(table);
  }

  // ---- formatting ---------------------------------------------------------

  function formatCell(column, v) {
    switch (column.type) {
      case "time": return localTime(v);
      case "number": return formatNumber(v);
      case "json": return JSON.stringify(v);
      default: return String(v);
    }
  }

  function formatNumber(v) {
    if (v == null || Number.isNaN(v)) return "–";
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    const digits = Math.abs(v) >= 100 ? 1 : Math.abs(v) >= 1 ? 2 : 4;
    return v.toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  const pad = (n) => String(n).padStart(2, "0");
  function localTime(text) {
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) return String(text);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function shortTime(text) {
    const d = new Date(text);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  if (typeof uPlot !== "function") {
    fail("uPlot did not load");
    showProblem("uPlot did not load (/assets/vendor/uplot/uPlot.iife.min.js)");
    body.dataset.state = "error";
    return;
  }
  load();
})();

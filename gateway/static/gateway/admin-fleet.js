// The admin home's fleet at a glance: polls admin/fleet.json (the numbers /metrics exports) every
// 5 s and draws small charts in SVG. No dependencies; text only through textContent.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  const root = document.getElementById("gw-fleet");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";
  const state = root.querySelector("[data-fleet-state]");
  const chart = (name) => root.querySelector(`[data-chart="${name}"]`);

  function el(tag, attributes, text) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS(SVG, tag.slice(4))
      : document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function bar(value, max) {
    const svg = el("svg:svg", { viewBox: "0 0 100 10", preserveAspectRatio: "none" });
    svg.append(el("svg:rect", { class: "gw-track", x: 0, y: 0, width: 100, height: 10 }));
    const width = max > 0 ? Math.min(100, (100 * value) / max) : 0;
    svg.append(el("svg:rect", { class: "gw-fill", x: 0, y: 0, width: width, height: 10 }));
    return svg;
  }
  function seconds(value) {
    if (value < 60) return `${Math.round(value)} s`;
    if (value < 3600) return `${Math.floor(value / 60)} min`;
    return `${Math.floor(value / 3600)} h`;
  }
  function rows(container, items) {
    const table = el("table", { class: "gw-bars" });
    for (const item of items) table.append(item);
    container.replaceChildren(table);
  }

  function drawSessions(sessions) {
    const entries = Object.entries(sessions);
    const max = Math.max(1, ...entries.map(([, n]) => n));
    rows(chart("sessions"), entries.map(([status, count]) => {
      const row = el("tr", { "data-status": status });
      const cell = el("td", { class: "gw-bar" });
      cell.append(bar(count, max));
      row.append(el("td", { class: "gw-label" }, status.replace("_", " ")), cell, el("td", { class: "gw-n", "data-count": count }, count));
      return row;
    }));
  }

  function drawWorkers(workers) {
    if (!workers.length) {
      chart("workers").replaceChildren(el("p", { class: "gw-quiet" }, "No worker is running."));
      return;
    }
    rows(chart("workers"), workers.map((worker) => {
      const row = el("tr", { "data-status": worker.status, "data-worker": worker.name });
      const cell = el("td", { class: "gw-bar" });
      cell.append(bar(worker.sessions, worker.capacity));
      const age = el("td", { class: "gw-n", title: "since its last heartbeat" }, seconds(worker.heartbeat_age_seconds));
      if (worker.status === "dead" || worker.heartbeat_age_seconds > 60) age.classList.add("gw-stale");
      row.append(
        el("td", { class: "gw-label", title: `${worker.name} (${worker.status})` }, `${worker.name} (${worker.status})`),
        cell,
        el("td", { class: "gw-n", "data-load": `${worker.sessions}/${worker.capacity}` }, `${worker.sessions}/${worker.capacity}`),
        age,
      );
      return row;
    }));
  }

  function drawMessages(series) {
    const names = ["sent", "received", "failed"];
    const length = series.sent.length;
    const max = Math.max(1, ...names.flatMap((name) => series[name]));
    const svg = el("svg:svg", { class: "gw-chart", viewBox: `0 0 ${length - 1} 100`, preserveAspectRatio: "none", role: "img" });
    svg.append(el("svg:line", { class: "gw-axis", x1: 0, y1: 100, x2: length - 1, y2: 100 }));
    const legend = el("div", { class: "gw-legend" });
    for (const name of names) {
      const points = series[name].map((n, i) => `${i},${100 - (96 * n) / max}`).join(" ");
      svg.append(el("svg:polyline", { class: `gw-series-${name}`, points: points }));
      const total = series[name].reduce((a, b) => a + b, 0);
      const last = series[name][length - 1];
      const item = el("span", { class: `gw-series-${name}`, "data-series": name, "data-total": total });
      item.append(`${name} `, el("b", {}, total), ` in the hour, ${last} this minute`);
      legend.append(item);
    }
    svg.setAttribute("aria-label", `messages a minute over the last hour, up to ${max}`);
    chart("messages").replaceChildren(svg, legend);
  }

  function drawWebhooks(webhooks) {
    const backlog = el("div", { class: "gw-big", "data-backlog": webhooks.backlog }, webhooks.backlog);
    const oldest = el("div", { class: "gw-quiet", "data-oldest": webhooks.oldest_pending_seconds },
      webhooks.backlog ? `pending; the oldest for ${seconds(webhooks.oldest_pending_seconds)}` : "pending");
    chart("webhooks").replaceChildren(backlog, oldest);
  }

  function drawCircuits(circuits) {
    const entries = Object.entries(circuits).filter(([, s]) => s !== "closed");
    if (!entries.length) {
      chart("circuits").replaceChildren(el("p", { class: "gw-quiet", "data-circuits": 0 }, "None: every target answers."));
      return;
    }
    rows(chart("circuits"), entries.map(([target, circuitState]) => {
      const row = el("tr", { "data-circuit": target });
      row.append(el("td", { class: "gw-label", title: target }, target), el("td", { class: "gw-stale" }, circuitState.replace("_", " ")));
      return row;
    }));
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const fleet = await response.json();
      drawSessions(fleet.sessions);
      drawWorkers(fleet.workers);
      drawMessages(fleet.messages_per_minute);
      drawWebhooks(fleet.webhooks);
      drawCircuits(fleet.circuits);
      state.dataset.state = "live";
      state.textContent = `live, ${new Date(fleet.at).toLocaleTimeString()}`;
      root.dataset.updated = fleet.at;
    } catch (error) {
      state.dataset.state = "down";
      state.textContent = "unavailable, retrying…";
    }
  }
  refresh();
  setInterval(refresh, 5000);
});

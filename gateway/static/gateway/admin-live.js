// Live admin: relative times that keep ticking, session status badges from /ws/sessions/, and on a
// session's page its live QR, pairing form and timeline from /ws/sessions/<id>/. No dependencies.
// The admin loads media in <head>: everything starts once the page is parsed.
document.addEventListener("DOMContentLoaded", function () {
  "use strict";

  function ago(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (Number.isNaN(seconds)) return "";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }
  function tickTimes() {
    for (const time of document.querySelectorAll("time[data-ago][datetime]")) {
      time.textContent = ago(time.dateTime);
      const stale = Number(time.dataset.staleAfter || 0);
      if (stale) time.classList.toggle("gw-stale", Date.now() - Date.parse(time.dateTime) > stale * 1000);
    }
  }
  tickTimes();
  setInterval(tickTimes, 1000);

  // A WebSocket that reconnects by itself (1 s doubling to 15 s) and shows its state.
  function follow(path, indicator, onMessage) {
    let retry = 1000;
    function connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}${path}`);
      socket.onopen = () => {
        retry = 1000;
        indicator.dataset.state = "live";
        indicator.textContent = "live";
      };
      socket.onmessage = (event) => onMessage(JSON.parse(event.data));
      socket.onclose = () => {
        indicator.dataset.state = "down";
        indicator.textContent = "reconnecting…";
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 15000);
      };
    }
    connect();
  }

  const workerNames = (() => {
    const data = document.getElementById("gw-workers");
    return data ? JSON.parse(data.textContent) : {};
  })();

  // Update every element that shows this session; true when its status changed.
  function showSession(message) {
    const s = message.session;
    let changed = false;
    for (const badge of document.querySelectorAll(`[data-session-status="${s.id}"]`)) {
      if (badge.dataset.status !== s.status) {
        changed = true;
        badge.dataset.status = s.status;
        badge.textContent = s.status;
        badge.classList.add("gw-changed");
        setTimeout(() => badge.classList.remove("gw-changed"), 3000);
      }
    }
    for (const cell of document.querySelectorAll(`[data-session-phone="${s.id}"]`)) {
      cell.textContent = s.phone_number || "-";
    }
    for (const cell of document.querySelectorAll(`[data-session-worker="${s.id}"]`)) {
      cell.textContent = s.worker_id ? workerNames[s.worker_id] || s.worker_id.slice(0, 8) : "-";
    }
    if (changed && message.occurred_at) {
      for (const time of document.querySelectorAll(`[data-session-changed="${s.id}"]`)) {
        time.dateTime = message.occurred_at;
      }
      tickTimes();
    }
    return changed;
  }

  const list = document.querySelector("[data-live-sessions]");
  if (list) {
    follow("/ws/sessions/", list, (message) => {
      if (message.type === "session.status") showSession(message);
    });
  }

  const panel = document.querySelector("[data-live-session]");
  if (panel) {
    const $ = (id) => document.getElementById(id);
    const sessionId = panel.dataset.liveSession;
    let status = panel.dataset.status, expiresAt = 0, pairExpiresAt = 0;
    const pairing = Boolean($("gw-pair-button"));
    setInterval(() => {
      const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
      $("gw-qr-countdown").textContent = left ? `Changes in ${left} s` : "Waiting for the next code…";
      const pairLeft = Math.max(0, Math.round((pairExpiresAt - Date.now()) / 1000));
      if (pairing) $("gw-pair-countdown").textContent = pairExpiresAt ? (pairLeft ? `Valid for ${pairLeft} s` : "Expired") : "";
    }, 1000);

    follow(`/ws/sessions/${sessionId}/`, $("gw-live-session"), (message) => {
      if (message.type === "session.status") {
        const before = status;
        status = message.session.status;
        showSession(message);
        const linking = status === "scan_qr" || status === "pairing" || status === "starting";
        $("gw-linking").hidden = !linking;
        if (before !== status && message.occurred_at) {
          const row = $("gw-timeline").tBodies[0].insertRow(0);
          const when = document.createElement("time");
          when.dateTime = message.occurred_at;
          when.dataset.ago = "";
          row.insertCell().append(when);
          row.insertCell().textContent = before;
          row.insertCell().textContent = status;
          row.insertCell().textContent = message.error ? message.error.code : "";
          tickTimes();
        }
      } else if (message.type === "session.qr") {
        $("gw-qr").src = qrImage(message.qr.code);  // drawn here (gateway/qr-image.js)
        $("gw-qr").dataset.code = message.qr.code;
        $("gw-qr-box").hidden = false;
        expiresAt = Date.parse(message.qr.expires_at) || 0;
      } else if (message.type === "session.pair_code" && pairing) {
        $("gw-pair-code").textContent = message.pair_code.code;
      }
    });

    if (!pairing) return;  // the form is there only for those who may change the session
    $("gw-phone").addEventListener("keydown", (event) => {
      if (event.key === "Enter") {  // inside the admin's form: ask for the code, never save
        event.preventDefault();
        $("gw-pair-button").click();
      }
    });
    $("gw-pair-button").addEventListener("click", async () => {
      $("gw-pair-error").textContent = "";
      const response = await fetch(panel.dataset.pairUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          "X-CSRFToken": document.querySelector("[name=csrfmiddlewaretoken]").value,
        },
        body: JSON.stringify({phone_number: $("gw-phone").value.trim()}),
      });
      const body = await response.json();
      if (!response.ok) {
        $("gw-pair-error").textContent = body.error.message;
        return;
      }
      $("gw-pair-code").textContent = body.code;
      pairExpiresAt = body.expires_at * 1000;
    });
  }
});

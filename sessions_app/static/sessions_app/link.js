// The link page (templates/link/page.html): follows the session over its WebSocket.
(function () {
  const sessionId = document.getElementById("link").dataset.session;
  const token = document.getElementById("link").dataset.token;
  const $ = (id) => document.getElementById(id);
  let expiresAt = 0, pairExpiresAt = 0, mode = "scan", retry = 1000, done = false;

  function show(section) {
    for (const id of ["waiting", "scan", "pair", "linked", "problem"]) $(id).hidden = id !== section;
  }
  function tick() {
    const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
    $("countdown").textContent = expiresAt ? (left ? `This code changes in ${left} s.` : "Getting a new code…") : "";
    const pairLeft = Math.max(0, Math.round((pairExpiresAt - Date.now()) / 1000));
    $("pair-countdown").textContent = pairExpiresAt ? (pairLeft ? `Valid for ${pairLeft} s.` : "Expired: ask for a new code.") : "";
  }
  setInterval(tick, 1000);

  function onStatus(message) {
    const s = message.session;
    if (s.status === "connected") {
      done = true; $("number").textContent = s.phone_number || "your phone"; show("linked");
    } else if (s.status === "failed" || s.status === "stopped") {
      const reason = message.error && message.error.code === "qr_timeout"
        ? "The QR code was not scanned in time." : "Linking is not running.";
      $("problem-text").textContent = reason; show("problem");
    } else if (mode === "scan" && s.status !== "scan_qr") {
      show("waiting");
    }
  }
  function onQr(message) {
    $("qr").src = qrImage(message.qr.code);  // drawn here (gateway/qr-image.js)
    expiresAt = Date.parse(message.qr.expires_at) || 0;
    tick();
    if (mode === "scan" && !done) show("scan");
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/sessions/${sessionId}/?token=${encodeURIComponent(token)}`);
    socket.onopen = () => { retry = 1000; };
    socket.onmessage = (e) => {
      const message = JSON.parse(e.data);
      if (message.type === "session.status") onStatus(message);
      if (message.type === "session.qr") onQr(message);
    };
    socket.onclose = (e) => {
      if (e.code === 4001) {  // the link's token expired (sessions_app.consumers.TOKEN_EXPIRED)
        done = true; $("problem-text").textContent = "This link has expired."; show("problem");
        return;
      }
      if (!done) setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  $("use-phone").onclick = () => { mode = "pair"; show("pair"); };
  $("use-qr").onclick = () => { mode = "scan"; show(expiresAt ? "scan" : "waiting"); };
  $("pair-form").onsubmit = async (e) => {
    e.preventDefault();
    $("pair-error").textContent = "";
    const response = await fetch(`/link/${sessionId}/pair-code?token=${encodeURIComponent(token)}`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({phone_number: $("phone").value.trim()}),
    });
    const body = await response.json();
    if (!response.ok) { $("pair-error").textContent = body.error.message; return; }
    $("code").textContent = body.code; pairExpiresAt = body.expires_at * 1000;
    $("pair-result").hidden = false; tick();
  };
  connect();
})();

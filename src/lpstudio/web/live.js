// lpstudio live mirror: drive the portrait with the webcam over the /live WebSocket.
// Loaded after app.js and uses its globals (app, draw, stopIdle, startIdle, openSource, canvas).
// Protocol (see lpstudio/server/live.py): binary = 4-byte big-endian header length + JSON header + JPEG.
"use strict";

(() => {
  const CAPTURE_MAX_SIDE = 640;     // camera frames are sent at most this wide or high
  const CAPTURE_QUALITY = 0.8;      // JPEG quality of the frames sent
  const RESEND_MS = 2000;           // no result by then: send the newest frame anyway (the server keeps only it)
  const STATS_WINDOW = 30;          // results averaged for the fps and latency figures
  const STATS_EVERY_MS = 250;       // how often the figures are redrawn
  const SMOOTH_VARIANCE = 1e-5;     // "smooth" on: the Kalman observation variance of `lpstudio drive --smooth`
  const CAP_RETRY_MS = 500;         // refused as "too many from this client" on a reconnect: our old socket is
  const CAP_RETRIES = 3;            //   still closing on the server; try again this much later, this many times

  const $ = (id) => document.getElementById(id);
  const button = $("cameraButton");
  const neutralButton = $("neutralButton");
  const selfView = $("selfView");
  const stats = $("liveStats");
  const note = $("liveMessage");
  if (!button || !selfView) return;   // the page was built without the live controls

  const live = {
    on: false, starting: false, stream: null, ws: null, session: null, ready: false,
    nextId: 1, inFlight: null, resendTimer: null, results: [], lastStats: 0, retried: false, capRetries: 0,
    capture: document.createElement("canvas"), encoder: new TextEncoder(), decoder: new TextDecoder(),
  };
  window.lpLive = live;   // for tests and the console

  function say(text, kind = "info") {
    if (!text) { note.hidden = true; note.textContent = ""; delete note.dataset.kind; return; }
    note.hidden = false;
    note.textContent = text;
    note.dataset.kind = kind;
  }

  function cameraProblem(err) {
    const name = (err && err.name) || "";
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
      return "카메라 사용이 거부되었습니다 / Camera access was denied.\n" +
        "→ 주소창의 카메라 아이콘에서 허용한 뒤 다시 누르세요 / allow the camera for this page (address bar) and press 카메라 / camera again.";
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
      return "카메라를 찾을 수 없습니다 / No camera was found.\n→ 카메라를 연결하고 다시 시도하세요 / connect a camera and try again.";
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      return "카메라를 열 수 없습니다 / The camera could not be opened (another app may be using it).";
    }
    return `카메라 오류 / camera error: ${name || "Error"}: ${(err && err.message) || err}`;
  }

  function region() {
    const checked = document.querySelector('input[name="region"]:checked');
    return checked ? checked.value : "all";
  }

  function smooth() {
    const box = $("liveSmooth");
    return box && box.checked ? SMOOTH_VARIANCE : 0;
  }

  function setButton() {
    button.setAttribute("aria-pressed", live.on ? "true" : "false");
    button.classList.toggle("on", live.on);
    button.textContent = live.on ? "📷 카메라 끄기 / camera off" : "📷 카메라 / camera";
    neutralButton.disabled = !live.on;
    selfView.hidden = !live.on;
  }

  // ------------------------------------------------------------------ camera
  async function start() {
    if (live.on || live.starting) return;
    say(null);
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("카메라는 https 또는 localhost 페이지에서만 됩니다 / The camera works only on https or http://localhost pages.", "error");
      return;
    }
    live.starting = true;
    button.setAttribute("aria-busy", "true");
    try {
      live.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" }, audio: false,
      });
    } catch (err) {
      say(cameraProblem(err), "error");
      return;
    } finally {
      live.starting = false;
      button.removeAttribute("aria-busy");
    }
    selfView.srcObject = live.stream;
    try { await selfView.play(); } catch (_) { /* autoplay of a muted video is allowed; frames still come */ }
    stopIdle();
    if (app.clip) { app.clip.abort.abort(); app.clip = null; }
    app.token += 1;            // any fade or preview in progress stops drawing
    live.on = true;
    live.results = [];
    live.retried = false;
    live.capRetries = 0;
    canvas.dataset.state = "live";
    setButton();
    say("연결 중 / connecting…");
    connect();
  }

  function stop({ redraw = true } = {}) {
    if (!live.on) return;
    live.on = false;
    clearTimeout(live.resendTimer);
    live.inFlight = null;
    if (live.ws) { live.ws.onclose = null; live.ws.close(1000, "camera off"); live.ws = null; }
    if (live.stream) { for (const track of live.stream.getTracks()) track.stop(); live.stream = null; }
    selfView.srcObject = null;
    setButton();
    say(null);
    if (redraw) {
      app.token += 1;
      draw(app.base);
      canvas.dataset.state = "neutral";
      startIdle();
    }
  }

  // ------------------------------------------------------------------ socket
  // With an API key the socket URL carries a single-use ticket from POST /live/ticket (a browser cannot set
  // the X-API-Key header on a WebSocket, and the key itself never goes into a URL).
  async function ticketQuery() {
    if (!API_KEY) return "";
    const res = await apiFetch("/live/ticket", { method: "POST" });
    if (!res.ok) throw await errorFrom(res);
    const body = await res.json();
    return `&${body.param || "ticket"}=${encodeURIComponent(body.ticket)}`;
  }

  async function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    live.session = app.session;
    live.ready = false;
    live.inFlight = null;
    let ticket = "";
    try {
      ticket = await ticketQuery();
    } catch (err) {
      stop();
      say(`카메라 연결 실패 / live connection refused: ${err.message || err}`, "error");
      return;
    }
    if (!live.on || live.ws) return;   // turned off (or connected again) while the ticket was on its way
    const url = `${proto}//${location.host}/live?session=${encodeURIComponent(live.session)}` +
      `&region=${region()}&smooth=${smooth()}${ticket}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => { if (ws === live.ws) onMessage(ev.data); };
    ws.onclose = (ev) => { if (ws === live.ws) onClose(ev); };
    live.ws = ws;
  }

  async function onClose(ev) {
    live.ws = null;
    if (!live.on) return;
    if (ev.code === 1008 && /no longer on the server/.test(ev.reason) && !live.retried) {
      live.retried = true;   // the server dropped our session: re-send the photo and reconnect once
      try { await openSource(app.sourceFile, { keepView: true }); connect(); return; } catch (_) { /* below */ }
    }
    if (ev.code === 1013 && /from this client/.test(ev.reason) && live.capRetries < CAP_RETRIES) {
      live.capRetries += 1;
      setTimeout(() => { if (live.on && !live.ws) connect(); }, CAP_RETRY_MS);
      return;
    }
    const reason = ev.reason || (ev.code === 1006 ? "연결이 끊겼습니다 / the connection was lost" : `code ${ev.code}`);
    stop();
    say(`카메라 연결 종료 / live connection closed: ${reason}`, "error");
  }

  function onMessage(data) {
    if (typeof data === "string") {
      const msg = JSON.parse(data);
      if (msg.type === "ready") {
        live.ready = true;
        say(msg.crop ? null : "얼굴을 화면 가운데에 / keep your face in the middle of the picture");
        sendFrame();
      } else if (msg.type === "error") {
        say(msg.error + (msg.hint ? "\n→ " + msg.hint : ""), "error");
        if (live.inFlight && msg.id === live.inFlight.id) { live.inFlight = null; sendFrame(); }
      }
      return;
    }
    const view = new DataView(data);
    const n = view.getUint32(0);
    const header = JSON.parse(live.decoder.decode(new Uint8Array(data, 4, n)));
    const jpeg = new Uint8Array(data, 4 + n);
    if (live.inFlight && header.id >= live.inFlight.id) live.inFlight = null;
    onResult(header, jpeg);
    sendFrame();
  }

  async function onResult(header, jpeg) {
    const now = performance.now();
    if (typeof header.t === "number") live.results.push({ at: now, latency: now - header.t, server: header.server_ms });
    if (live.results.length > STATS_WINDOW) live.results.shift();
    if (!header.face) say("얼굴 없음 / no face — 카메라를 보세요 / look at the camera", "warn");
    else if (note.dataset.kind === "warn" || note.dataset.kind === "error") say(null);
    else if (note.textContent.startsWith("연결 중")) say(null);
    if (header.image && jpeg.byteLength) {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      if (live.on) { draw(bitmap); canvas.dataset.state = "live"; }
    }
    showStats(header);
  }

  function showStats(header) {
    const now = performance.now();
    if (now - live.lastStats < STATS_EVERY_MS && live.results.length > 1) return;
    live.lastStats = now;
    const r = live.results;
    if (!r.length) return;
    const latency = r.reduce((s, x) => s + x.latency, 0) / r.length;
    const server = r.reduce((s, x) => s + (x.server || 0), 0) / r.length;
    const span = (r[r.length - 1].at - r[0].at) / 1000;
    const fps = r.length > 1 && span > 0 ? (r.length - 1) / span : 0;
    stats.dataset.latency = String(Math.round(latency));
    stats.dataset.fps = fps.toFixed(2);
    stats.dataset.frames = String((Number(stats.dataset.frames) || 0) + 1);
    stats.textContent = `실시간 / live: ${fps.toFixed(1)} fps · 지연 / latency ${Math.round(latency)} ms ` +
      `(카메라→화면 / camera to screen; 서버 / server ${Math.round(server)} ms)` +
      (header.dropped ? ` · 건너뜀 / skipped ${header.dropped}` : "");
  }

  // Newest frame wins: the next camera frame goes out when the last result came back (or after RESEND_MS).
  function sendFrame() {
    if (!live.on || !live.ws || live.ws.readyState !== WebSocket.OPEN || !live.ready || live.inFlight) return;
    if (app.session !== live.session) {   // a new photo was uploaded: drive it instead
      const old = live.ws;   // connect once the old socket is closed: the server allows one per client
      live.ws = null;
      old.onmessage = null;
      old.onclose = () => { if (live.on && !live.ws) connect(); };
      old.close(1000, "new photo");
      return;
    }
    const w0 = selfView.videoWidth, h0 = selfView.videoHeight;
    if (!w0 || !h0) { live.resendTimer = setTimeout(sendFrame, 50); return; }
    const k = Math.min(1, CAPTURE_MAX_SIDE / Math.max(w0, h0));
    const c = live.capture;
    c.width = Math.round(w0 * k); c.height = Math.round(h0 * k);
    c.getContext("2d").drawImage(selfView, 0, 0, c.width, c.height);
    const id = live.nextId++;
    const t = performance.now();
    live.inFlight = { id, t };
    clearTimeout(live.resendTimer);
    live.resendTimer = setTimeout(() => {
      if (live.inFlight && live.inFlight.id === id) { live.inFlight = null; sendFrame(); }
    }, RESEND_MS);
    c.toBlob(async (blob) => {
      if (!blob || !live.ws || live.ws.readyState !== WebSocket.OPEN) { live.inFlight = null; return; }
      const jpeg = new Uint8Array(await blob.arrayBuffer());
      const head = live.encoder.encode(JSON.stringify({ id, t }));
      const msg = new Uint8Array(4 + head.length + jpeg.length);
      new DataView(msg.buffer).setUint32(0, head.length);
      msg.set(head, 4);
      msg.set(jpeg, 4 + head.length);
      live.ws.send(msg);
    }, "image/jpeg", CAPTURE_QUALITY);
  }

  function control(obj) {
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(obj));
  }

  // ------------------------------------------------------------------ wiring
  button.addEventListener("click", () => (live.on ? stop() : start()));
  neutralButton.addEventListener("click", () => control({ type: "reset" }));
  for (const input of document.querySelectorAll('input[name="region"], #liveSmooth')) {
    input.addEventListener("change", () => control({ type: "settings", region: region(), smooth: smooth() }));
  }
  // A preset, a command or a slider takes the portrait back: the camera turns off first.
  const takeOver = () => { if (live.on) stop({ redraw: false }); };
  $("presets").addEventListener("click", takeOver, true);
  $("commandForm").addEventListener("submit", takeOver, true);
  $("sliders").addEventListener("input", takeOver, true);
  $("reset").addEventListener("click", takeOver, true);
  window.addEventListener("pagehide", () => stop({ redraw: false }));
  setButton();
})();

// lpstudio living-portrait page. No build step: plain modern JavaScript.
"use strict";

const JITTER_FRAMES = 3;        // frames buffered before playback starts
const FADE_MS = 180;            // cross-fade back to the neutral portrait
const PREVIEW_DEBOUNCE_MS = 120;
const BUSY_RETRIES = 6;         // a busy server (429/503) is retried this many times
const BUSY_BASE_MS = 1000;      // first back-off; doubles each time (the server's Retry-After wins if longer)
const BUSY_MAX_MS = 15000;
const VOICE_BUFFER_S = 0.5;     // a speaking clip buffers this much more video before its voice starts
const NO_SPEECH_NOTE = "🔇 이 서버는 말을 못 해요: 말해봐는 음성 합성(eSpeak NG)이 필요해요. 음성 파일은 올릴 수 있어요.\n" +
  "This server cannot speak (eSpeak NG is not installed); audio files still work.";
const SPEECH_UNAVAILABLE = "🔇 이 서버는 말을 못 해요 (음성 합성 eSpeak NG 없음) / this server cannot speak: ";

// An API key given as /#key=... is kept for this tab and sent with every request (never put in URLs).
const API_KEY = (() => {
  const m = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (m) {
    try { sessionStorage.setItem("lpstudio-key", decodeURIComponent(m[1])); } catch (_) { /* private mode */ }
    history.replaceState(null, "", location.pathname + location.search);
    return decodeURIComponent(m[1]);
  }
  try { return sessionStorage.getItem("lpstudio-key"); } catch (_) { return null; }
})();

const $ = (id) => document.getElementById(id);
const canvas = $("portrait");
const ctx = canvas.getContext("2d");

const app = {
  session: null,          // server session id
  sourceFile: null,       // the uploaded File, re-sent if the server dropped the session
  neutral: {},            // neutral parameter values of the current source
  specs: [],              // the 17 parameter specs
  base: null,             // ImageBitmap of the portrait as uploaded (the neutral view)
  current: null,          // what is on the canvas now
  clip: null,             // {abort, token} of the playing clip
  idleFrames: null,       // ImageBitmaps of the idle loop, when rendered
  idleTimer: null,
  token: 0,
  fps: 25,
  maxAudioBytes: 10 * 1024 * 1024,
  speech: true,           // whether the server can speak (GET /health)
};


// ------------------------------------------------------------------ helpers
function showError(err) {
  const box = $("error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = err.message || String(err);
}

function setProgress(done, total, text) {
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progressText").textContent = text;
}

async function errorFrom(res) {
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  const msg = body && body.error ? body.error + (body.hint ? "\n→ " + body.hint : "") : `HTTP ${res.status}`;
  const err = new Error(msg);
  err.status = res.status;
  err.kind = body && body.kind;
  return err;
}

function withKey(options = {}) {
  if (!API_KEY) return options;
  return { ...options, headers: { ...(options.headers || {}), "X-API-Key": API_KEY } };
}

function apiFetch(path, options = {}) { return fetch(path, withKey(options)); }

// Back-off before retrying a busy server: doubling from BUSY_BASE_MS, at least its Retry-After.
function busyDelay(attempt, retryAfter) {
  const server = Math.max(0, parseFloat(retryAfter || "0") * 1000 || 0);
  const own = Math.min(BUSY_MAX_MS, BUSY_BASE_MS * 2 ** attempt);
  return Math.min(BUSY_MAX_MS * 2, Math.max(server, own)) * (0.85 + 0.3 * Math.random());
}

function showBusy(ms) {
  canvas.dataset.busy = "1";
  $("progressText").textContent = `서버가 바빠요, 다시 시도 중 / busy, retrying in ${Math.ceil(ms / 1000)} s`;
}

function clearBusy() { delete canvas.dataset.busy; }

// Calls the API. A busy server (429, or 503 while it restarts) is retried with back-off; if the
// server dropped our session (409), the source is re-sent once and the call retried.
async function api(path, options = {}, retry = true, attempt = 0) {
  const res = await apiFetch(path, options);
  if (res.ok) { clearBusy(); return res; }
  const err = await errorFrom(res);
  if ((res.status === 429 || res.status === 503) && attempt < BUSY_RETRIES) {
    const wait = busyDelay(attempt, res.headers.get("Retry-After"));
    showBusy(wait);
    await sleep(wait);
    if (options.signal && options.signal.aborted) throw new DOMException("aborted", "AbortError");
    return api(path, options, retry, attempt + 1);
  }
  clearBusy();
  if (retry && res.status === 409 && err.kind === "SessionExpired") {
    await openSource(app.sourceFile, { keepView: true });
    const opts = { ...options };
    if (opts.body && typeof opts.body === "string") {
      const body = JSON.parse(opts.body);
      body.session = app.session;
      opts.body = JSON.stringify(body);
    }
    return api(path, opts, false);
  }
  throw err;
}

function postJSON(path, body, extra = {}) {
  if (window.lpFacesBody) body = window.lpFacesBody(path, body);   // faces.js: the chosen face(s)
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), ...extra });
}

async function bitmapFrom(blob) { return await createImageBitmap(blob); }

function b64ToBlob(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type: "image/jpeg" });
}

// A frame is drawn only once fully decoded: the canvas never shows a half-drawn or black image.
function draw(bitmap, alpha = 1) {
  if (!bitmap) return;
  if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas.width = bitmap.width; canvas.height = bitmap.height;
  }
  ctx.globalAlpha = alpha;
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  ctx.globalAlpha = 1;
  if (alpha === 1) app.current = bitmap;
}

// Cross-fade to ``bitmap``; stops (without drawing) as soon as a newer action takes the canvas.
function fadeTo(bitmap, token = app.token) {
  return new Promise((resolve) => {
    const from = app.current;
    if (!from || from === bitmap) { draw(bitmap); resolve(); return; }
    const t0 = performance.now();
    const step = (now) => {
      if (token !== app.token) { resolve(); return; }
      const k = Math.min(1, (now - t0) / FADE_MS);
      if (from) draw(from);
      draw(bitmap, k);
      if (k < 1) requestAnimationFrame(step); else { draw(bitmap); resolve(); }
    };
    requestAnimationFrame(step);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ slow renderers
// Seconds to wait before playing from frame `next` so the clip runs to its end without a stall:
// the `total - have` frames still to come arrive at the render rate measured from `arrivals`
// (ms timestamps), frame i is due (i - next)/fps after the start. 0: start now.
const ETA_MARGIN = 1.15;   // the render rate wobbles: keep a safety margin
function bufferWaitS(next, have, total, fps, arrivals) {
  if (!total || have >= total || arrivals.length < 2) return 0;
  const renderFps = ((arrivals.length - 1) * 1000) / (arrivals[arrivals.length - 1] - arrivals[0]);
  if (!(renderFps > 0) || renderFps >= fps * ETA_MARGIN) return 0;
  return Math.max(0, ((total - have) / renderFps) * ETA_MARGIN - (total - 1 - next) / fps);
}

// ------------------------------------------------------------------ clips
// Reads an NDJSON stream of frames; plays them at the clip's fps after a small jitter buffer.
// A speaking clip (an "audio" object in its start line) plays its voice on the AudioContext's clock and
// its frames follow that clock: frame k is shown when the audio heard is at k / fps.
// On a slow renderer it waits until the rest of the clip will arrive in time (bufferWaitS).
async function playStream(res, token, onStart) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const frames = [], arrivals = [];
  let total = 0, fps = app.fps, done = false, endInfo = null, firstShown = null;
  let audio = null, audioBuffer = null, audioSettled = true;
  let buffer = "";
  let k = 0, origin = null;   // playback position and clock origin (below)
  const t0 = performance.now();

  const readLoop = (async () => {
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (eof) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl); buffer = buffer.slice(nl + 1);
        if (!line.trim()) continue;
        const msg = JSON.parse(line);
        if (msg.type === "start") {
          total = msg.frames; fps = msg.fps; onStart && onStart(msg);   // fps: the rate rendered, played as is
          document.dispatchEvent(new CustomEvent("lpstudio:clip", { detail: msg }));   // keep.js: the clip id
          if (msg.audio) {
            audio = msg.audio; audioSettled = false;
            decodeVoice(msg.audio).then((b) => { audioBuffer = b; }, (err) => {
              if (token === app.token) $("voiceNote").textContent = `소리를 재생할 수 없어요 / cannot play the voice: ${err.message}`;
            }).finally(() => { audioSettled = true; });
          }
        }
        else if (msg.type === "frame") { frames.push(await bitmapFrom(b64ToBlob(msg.jpeg))); arrivals.push(performance.now()); }
        else if (msg.type === "end") { endInfo = msg; }
        else if (msg.type === "error") { const e = new Error(msg.error + (msg.hint ? "\n→ " + msg.hint : "")); e.fromServer = true; throw e; }
        const wait = origin === null ? bufferWaitS(k, frames.length, total, fps, arrivals) : 0;
        const eta = wait > 0 ? ` · 약 ${Math.ceil(wait)}초 후 재생 / plays in about ${Math.ceil(wait)} s` : "";
        if (token === app.token) setProgress(frames.length, total, `렌더링 / rendering ${frames.length}/${total}${eta}`);
      }
    }
    done = true;
  })();
  readLoop.catch(() => { done = true; });
  const interrupted = () => new Error("연결이 끊겼어요 / the stream was interrupted; the portrait is back");

  // Playback: frame k at origin + k/fps on one clock (the voice's when it plays, else the page's);
  // on underrun the voice stops and both restart together from frame k once frames are back.
  let onAudioClock = false, skew = 0, dropped = 0;
  const now = () => onAudioClock
    ? (voice.ctx.currentTime - (voice.ctx.outputLatency || voice.ctx.baseLatency || 0) - origin) * 1000
    : performance.now() - origin;
  const need = () => Math.min(total || JITTER_FRAMES, audio ? Math.max(JITTER_FRAMES, Math.ceil(VOICE_BUFFER_S * fps)) : JITTER_FRAMES);
  try {
    while (token === app.token) {
      if (origin === null) {
        if (k < frames.length && (done || (frames.length >= need() && bufferWaitS(k, frames.length, total, fps, arrivals) === 0)) && audioSettled) {
          onAudioClock = !!(audioBuffer && voice.ctx && voice.ctx.state === "running");
          if (audioBuffer && !onAudioClock) $("voiceNote").textContent = "소리를 켜려면 페이지를 한 번 누르고 다시 해 보세요 / " +
            "the browser kept the page silent: click the page, then try again";
          origin = onAudioClock ? startVoice(audioBuffer, k / fps, token) : performance.now() - (k * 1000) / fps;
          if (audio) document.body.dataset.avClock = onAudioClock ? "audio" : "page";
        } else {
          if (done && k >= frames.length) break;
          await sleep(10);
          continue;
        }
      }
      if (k < frames.length) {
        const due = (k * 1000) / fps;
        const t = now();
        if (t < due) { await sleep(Math.min(due - t, 15)); continue; }
        if (onAudioClock && k + 1 < frames.length && t >= due + 1000 / fps) {
          frames[k].close(); frames[k] = null; k += 1; dropped += 1;   // late: the voice does not wait, skip to it
          continue;
        }
        draw(frames[k]);
        if (onAudioClock) skew = Math.max(skew, now() - due);
        if (k > 0 && frames[k - 1]) { frames[k - 1].close(); frames[k - 1] = null; }   // bounded page memory
        if (firstShown === null) firstShown = performance.now() - t0;
        if (window.lpAlive) lpAlive.frameShown(k, fps, total);   // data-state "playing", played duration
        k += 1;
        continue;
      }
      if (done) break;
      if (k < total) { stopVoice(token); origin = null; }   // underrun: wait for more frames
      await sleep(10);
    }
  } finally {
    stopVoice(token);
    if (audio) {
      document.body.dataset.avSkewMs = String(Math.round(skew));
      document.body.dataset.framesDropped = String(dropped);
    }
  }
  try { await readLoop; }   // surfaces stream errors
  catch (err) { if (err.name === "AbortError" || err.fromServer) throw err; throw interrupted(); }
  if (!endInfo && token === app.token) throw interrupted();   // the server or network dropped the stream
  return { endInfo, firstShown, frames };
}

// Plays one clip: ``body`` for /generate, or ``send(signal)`` for another request (an audio upload).
async function runClip(body, label, send = null) {
  audioContext();   // created/resumed inside the click, so the browser lets the page play a voice
  stopIdle();
  stopVoice();
  if (app.clip) app.clip.abort.abort();
  const token = ++app.token;
  const abort = new AbortController();
  app.clip = { abort, token };
  showError(null);
  $("voiceNote").textContent = app.speech ? "" : NO_SPEECH_NOTE;
  canvas.dataset.state = "waiting";   // "playing" once its first frame is on screen (alive.js)
  if (window.lpAlive) lpAlive.clipRequested(label);
  $("stats").textContent = "";
  setProgress(0, 1, `${label} …`);
  try {
    const res = send ? await send(abort.signal)
      : await postJSON("/generate", { session: app.session, idle: $("idle").checked, ...body }, { signal: abort.signal });
    const { endInfo, firstShown } = await playStream(res, token, (msg) => window.lpAlive && lpAlive.clipStarted(msg));
    if (token !== app.token) return;
    if (endInfo) {
      $("stats").textContent = clipStats(label, endInfo, firstShown);
      if (window.lpAlive) lpAlive.clipEnded(endInfo);
    }
    setProgress(1, 1, "완료 / done");
    await fadeTo(app.base, token);
    if (token === app.token) canvas.dataset.state = "neutral";
  } catch (err) {
    stopVoice(token);
    if (err.name !== "AbortError" && token === app.token) {
      if (err.kind === "SpeechUnavailableError") err.message = SPEECH_UNAVAILABLE + err.message;
      showError(err);
      setProgress(0, 1, "오류 / error");
      await fadeTo(app.base, token);
      if (token === app.token) canvas.dataset.state = "neutral";
    }
  } finally {
    if (token === app.token) { app.clip = null; startIdle(); }
  }
}

// One line after a clip: the wait the user saw (click -> first frame shown) and how it was made.
// A cached replay renders nothing, so it shows no render rate (its "fps" would be the network's).
function clipStats(label, endInfo, firstShown) {
  const wait = `첫 프레임까지 / first frame after ${Math.round(firstShown ?? 0)} ms`;
  $("stats").dataset.serverFirstFrameMs = String(endInfo.first_frame_ms ?? "");
  if (endInfo.cached) return `${label}: ${wait} · 캐시에서 재생 / replayed from cache (no render)`;
  const fps = endInfo.render_fps ? `${Number(endInfo.render_fps).toFixed(1)} fps` : "–";
  return `${label}: ${wait} · 렌더 / render ${fps}`;
}

// ------------------------------------------------------------------ idle loop
function stopIdle() {
  if (window.lpAlive) lpAlive.stopIdle();
  if (app.idleTimer) { clearTimeout(app.idleTimer); app.idleTimer = null; }
}

async function startIdle() {
  stopIdle();
  if (!app.clip && app.session && window.lpAlive && lpAlive.startIdle()) return;   // endless idle + gaze (alive.js)
  if (!$("idle").checked || app.clip || !app.session) return;
  if (!app.idleFrames) {
    const token = app.token;
    try {
      const res = await postJSON("/generate", { session: app.session, idle_loop: true });
      const frames = [];
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let complete = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buffer.slice(0, nl)); buffer = buffer.slice(nl + 1);
          if (msg.type === "frame") frames.push(await bitmapFrom(b64ToBlob(msg.jpeg)));
          if (msg.type === "start") app.fps = msg.fps;
          if (msg.type === "end") complete = true;
        }
      }
      if (token !== app.token || !complete) return;   // a cut-off loop is not played: the portrait stays
      app.idleFrames = frames;
    } catch (err) { return; }   // idle is optional: the still portrait stays
  }
  let k = 0;
  const tick = () => {
    if (!$("idle").checked || app.clip || !app.idleFrames || !app.idleFrames.length) { app.idleTimer = null; return; }
    draw(app.idleFrames[k % app.idleFrames.length]);
    k += 1;
    app.idleTimer = setTimeout(tick, 1000 / app.fps);
  };
  tick();
}

// ------------------------------------------------------------------ sources
async function openSource(file, { keepView = false } = {}) {
  let res;
  if (file) {
    const form = new FormData();
    form.append("file", file, file.name);
    if (app.session) form.append("replaces", app.session);   // the old photo's background work stops
    const path = window.lpAdvanced ? window.lpAdvanced.prepare(form) : "/source-image";   // advanced.js: crop
    res = await api(path, { method: "POST", body: form }, false);
  } else {
    res = await postJSON("/session", {});
  }
  const info = await res.json();
  app.session = info.session;
  app.sourceFile = file || null;
  app.neutral = info.neutral;
  app.idleFrames = null;
  if (window.lpAlive) lpAlive.newSource(app.session);
  if (window.lpFacesOpened) window.lpFacesOpened(info);   // faces.js: outline the faces
  if (!keepView) {
    const img = await api(`/source-image?session=${encodeURIComponent(app.session)}`, {}, false);
    app.base = await bitmapFrom(await img.blob());
    draw(app.base);
    canvas.dataset.state = "neutral";
    resetSliders(false);
  }
  document.dispatchEvent(new CustomEvent("lpstudio:source", { detail: { info, keepView } }));   // keep.js
  return info;
}

async function upload(file) {
  if (!file) return;
  stopIdle();
  stopVoice();
  if (app.clip) { app.clip.abort.abort(); app.clip = null; }
  app.token += 1;
  showError(null);
  $("stats").textContent = "";   // numbers of the previous photo's preview or clip
  setProgress(0, 1, `${file.name} 분석 중 / analysing…`);
  try {
    const info = await openSource(file);
    setProgress(1, 1, `${info.name}: ${info.faces.length || 1} 얼굴 / face(s)`);
    startIdle();
  } catch (err) {
    showError(err);   // the previous portrait and session stay as they were
    setProgress(0, 1, "오류 / error");
  }
}

// ------------------------------------------------------------------ sliders
let previewTimer = null, previewBusy = false, previewAgain = false;

function sliderValues() {
  const out = {};
  for (const spec of app.specs) out[spec.name] = parseFloat($(`p-${spec.name}`).value);
  return out;
}

function isNeutral(values) {
  return app.specs.every((s) => Math.abs(values[s.name] - neutralOf(s)) < 1e-9);
}

function neutralOf(spec) {
  const v = app.neutral[spec.name];
  return v === null || v === undefined ? (spec.neutral ?? (spec.name === "eye_ratio" ? 0.35 : 0)) : v;
}

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, PREVIEW_DEBOUNCE_MS);
}

async function preview() {
  if (previewBusy) { previewAgain = true; return; }
  const values = sliderValues();
  stopIdle();
  stopVoice();
  if (app.clip) { app.clip.abort.abort(); app.clip = null; }
  const token = ++app.token;
  if (isNeutral(values)) {
    draw(app.base); canvas.dataset.state = "neutral";
    setProgress(0, 1, "준비됨 / ready"); $("stats").textContent = "";
    startIdle();
    return;
  }
  previewBusy = true;
  setProgress(0, 1, "미리보기 렌더링 중 / rendering the preview…");
  const t0 = performance.now();
  try {
    const changed = {};
    for (const s of app.specs) if (Math.abs(values[s.name] - neutralOf(s)) > 1e-9) changed[s.name] = values[s.name];
    const res = await postJSON("/render", { session: app.session, params: changed });
    const bmp = await bitmapFrom(await res.blob());
    if (token === app.token) {
      draw(bmp);
      canvas.dataset.state = "preview";
      setProgress(1, 1, "미리보기 / preview");
      $("stats").textContent = `미리보기 / preview ${Math.round(performance.now() - t0)} ms`;
    }
    showError(null);
  } catch (err) { showError(err); if (token === app.token) setProgress(0, 1, "오류 / error"); }
  finally {
    previewBusy = false;
    if (previewAgain) { previewAgain = false; preview(); }
  }
}

function resetSliders(redraw = true) {
  for (const spec of app.specs) {
    const input = $(`p-${spec.name}`);
    if (!input) continue;
    input.value = neutralOf(spec);
    $(`o-${spec.name}`).value = Number(input.value).toFixed(2);
  }
  if (redraw && app.base) {
    app.token += 1; draw(app.base); canvas.dataset.state = "neutral";
    setProgress(0, 1, "준비됨 / ready"); $("stats").textContent = "";
    startIdle();
  }
}

function buildSliders(specs) {
  app.specs = specs;
  const box = $("sliders");
  box.innerHTML = "";
  for (const spec of specs) {
    const row = document.createElement("div");
    row.className = "slider";
    // A power-of-ten step puts the range ends and the neutral value exactly on the slider's grid.
    const step = Math.pow(10, Math.floor(Math.log10((spec.max - spec.min) / 200)));
    row.innerHTML = `<label for="p-${spec.name}" title="${spec.unit}">${spec.label}<br><code>${spec.name}</code></label>` +
      `<input id="p-${spec.name}" type="range" min="${spec.min}" max="${spec.max}" step="${step}" value="${neutralOf(spec)}">` +
      `<output id="o-${spec.name}" for="p-${spec.name}">${Number(neutralOf(spec)).toFixed(2)}</output>`;
    box.appendChild(row);
    const input = row.querySelector("input");
    input.addEventListener("input", () => { $(`o-${spec.name}`).value = Number(input.value).toFixed(2); schedulePreview(); });
  }
}

function buildPresets(presets) {
  const box = $("presets");
  box.innerHTML = "";
  for (const p of presets.filter((x) => x.button)) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "preset";
    b.dataset.preset = p.name;
    b.innerHTML = `${p.emoji} ${p.label}<span class="en">${p.en[0]}</span>`;
    b.setAttribute("aria-label", `${p.label} (${p.en[0]})`);
    b.addEventListener("click", () => runClip({ preset: p.name }, `${p.emoji} ${p.label}`));
    box.appendChild(b);
  }
}

// ------------------------------------------------------------------ start-up
async function init() {
  // 1. The portrait at once: the original photo, never a black box.
  apiFetch("/source-image").then((r) => r.ok ? r.blob() : null).then(async (blob) => {
    if (blob && !app.base) { const b = await bitmapFrom(blob); if (!app.base) draw(b); }
  }).catch(() => {});

  const [health, presets, specs] = await Promise.all([
    apiFetch("/health").then((r) => r.json()),
    api("/expressions").then((r) => r.json()),
    api("/params").then((r) => r.json()),
  ]);
  app.fps = health.fps;
  app.speech = health.speech !== false;
  if (health.max_audio_upload_mb) app.maxAudioBytes = health.max_audio_upload_mb * 1024 * 1024;
  $("idle").checked = health.idle_default;
  if (window.lpAlive) lpAlive.health(health);
  const backend = health.backend_dtype ? `${health.backend} ${health.backend_dtype}` : health.backend;
  $("health").textContent = `모델 / model: ${health.device} · ${health.dtype} · 백엔드 / backend ${backend}`;
  buildPresets(presets);
  if (!app.speech) {
    const talk = document.querySelector('button.preset[data-preset="talk"]');
    if (talk) { talk.classList.add("no-voice"); talk.title = "음성 합성(eSpeak NG)이 설치되지 않았어요 / eSpeak NG is not installed"; }
    $("voiceNote").textContent = NO_SPEECH_NOTE;
  }
  buildSliders(specs);
  try {
    await openSource(null);
    setProgress(0, 1, "준비됨 / ready");
    startIdle();
  } catch (err) { showError(err); }

  $("commandForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("command").value.trim();
    if (text) runClip({ command: text }, `“${text}”`);
  });
  $("reset").addEventListener("click", () => resetSliders(true));
  $("idle").addEventListener("change", () => { if ($("idle").checked) startIdle(); else { stopIdle(); if (!app.clip) { draw(app.base); startIdle(); } } });
  $("uploadButton").addEventListener("click", () => $("upload").click());
  applyMute();
  $("muteButton").addEventListener("click", toggleMute);
  $("audioButton").addEventListener("click", () => $("audioUpload").click());
  $("audioUpload").addEventListener("change", () => { const f = $("audioUpload").files[0]; $("audioUpload").value = ""; sayAudioFile(f); });
  $("upload").addEventListener("change", () => upload($("upload").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("dragging"); $("dropHint").hidden = false; });
  drop.addEventListener("dragleave", () => { drop.classList.remove("dragging"); $("dropHint").hidden = true; });
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault(); drop.classList.remove("dragging"); $("dropHint").hidden = true;
    if (ev.dataTransfer.files.length) upload(ev.dataTransfer.files[0]);
  });
}

init();

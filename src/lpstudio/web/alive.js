// lpstudio: the portrait alive at every moment (issue 22, page side). Loaded BEFORE app.js; every use of
// app.js's globals (app, canvas, draw, fadeTo, apiFetch, withKey, API_KEY, b64ToBlob, setProgress, openSource,
// startIdle, stopVoice) happens at call time.
//
// * Endless idle: the photo's idle segments (GET /idle, /idle/segment) played on an endless seeded schedule
//   (the server's rules, mirrored below), the base pose held between them; nothing is rendered for it again.
// * Gaze: the gaze atlas (GET /gaze) cross-faded bilinearly on the canvas to look at the pointer, with
//   saccades (quick jumps, short fixations) and a return to the viewer; no request per pointer move.
// * Clips: data-state waiting / playing / neutral, a cancel button, the truth about the wait, played duration.
// * pagehide: the server is told the page is gone (POST /session/close).
// Documented in docs/ALIVE_PAGE.md.
"use strict";

window.lpAlive = (() => {
  // --- polling (the server cancels background work of a page silent for 20 s: ServiceLimits.page_gone_s)
  const POLL_MS = 3000;               // /idle and /gaze are asked this often until every piece is here,
  const POLL_FAST_MS = 1000;          //   or this often while the server reports progress (pieces arriving)
  const UNSUPPORTED = new Set([404, 405]);   // a server without /idle: app.js's single idle clip is used
  // --- the idle schedule: mirrors lpstudio/expressions/idle_segments.py (idle_schedule, Mulberry32)
  const BLINK_INTERVAL_S = [2.0, 6.0];       // BLINK_INTERVAL_S: blink start to blink start, uniform
  const DOUBLE_BLINK_PROBABILITY = 0.15;     // DOUBLE_BLINK_PROBABILITY
  const MOTION_MARGIN_S = 0.15;              // MOTION_MARGIN_S: base pose held around a motion
  const FIRST_BLINK_MIN_S = 0.5;             // the first blink comes between this and BLINK_INTERVAL_S[0]
  const MOTION_WEIGHTS = [                   // MOTION_WEIGHTS, in the server's order (the draw depends on it)
    ["still", 2.0], ["glance_left", 1.5], ["glance_right", 1.5], ["glance_up", 1.0],
    ["breath", 1.0], ["head_tilt", 0.8], ["look_away", 0.8],
  ];
  const MULBERRY_INCREMENT = 0x6d2b79f5;     // Mulberry32's additive constant
  const TWO_POW_32 = 4294967296;
  const LATE_START_S = 0.25;   // a segment more than this late (gaze held the canvas) is skipped, not cut in
  const PREDECODE_S = 1.0;     // a segment's JPEGs are decoded this long before it plays, and freed after
  const LOG_MAX = 400;         // segments remembered in lpAlive.log (tests, console)
  // --- gaze (grid units: one atlas cell = 1)
  const FIXATION_MS = [150, 400];        // a fixation lasts this long before the next saccade may start
  const SACCADE_MIN_CELLS = 0.15;        // smaller target moves are ignored (the eyes stay fixated)
  const SACCADE_BASE_MS = 25;            // a saccade: a fixed part plus a part growing with its amplitude
  const SACCADE_MS_PER_CELL = 30;
  const RETURN_AFTER_MS = 2500;          // no pointer movement for this long: look back at the viewer
  const CENTRE_EPS = 1e-3;
  // --- clips
  const WAIT_TICK_MS = 500;              // the "waiting for the first frame" text is refreshed this often
  const SETTLE_MS = 180;                 // a clip asked while the eyes are away: back to the base pose this fast

  const $ = (id) => document.getElementById(id);
  const S = {
    gen: 0, session: null, supported: null, reopened: false, pollTimer: null, polling: false,
    info: null, segs: new Map(), loading: new Set(), atlas: null, atlasLoading: false,
    running: false, raf: 0, offset: 0, since: 0, lastKey: null,
    seed: null, durations: null, next: null, queue: [], current: null, log: [],
    gaze: { enabled: true, u: 0, v: 0, sacc: null, fixUntil: 0, lastMove: -Infinity, px: null },
    clip: { id: null, start: null, askedAt: 0, firstAt: null, lastAt: null, shown: 0, fps: 0, label: "" },
    waitTimer: null,
  };

  // ---------------------------------------------------------------- seeded schedule (endless)
  function mulberry32(seed) {
    let state = seed >>> 0;
    return () => {
      state = (state + MULBERRY_INCREMENT) >>> 0;
      let z = state;
      z = Math.imul(z ^ (z >>> 15), z | 1) >>> 0;
      z = (z ^ ((z + (Math.imul(z ^ (z >>> 7), z | 61) >>> 0)) >>> 0)) >>> 0;
      return ((z ^ (z >>> 14)) >>> 0) / TWO_POW_32;
    };
  }

  // Yields {segment, start_s} for ever: a blink event every 2-6 s (sometimes double), one other segment in
  // each gap that fits with margins, never the previous gap's; ``durations``: seconds per segment id.
  function* schedule(seed, durations) {
    const rng = mulberry32(seed);
    const uniform = (lo, hi) => lo + (hi - lo) * rng();
    let t = uniform(FIRST_BLINK_MIN_S, BLINK_INTERVAL_S[0]);
    let last = null;
    for (;;) {
      const double = "double_blink" in durations && rng() < DOUBLE_BLINK_PROBABILITY;
      const blink = double ? "double_blink" : "blink";
      yield { segment: blink, start_s: t };
      const blinkEnd = t + durations[blink];
      const tNext = t + uniform(BLINK_INTERVAL_S[0], BLINK_INTERVAL_S[1]);
      const room = tNext - blinkEnd - 2 * MOTION_MARGIN_S;
      const fits = MOTION_WEIGHTS.filter(([m]) => m in durations && m !== last && durations[m] <= room);
      if (fits.length) {
        let pick = rng() * fits.reduce((s, [, w]) => s + w, 0);
        let motion = fits[fits.length - 1][0];
        for (const [m, w] of fits) { pick -= w; if (pick < 0) { motion = m; break; } }
        const slack = room - durations[motion];
        yield { segment: motion, start_s: blinkEnd + MOTION_MARGIN_S + uniform(0, slack) };
        last = motion;
      }
      t = tNext;
    }
  }

  // ---------------------------------------------------------------- fetching the pieces
  const keyed = (path, options = {}) => apiFetch(path, options);   // app.js's fetch with the page's API key
  const q = (extra = "") => `session=${encodeURIComponent(S.session)}${extra}`;

  async function bitmaps(list) { return Promise.all(list.map((b64) => createImageBitmap(b64ToBlob(b64)))); }

  function allLoaded() {
    if (!S.info || !S.atlas) return false;
    return S.info.segments.every((s) => S.segs.has(s.id));
  }

  function schedulePoll(ms = POLL_MS) {
    clearTimeout(S.pollTimer);
    S.pollTimer = setTimeout(poll, ms);
  }

  async function poll() {
    const gen = S.gen;
    if (!S.session || S.polling) return;
    S.polling = true;
    try {
      if (!S.info || !S.info.segments.every((s) => S.segs.has(s.id))) await pollIdle(gen);
      if (gen === S.gen && S.supported && !S.atlas) await pollGaze(gen);
    } catch (_) { /* a failed poll is retried at the next one */ }
    finally { S.polling = false; }
    if (gen === S.gen && S.supported !== false && !S.dropped && !allLoaded()) {
      const progress = JSON.stringify([S.info && S.info.progress, S.gazeProgress]);
      schedulePoll(progress !== S.lastProgress ? POLL_FAST_MS : POLL_MS);
      S.lastProgress = progress;
    }
  }

  async function pollIdle(gen) {
    const res = await keyed(`/idle?${q()}`);
    if (gen !== S.gen) return;
    if (UNSUPPORTED.has(res.status) && S.supported === null) {
      S.supported = false;   // an older server: app.js plays its single idle clip
      if (S.running) { stopPlayer(); startIdle(); }
      return;
    }
    if (res.status === 409 && !S.reopened && !app.clip) {
      // the server dropped our session (restart, too many pages): open the photo again, once, as app.js's api() does
      S.reopened = true;
      await openSource(app.sourceFile, { keepView: true });   // calls newSource: polling goes on with the new id
      return;
    }
    if (res.status === 409) { S.dropped = true; return; }   // again: polls stop; the next command re-opens it
    if (!res.ok) return;
    S.supported = true;
    const info = await res.json();
    if (gen !== S.gen) return;
    S.info = info;
    if (info.schedule && S.seed === null) {
      S.seed = info.schedule.seed >>> 0;
      S.durations = Object.fromEntries(info.segments.map((s) => [s.id, s.duration_s]));
      restartSchedule();
    }
    for (const seg of info.segments) {
      if (!seg.ready || S.segs.has(seg.id) || S.loading.has(seg.id)) continue;
      S.loading.add(seg.id);
      try {
        const r = await keyed(`/idle/segment?${q(`&id=${encodeURIComponent(seg.id)}`)}`);
        if (!r.ok || gen !== S.gen) continue;
        const body = await r.json();
        if (gen !== S.gen || !body.frames.length) continue;
        // kept as JPEG blobs (tens of KB each); decoded only around their turn (a decoded frame is w*h*4 bytes)
        S.segs.set(seg.id, { blobs: body.frames.map(b64ToBlob), frames: null, decoding: null, fps: body.fps || info.fps });
      } finally { S.loading.delete(seg.id); }
    }
    markIdle();
  }

  async function pollGaze(gen) {
    const res = await keyed(`/gaze?${q()}`);
    if (!res.ok || gen !== S.gen) return;
    const body = await res.json();
    S.gazeProgress = body.progress;
    if (!body.ready || !body.frames || gen !== S.gen || S.atlasLoading) return;
    S.atlasLoading = true;
    try {
      const rows = await Promise.all(body.frames.map((row) => bitmaps(row)));
      if (gen !== S.gen) { rows.flat().forEach((f) => f.close()); return; }
      S.atlas = { cols: body.cols, rows: body.rows, frames: rows };
      const g = S.gaze;
      g.u = (body.cols - 1) / 2; g.v = (body.rows - 1) / 2;
      markGaze();
    } finally { S.atlasLoading = false; }
  }

  function markIdle() {
    if (S.running && S.segs.size && S.seed !== null && $("idle").checked) canvas.dataset.idle = "endless";
    else delete canvas.dataset.idle;
  }

  function markGaze() {
    if (S.atlas && S.gaze.enabled) canvas.dataset.gaze = "ready"; else delete canvas.dataset.gaze;
  }

  // ---------------------------------------------------------------- the player (idle + gaze)
  const clockNow = (now = performance.now()) => S.offset + (S.running ? (now - S.since) / 1000 : 0);

  function restartSchedule() {
    S.next = schedule(S.seed, S.durations);
    S.queue = []; S.current = null;
    skipTo(clockNow());
  }

  function playLength(item) {
    const seg = S.segs.get(item.segment);
    return seg ? seg.blobs.length / seg.fps : (S.durations[item.segment] || 0);
  }

  function decode(seg) {
    if (!seg || seg.frames || seg.decoding) return;
    const gen = S.gen;
    seg.decoding = Promise.all(seg.blobs.map((b) => createImageBitmap(b))).then((frames) => {
      seg.decoding = null;
      if (gen === S.gen && S.running) seg.frames = frames; else frames.forEach((f) => f.close());
    }, () => { seg.decoding = null; });
  }

  function release(seg) {
    if (seg && seg.frames) { closeAll(seg.frames); seg.frames = null; }
  }

  // Frees decoded frames; app.js's fadeTo never gets a closed one as its starting picture.
  function closeAll(frames) {
    for (const f of frames) { if (app.current === f) app.current = null; f.close(); }
  }

  // The next schedule item that has not started before ``t``.
  function upcoming() {
    if (!S.queue.length && S.next) S.queue.push(S.next.next().value);
    return S.queue[0];
  }

  function skipTo(t) {
    if (!S.next) return;
    while (upcoming() && upcoming().start_s < t) S.queue.shift();
  }

  function idleFrame(t) {
    if (!$("idle").checked || !S.next) return null;
    if (S.current && t >= S.current.start_s + playLength(S.current)) {
      if (upcoming().segment !== S.current.segment) release(S.segs.get(S.current.segment));
      S.current = null;
    }
    const soon = upcoming();
    if (soon && soon.start_s - t < PREDECODE_S) decode(S.segs.get(soon.segment));
    if (!S.current) {
      let item = upcoming();
      while (item && t >= item.start_s + LATE_START_S) { S.queue.shift(); item = upcoming(); }   // missed (gaze)
      if (item && t >= item.start_s) {
        S.queue.shift();
        const seg = S.segs.get(item.segment);
        if (seg && seg.frames) {
          S.current = item;
          S.log.push({ segment: item.segment, start_s: item.start_s, at: performance.now() });
          if (S.log.length > LOG_MAX) S.log.shift();
          canvas.dataset.idleSegment = item.segment;
        }
      }
    }
    if (!S.current) return null;
    const seg = S.segs.get(S.current.segment);
    const k = Math.min(seg.frames.length - 1, Math.floor((t - S.current.start_s) * seg.fps));
    return { key: `${S.current.segment}:${k}`, bitmap: seg.frames[k] };
  }

  function tick(now) {
    if (!S.running) return;
    S.raf = requestAnimationFrame(tick);
    const t = clockNow(now);
    if (gazeEngaged(now)) {
      S.current = null;   // a segment in progress gives way to the eyes
      const key = `gaze:${S.gaze.u.toFixed(3)}:${S.gaze.v.toFixed(3)}`;
      if (key !== S.lastKey) { drawGaze(); S.lastKey = key; }
      return;
    }
    const frame = idleFrame(t);
    if (frame) { if (frame.key !== S.lastKey) { draw(frame.bitmap); S.lastKey = frame.key; } return; }
    if (S.lastKey !== "base" && app.base) { draw(app.base); S.lastKey = "base"; }
  }

  function startPlayer() {
    if (S.running) return;
    S.running = true;
    S.since = performance.now();
    S.lastKey = null;
    skipTo(clockNow());
    markIdle();
    S.raf = requestAnimationFrame(tick);
  }

  function stopPlayer() {
    if (!S.running) return;
    S.offset = clockNow();   // the idle clock pauses: after a clip the schedule goes on, it never restarts
    S.running = false;
    S.current = null;
    for (const seg of S.segs.values()) release(seg);    if (S.lastKey !== null && S.lastKey !== "base") settle();
    if (S.atlas) Object.assign(S.gaze, centre(), { sacc: null, fixUntil: 0 });   // a clip ends at the base pose
    cancelAnimationFrame(S.raf);
    delete canvas.dataset.idle;
    delete canvas.dataset.idleSegment;
  }

  // A clip was asked for while a segment or the gaze was on the canvas: cross-fade to the base pose (the
  // clip's own start) while it waits, unless its first frame or anything else takes the canvas first.
  function settle() {
    const snap = document.createElement("canvas");
    snap.width = canvas.width; snap.height = canvas.height;
    snap.getContext("2d").drawImage(canvas, 0, 0);
    const t0 = performance.now();
    const step = (now) => {
      if (canvas.dataset.state !== "waiting" || S.running || !app.base) return;
      const k = Math.min(1, (now - t0) / SETTLE_MS);
      draw(snap); draw(app.base, k);
      if (k < 1) requestAnimationFrame(step); else draw(app.base);
    };
    requestAnimationFrame(step);
  }

  // ---------------------------------------------------------------- gaze
  const centre = () => ({ u: (S.atlas.cols - 1) / 2, v: (S.atlas.rows - 1) / 2 });

  function gazeEngaged(now) {
    const g = S.gaze;
    if (!S.atlas || !g.enabled) return false;
    updateGaze(now);
    const c = centre();
    return g.sacc !== null || Math.abs(g.u - c.u) > CENTRE_EPS || Math.abs(g.v - c.v) > CENTRE_EPS ||
      now - g.lastMove < RETURN_AFTER_MS;
  }

  // Where the eyes aim: the pointer's position relative to the portrait's centre, each edge of the window
  // mapping to the atlas's outer cells on that side (columns: screen left to right; rows: top to bottom).
  function aim(now) {
    const g = S.gaze, c = centre();
    if (!g.px || now - g.lastMove >= RETURN_AFTER_MS) return c;
    const r = canvas.getBoundingClientRect();
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const dx = g.px.x - cx, dy = g.px.y - cy;
    const nx = Math.max(-1, Math.min(1, dx / Math.max(1, dx < 0 ? cx : innerWidth - cx)));
    const ny = Math.max(-1, Math.min(1, dy / Math.max(1, dy < 0 ? cy : innerHeight - cy)));
    return { u: c.u + nx * c.u, v: c.v + ny * c.v };
  }

  function updateGaze(now) {
    const g = S.gaze;
    if (g.sacc) {
      const k = Math.min(1, (now - g.sacc.t0) / g.sacc.ms);
      const e = 1 - (1 - k) * (1 - k);   // fast start, soft landing
      g.u = g.sacc.u0 + (g.sacc.u1 - g.sacc.u0) * e;
      g.v = g.sacc.v0 + (g.sacc.v1 - g.sacc.v0) * e;
      if (k >= 1) {
        g.u = g.sacc.u1; g.v = g.sacc.v1;   // lands exactly (the centre is the base pose)
        g.sacc = null;
        g.fixUntil = now + FIXATION_MS[0] + Math.random() * (FIXATION_MS[1] - FIXATION_MS[0]);
      }
      return;
    }
    if (now < g.fixUntil) return;
    const a = aim(now);
    const amp = Math.hypot(a.u - g.u, a.v - g.v);
    if (amp < SACCADE_MIN_CELLS && !(amp > 0 && a.u === centre().u && a.v === centre().v)) return;
    if (amp === 0) return;
    g.sacc = { t0: now, ms: SACCADE_BASE_MS + SACCADE_MS_PER_CELL * amp, u0: g.u, v0: g.v, u1: a.u, v1: a.v };
  }

  // Bilinear cross-fade of the 4 atlas frames around (u, v): drawn one over the other with alpha
  // w_k / (w_1 + ... + w_k), which leaves the weighted mean of the four on the canvas.
  function drawGaze() {
    const { cols, rows, frames } = S.atlas;
    const u = Math.max(0, Math.min(cols - 1, S.gaze.u)), v = Math.max(0, Math.min(rows - 1, S.gaze.v));
    const c0 = Math.max(0, Math.min(Math.floor(u), cols - 2)), r0 = Math.max(0, Math.min(Math.floor(v), rows - 2));
    const c1 = Math.min(c0 + 1, cols - 1), r1 = Math.min(r0 + 1, rows - 1);
    const fu = u - c0, fv = v - r0;
    const parts = [
      [frames[r0][c0], (1 - fu) * (1 - fv)], [frames[r0][c1], fu * (1 - fv)],
      [frames[r1][c0], (1 - fu) * fv], [frames[r1][c1], fu * fv],
    ].filter(([, w]) => w > 1e-4).sort((a, b) => b[1] - a[1]);
    let acc = 0;
    for (const [bitmap, w] of parts) {
      acc += w;
      if (acc === w) draw(bitmap); else draw(bitmap, w / acc);
    }
  }

  function onPointer(ev) {
    const g = S.gaze;
    g.px = { x: ev.clientX, y: ev.clientY };
    g.lastMove = performance.now();
  }

  function setGazeEnabled(on) {
    S.gaze.enabled = on;
    if (!on && S.atlas) { const c = centre(); Object.assign(S.gaze, { u: c.u, v: c.v, sacc: null }); S.lastKey = null; }
    markGaze();
  }

  // ---------------------------------------------------------------- clips
  function clipRequested(label) {
    Object.assign(S.clip, { id: null, start: null, askedAt: performance.now(), firstAt: null, lastAt: null, shown: 0, label });
    delete canvas.dataset.playedMs; delete canvas.dataset.clipMs; delete canvas.dataset.clipFps;
    clearInterval(S.waitTimer);
    S.waitTimer = setInterval(waitText, WAIT_TICK_MS);
  }

  function clipStarted(msg) {
    S.clip.id = msg.clip ?? null;
    S.clip.start = msg;
    S.clip.startAt = performance.now();
    S.clip.fps = msg.fps;
    canvas.dataset.clipFps = String(msg.fps);
    waitText();
  }

  function rateNote() {
    const m = S.clip.start;
    if (!m || !m.requested_fps || m.requested_fps <= m.fps) return "";
    return ` · ${m.fps} fps로 렌더 (요청 ${m.requested_fps}) / rendered at ${m.fps} fps (asked ${m.requested_fps}) to start sooner`;
  }

  // Until its first frame arrives, the clip's progress line says what is true: how long it has waited.
  function waitText() {
    if (canvas.dataset.state !== "waiting") { clearInterval(S.waitTimer); return; }
    if ($("progress").value > 0) return;   // frames are arriving: app.js shows the count and the estimate
    const s = Math.round((performance.now() - S.clip.askedAt) / 1000);
    const m = S.clip.start;
    const total = m ? ` · 0/${m.frames}` : "";
    let eta = "";   // the server's own prediction (start line), until the page can estimate from arrivals
    if (m && typeof m.expected_start_s === "number") {
      const left = Math.ceil(Math.max(0, m.expected_start_s - (performance.now() - S.clip.startAt) / 1000));
      eta = ` · 약 ${left}초 후 재생 / plays in about ${left} s`;
    }
    $("progressText").textContent =
      `${S.clip.label} · 첫 프레임 기다리는 중 / waiting for the first frame${total} · ${s} s${eta}${rateNote()}`;
  }

  function frameShown(k, fps, total) {
    const now = performance.now();
    if (S.clip.firstAt === null) { S.clip.firstAt = now; canvas.dataset.state = "playing"; }
    S.clip.lastAt = now;
    S.clip.shown += 1;
    if (total && k === total - 1) {
      // played duration: first frame on screen to the last one's end (each frame held 1/fps)
      canvas.dataset.playedMs = String(Math.round(now - S.clip.firstAt + 1000 / fps));
      canvas.dataset.clipMs = String(Math.round((total * 1000) / fps));
    }
  }

  function clipEnded(endInfo) {
    clearInterval(S.waitTimer);
    if (!canvas.dataset.playedMs) return;
    const played = Number(canvas.dataset.playedMs) / 1000;
    const stats = $("stats");
    // the play rate only when the server lowered it (a cached replay shows no rate: it rendered nothing)
    const m = S.clip.start;
    const lowered = m && m.requested_fps && m.requested_fps > m.fps ? ` @ ${m.fps} fps` : "";
    stats.textContent += ` · 재생 / played ${played.toFixed(1)} s${lowered}` +
      (endInfo && endInfo.cancelled ? " (취소됨 / cancelled)" : "");
  }

  async function cancelClip() {
    const clip = app.clip;
    if (!clip) return;
    const body = { session: app.session, clip: S.clip.id };
    const token = ++app.token;   // the clip's playback and fades stop drawing
    clip.abort.abort();
    app.clip = null;
    stopVoice();
    clearInterval(S.waitTimer);
    if (body.clip !== null) {
      keyed("/generate/cancel", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
        .catch(() => {});   // the aborted stream tells the server too
    }
    setProgress(0, 1, "취소됨 / cancelled");
    await fadeTo(app.base, token);
    if (token === app.token) { canvas.dataset.state = "neutral"; startIdle(); }
  }

  // ---------------------------------------------------------------- sources, page life
  function reset() {
    S.gen += 1;
    clearTimeout(S.pollTimer);
    for (const seg of S.segs.values()) release(seg);
    if (S.atlas) closeAll(S.atlas.frames.flat());
    Object.assign(S, {
      dropped: false, lastProgress: null, gazeProgress: null, info: null, segs: new Map(), loading: new Set(), atlas: null, atlasLoading: false, polling: false,
      seed: null, durations: null, next: null, queue: [], current: null, lastKey: null, offset: 0,
      since: performance.now(),
    });
    delete canvas.dataset.gaze;
    delete canvas.dataset.idle;
  }

  function newSource(session) {
    reset();
    S.session = session;
    if (S.supported !== false) poll();
  }

  function closeSession() {
    if (!S.session) return;
    const body = JSON.stringify({ session: S.session });
    if (API_KEY) {
      // a beacon cannot carry the X-API-Key header: a keepalive fetch outlives the page the same way
      fetch("/session/close", withKey({ method: "POST", keepalive: true, headers: { "Content-Type": "application/json" }, body }))
        .catch(() => {});
    } else if (navigator.sendBeacon) {
      navigator.sendBeacon("/session/close", new Blob([body], { type: "application/json" }));
    }
  }

  function wire() {
    const cancel = $("cancelClip");
    if (cancel) {
      cancel.addEventListener("click", cancelClip);
      const show = () => { cancel.hidden = !["waiting", "playing"].includes(canvas.dataset.state); };
      new MutationObserver(show).observe(canvas, { attributes: true, attributeFilter: ["data-state"] });
      show();
    }
    const toggle = $("gazeToggle");
    if (toggle) toggle.addEventListener("change", () => setGazeEnabled(toggle.checked));
    addEventListener("pointermove", onPointer, { passive: true });
    addEventListener("pointerdown", onPointer, { passive: true });
    addEventListener("pagehide", closeSession);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire); else wire();

  return {
    // app.js hooks
    startIdle() {   // true: idle (and gaze) play from the pieces here; false: app.js's own idle clip
      if (S.supported === false) return false;
      startPlayer();
      return true;
    },
    stopIdle: stopPlayer,
    health(info) {   // GET /health: a server that renders no idle pieces gets app.js's single idle clip
      if (info.idle_pieces === false) S.supported = false;
    },
    newSource, clipRequested, clipStarted, frameShown, clipEnded, cancelClip,
    // for tests and the console
    get log() { return S.log.slice(); },
    get state() { return S; },
    scheduleFor: (seed, durations, n) => { const g = schedule(seed, durations); return Array.from({ length: n }, () => g.next().value); },
  };
})();

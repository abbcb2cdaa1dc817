// lpstudio page: keeping what you make (downloads, use as base, saved expressions) and drag to edit.
// Uses app.js's globals (app, $, api, postJSON, showError, sliderValues, preview, runClip, ...) and two events
// it sends: "lpstudio:clip" (a clip's start line) and "lpstudio:source" (a photo was opened).
"use strict";

(() => {
  const LIBRARY_MAX_BYTES = 32 * 1024;   // the server's limit (expressions/library.py MAX_LIBRARY_JSON_BYTES)
  const NAME_MAX = 32;
  // Drag gains: parameter units per face height dragged (signs follow expressions/presets.py:
  // YAW_SCREEN_RIGHT = -1, PITCH_DOWN = +1, GAZE_SCREEN_RIGHT = +1; eyebrow > 0 raises the brows).
  const YAW_SCREEN_RIGHT = -1, PITCH_DOWN = 1, GAZE_SCREEN_RIGHT = 1;
  const GAIN = {
    mouthOpen: 500,      // lip_variation_three (-90 .. 120) per face height down
    mouthSmile: 5,       // smile per face height sideways
    eyeOpen: 1.5,        // eye_ratio per face height up
    gazeX: 150,          // eyeball_x per face height sideways
    brow: 200,           // eyebrow per face height up
    yaw: 80,             // head_yaw (degrees) per face height sideways
    pitch: 60,           // head_pitch (degrees) per face height down
  };
  const REGION_ORDER = ["mouth", "eyes", "brows", "head"];   // first region holding the point wins
  const REGION_NAMES = { mouth: "입 / mouth", eyes: "눈 / eyes", brows: "눈썹 / brows", head: "고개 / head" };

  const keep = { clip: null, regions: null, library: null, baseValues: null, drag: null };

  // ---------------------------------------------------------------- panel
  function buildPanel() {
    const box = document.createElement("section");
    box.id = "keep";
    box.className = "keep";
    box.setAttribute("aria-label", "보관 / keep");
    box.innerHTML = `
      <h2>보관 · 나만의 표정 / keep · my expressions</h2>
      <div class="row keep-row">
        <button type="button" id="downloadPhoto" data-testid="download-photo">⬇️ 사진 저장 <span class="en">photo (PNG)</span></button>
        <button type="button" id="downloadVideo" data-testid="download-video" disabled>⬇️ 영상 저장 <span class="en">last clip (MP4)</span></button>
      </div>
      <div class="row keep-row">
        <button type="button" id="useAsBase" data-testid="use-as-base">📌 이 표정을 기본으로 <span class="en">use as base</span></button>
        <button type="button" id="resetBase" data-testid="reset-base" disabled>↩️ 사진 표정으로 <span class="en">back to the photo's</span></button>
      </div>
      <form id="saveForm" class="row save-row" autocomplete="off">
        <label for="expressionName" class="visually-hidden">표정 이름 / expression name</label>
        <input id="expressionName" data-testid="expression-name" type="text" maxlength="${NAME_MAX}"
               placeholder="이름 / name: my_smile" pattern="[A-Za-z가-힣][A-Za-z0-9가-힣_\\-]*">
        <button type="submit" data-testid="save-expression">💾 표정 저장 <span class="en">save</span></button>
      </form>
      <div id="library" class="library" role="group" aria-label="저장한 표정 / saved expressions" data-testid="library"></div>
      <div class="row keep-row">
        <button type="button" id="exportLibrary" data-testid="export-library" disabled>📤 내보내기 <span class="en">export (JSON)</span></button>
        <button type="button" id="importLibrary" data-testid="import-library">📥 가져오기 <span class="en">import (JSON)</span></button>
        <input id="libraryFile" data-testid="library-file" type="file" accept="application/json,.json" hidden>
      </div>
      <p class="muted keep-hint">✋ 사진의 입·눈·눈썹·고개를 끌어 보세요 / drag the mouth, eyes, brows or head in the portrait</p>
      <p id="keepNote" class="muted keep-note" role="status" aria-live="polite"></p>`;
    const sliders = $("sliderPanel");   // above the fine controls: downloads are found without scrolling past 17 sliders
    sliders.parentNode.insertBefore(box, sliders);
  }

  function note(text) { $("keepNote").textContent = text || ""; }

  function fail(err) {
    if (err && err.name === "AbortError") return;
    showError(err);
    note("");
  }

  // The file name the server gave (Content-Disposition), else ``fallback``.
  function filenameOf(res, fallback) {
    const cd = res.headers.get("Content-Disposition") || "";
    const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
    if (star) { try { return decodeURIComponent(star[1]); } catch (_) { /* fall through */ } }
    const plain = /filename="([^"]+)"/i.exec(cd);
    return plain ? plain[1] : fallback;
  }

  function saveBlob(blob, name) {
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url; a.download = name; a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function busy(button, work) {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    showError(null);
    try { await work(); } catch (err) { fail(err); } finally { button.removeAttribute("aria-busy"); }
  }

  // ---------------------------------------------------------------- downloads
  async function downloadPhoto(again = true) {
    note("사진을 만드는 중 / rendering the photo…");
    try { await sendPhotoDownload(); }
    catch (err) {   // the server dropped the session: reopen the photo (app.js) and try once more
      if (!again || err.kind !== "SessionExpired") throw err;
      await openSource(app.sourceFile, { keepView: true });
      await sendPhotoDownload();
    }
  }

  async function sendPhotoDownload() {
    const form = new FormData();
    form.append("session", app.session);
    form.append("params", JSON.stringify(sliderValues()));
    const info = keep.regions;   // the server keeps a large photo at display size: it comes again for the full size
    if (app.sourceFile && info && info.photo_width * info.photo_height > canvas.width * canvas.height) {
      form.append("file", app.sourceFile, app.sourceFile.name);
    }
    const res = await api("/download/photo", { method: "POST", body: form }, false);
    const name = filenameOf(res, "portrait-lpstudio.png");
    saveBlob(await res.blob(), name);
    note(`저장됨 / saved ${name}`);
  }

  async function downloadVideo() {
    if (!keep.clip) return;
    note("영상을 만드는 중 / encoding the clip…");
    const q = `session=${encodeURIComponent(app.session)}&clip=${encodeURIComponent(keep.clip)}`;
    const res = await api(`/download/clip?${q}`, {}, false);
    const name = filenameOf(res, "clip-lpstudio.mp4");
    saveBlob(await res.blob(), name);
    note(`저장됨 / saved ${name}`);
  }

  // ---------------------------------------------------------------- base
  async function renderedBase() {
    const res = await postJSON("/render", { session: app.session, params: {} });
    return await createImageBitmap(await res.blob());
  }

  async function applyBase(values) {
    const res = await postJSON("/base", { session: app.session, params: values });
    const info = await res.json();
    keep.baseValues = info.photo ? null : values;
    app.neutral = info.base;          // the sliders' "reset" and the preview's reference are the base now
    app.idleFrames = null;            // idle is rendered again over the new base
    app.base = info.photo
      ? await createImageBitmap(await (await api(`/source-image?session=${encodeURIComponent(app.session)}`, {}, false)).blob())
      : await renderedBase();
    $("resetBase").disabled = info.photo;
    document.body.dataset.keepBase = info.photo ? "photo" : "set";
    return info;
  }

  async function useAsBase() {
    await applyBase(sliderValues());
    resetSliders(true);
    note("이 표정이 기본이에요: 명령과 움직임이 여기서 시작해요 / this is the base now: commands start from it");
  }

  async function resetBase() {
    await applyBase(null);
    resetSliders(true);
    note("사진의 원래 표정으로 / back to the photo's own expression");
  }

  // ---------------------------------------------------------------- library
  function showLibrary(lib) {
    keep.library = lib && lib.expressions && lib.expressions.length ? lib : null;
    const box = $("library");
    box.innerHTML = "";
    for (const item of (lib && lib.expressions) || []) {
      const chip = document.createElement("span");
      chip.className = "saved";
      const play = document.createElement("button");
      play.type = "button";
      play.className = "saved-play";
      play.dataset.expression = item.name;
      play.textContent = `▶ ${item.name}`;
      play.title = `"${item.name} 하고 윙크"처럼 명령에 쓸 수 있어요 / use it in commands: "${item.name} then wink"`;
      play.addEventListener("click", () => runClip({ command: item.name }, item.name));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "saved-delete";
      del.textContent = "×";
      del.setAttribute("aria-label", `${item.name} 지우기 / delete`);
      del.addEventListener("click", () => busy(del, async () => {
        showLibrary(await (await postJSON("/library/delete", { session: app.session, name: item.name })).json());
      }));
      chip.append(play, del);
      box.appendChild(chip);
    }
    $("exportLibrary").disabled = !keep.library;
    document.body.dataset.keepLibrary = String(((lib && lib.expressions) || []).length);
  }

  async function saveExpression() {
    const name = $("expressionName").value.trim();
    if (!name) { note("이름을 적어 주세요 / type a name first (e.g. my_smile)"); $("expressionName").focus(); return; }
    const res = await postJSON("/library", { session: app.session, name, params: sliderValues() });
    const lib = await res.json();
    showLibrary(lib);
    $("expressionName").value = "";
    note(`저장됨 / saved "${lib.saved}": 명령에 써 보세요 / try "${lib.saved} 하고 윙크" or "${lib.saved} then nod"`);
  }

  async function exportLibrary() {
    const res = await api(`/library/export?session=${encodeURIComponent(app.session)}`, {}, false);
    saveBlob(await res.blob(), filenameOf(res, "lpstudio-expressions.json"));
    note("내보냄 / exported");
  }

  async function importLibrary(file) {
    if (!file) return;
    if (file.size > LIBRARY_MAX_BYTES) throw new Error(`${file.name}: ${file.size} bytes; the limit is ${LIBRARY_MAX_BYTES}\n→ choose a file exported by this page`);
    let data;
    try { data = JSON.parse(await file.text()); }
    catch (_) { throw new Error(`${file.name}: not a JSON file\n→ choose a file exported by this page`); }
    const lib = await (await postJSON("/library/import", { session: app.session, library: data })).json();
    showLibrary(lib);
    note(`가져옴 / imported: ${lib.imported.join(", ") || "—"}`);
  }

  // A new session (a new photo, or the server dropped ours): the saved expressions and, for the same
  // photo, the base follow it; nothing the user kept is lost.
  async function onSource(ev) {
    const { keepView } = ev.detail || {};
    keep.clip = null;
    $("downloadVideo").disabled = true;
    if (!keepView) keep.regions = null;   // the same photo reopened keeps its regions
    try {
      if (keepView && keep.baseValues) await postJSON("/base", { session: app.session, params: keep.baseValues });
      else if (!keepView) { keep.baseValues = null; $("resetBase").disabled = true; document.body.dataset.keepBase = "photo"; }
      if (keep.library) showLibrary(await (await postJSON("/library/import", { session: app.session, library: keep.library })).json());
      const res = await api(`/face-regions?session=${encodeURIComponent(app.session)}`, {}, false);
      keep.regions = await res.json();
      canvas.dataset.regions = JSON.stringify(keep.regions.regions);   // display pixels, for tests and tools
    } catch (err) { fail(err); }
  }

  function onClip(ev) {
    const msg = ev.detail || {};
    if (!msg.clip) return;
    keep.clip = msg.clip;
    document.body.dataset.keepClip = msg.clip;
    document.body.dataset.keepClipSeconds = String(msg.frames / msg.fps);   // what the MP4 will last
    $("downloadVideo").disabled = false;
  }

  // ---------------------------------------------------------------- drag to edit
  function canvasPoint(ev) {
    const r = canvas.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * canvas.width / r.width, y: (ev.clientY - r.top) * canvas.height / r.height };
  }

  function regionAt(p) {
    const info = keep.regions;
    if (!info || info.width !== canvas.width || info.height !== canvas.height) return null;
    for (const name of REGION_ORDER) {
      const b = info.regions[name];
      if (b && p.x >= b[0] && p.x <= b[2] && p.y >= b[1] && p.y <= b[3]) return name;
    }
    return null;
  }

  function faceHeight() {
    const h = keep.regions && keep.regions.regions.head;
    return h ? Math.max(1, h[3] - h[1]) : canvas.height;
  }

  function setSlider(name, value) {
    const spec = app.specs.find((s) => s.name === name);
    const input = $(`p-${name}`);
    if (!spec || !input) return;
    input.value = Math.min(spec.max, Math.max(spec.min, value));
    $(`o-${name}`).value = Number(input.value).toFixed(2);
  }

  // Parameters a drag of (dx, dy) face heights on ``region`` sets, from the values when it started.
  function dragValues(region, v0, dx, dy) {
    switch (region) {
      case "mouth": return { lip_variation_three: v0.lip_variation_three + GAIN.mouthOpen * dy,
                             smile: v0.smile + GAIN.mouthSmile * Math.abs(dx) };
      case "eyes": return { eye_ratio: v0.eye_ratio - GAIN.eyeOpen * dy, eyeball_x: v0.eyeball_x + GAZE_SCREEN_RIGHT * GAIN.gazeX * dx };
      case "brows": return { eyebrow: v0.eyebrow - GAIN.brow * dy };
      default: return { head_yaw: v0.head_yaw + YAW_SCREEN_RIGHT * GAIN.yaw * dx, head_pitch: v0.head_pitch + PITCH_DOWN * GAIN.pitch * dy };
    }
  }

  function dragStart(ev) {
    if (ev.button !== 0 || !app.session || !app.specs.length) return;
    const p = canvasPoint(ev);
    const region = regionAt(p);
    if (!region) return;
    ev.preventDefault();
    canvas.setPointerCapture(ev.pointerId);
    keep.drag = { region, p0: p, v0: sliderValues(), id: ev.pointerId };
    canvas.style.cursor = "grabbing";
    showRegion(region);
    document.body.dataset.keepDrag = region;
    note(`${REGION_NAMES[region]} 움직이는 중 / dragging`);
  }

  // Outline of the region under the pointer (a box over the canvas, never drawn on it).
  function showRegion(region) {
    const mark = $("keepRegion");
    if (!region) { mark.hidden = true; return; }
    const b = keep.regions.regions[region];
    const c = canvas.getBoundingClientRect(), d = $("drop").getBoundingClientRect();
    const k = c.width / canvas.width;
    Object.assign(mark.style, { left: `${c.left - d.left + b[0] * k}px`, top: `${c.top - d.top + b[1] * k}px`,
                                width: `${(b[2] - b[0]) * k}px`, height: `${(b[3] - b[1]) * k}px` });
    mark.dataset.label = REGION_NAMES[region];
    mark.hidden = false;
  }

  function dragMove(ev) {
    const d = keep.drag;
    if (!d) {
      const region = regionAt(canvasPoint(ev));
      canvas.style.cursor = region ? "grab" : "";
      canvas.title = region ? `${REGION_NAMES[region]}: 끌어서 바꾸기 / drag to change` : "";
      showRegion(region);
      return;
    }
    if (ev.pointerId !== d.id) return;
    const p = canvasPoint(ev);
    const unit = faceHeight();
    const values = dragValues(d.region, d.v0, (p.x - d.p0.x) / unit, (p.y - d.p0.y) / unit);
    for (const [name, value] of Object.entries(values)) setSlider(name, value);
    preview();   // at most one /render in flight; the last position wins (app.js)
  }

  function dragEnd(ev) {
    if (!keep.drag || ev.pointerId !== keep.drag.id) return;
    keep.drag = null;
    delete document.body.dataset.keepDrag;
    canvas.style.cursor = "";
    showRegion(null);
    note("");
  }

  // ---------------------------------------------------------------- start-up
  function init() {
    buildPanel();
    const on = (id, fn) => { const el = $(id); el.addEventListener("click", () => busy(el, fn)); };
    on("downloadPhoto", downloadPhoto);
    on("downloadVideo", downloadVideo);
    on("useAsBase", useAsBase);
    on("resetBase", resetBase);
    on("exportLibrary", exportLibrary);
    $("importLibrary").addEventListener("click", () => $("libraryFile").click());
    $("libraryFile").addEventListener("change", () => {
      const file = $("libraryFile").files[0];
      $("libraryFile").value = "";
      busy($("importLibrary"), () => importLibrary(file));
    });
    $("saveForm").addEventListener("submit", (ev) => {
      ev.preventDefault();
      busy($("saveForm").querySelector("button"), saveExpression);
    });
    document.addEventListener("lpstudio:source", onSource);
    document.addEventListener("lpstudio:clip", onClip);
    canvas.classList.add("draggable");
    const mark = document.createElement("div");
    mark.id = "keepRegion"; mark.className = "keep-region"; mark.hidden = true;
    $("drop").appendChild(mark);
    canvas.addEventListener("pointerleave", () => { if (!keep.drag) showRegion(null); });
    canvas.addEventListener("pointerdown", dragStart);
    canvas.addEventListener("pointermove", dragMove);
    canvas.addEventListener("pointerup", dragEnd);
    canvas.addEventListener("pointercancel", dragEnd);
  }

  init();
})();

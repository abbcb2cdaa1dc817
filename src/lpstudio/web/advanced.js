// lpstudio "advanced" panel: crop controls for the portrait (GET /crop-options, POST /source-image/crop).
// Loaded after app.js and uses its globals (app, api, apiFetch, upload, showError, $).
// app.js's openSource asks window.lpAdvanced.prepare(form) which upload path to use: the plain
// /source-image while every control holds the server's value, else /source-image/crop with the values.
"use strict";

(() => {
  const CROP_PATH = "/source-image/crop";
  const PLAIN_PATH = "/source-image";
  // name -> [form field, label, step]; ranges and values come from the server.
  const CONTROLS = [
    ["scale", "crop_scale", "크기 / size (scale)", 0.05],
    ["vx", "crop_vx", "좌우 / left-right (vx)", 0.005],   // 0.005: the official -0.125 is a step
    ["vy", "crop_vy", "위아래 / up-down (vy)", 0.005],
  ];
  const panel = document.createElement("details");
  panel.id = "advancedPanel";
  panel.className = "advanced";
  const state = { server: null, ranges: null, perRequest: true };

  function el(tag, attrs = {}, text = "") {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text) e.textContent = text;
    return e;
  }

  function build() {
    panel.appendChild(el("summary", {}, "고급 / advanced: 얼굴 자르기 / face crop"));
    const help = el("p", { class: "muted" },
      "머리카락·모자까지 보이게 하려면 크기를 키우세요 / raise the size to include hair and hats; " +
      "lower it for a close-up.");
    panel.appendChild(help);
    for (const [name, field, label, step] of CONTROLS) {
      const row = el("div", { class: "slider" });
      const id = `crop-${name}`;
      row.appendChild(el("label", { for: id }, label));
      const input = el("input", { id, type: "range", step: String(step), "data-field": field });
      const out = el("output", { id: `${id}-out`, for: id });
      input.addEventListener("input", () => { out.textContent = Number(input.value).toFixed(3); });
      row.append(input, out);
      panel.appendChild(row);
    }
    const thresh = el("div", { class: "slider" });
    thresh.appendChild(el("label", { for: "crop-det" }, "검출 기준 / detection threshold"));
    const det = el("input", { id: "crop-det", type: "number", step: "0.05", placeholder: "자동 / auto",
      "data-field": "det_thresh" });
    thresh.append(det, el("span"));
    panel.appendChild(thresh);
    const rot = el("label", { class: "check" });
    const rotate = el("input", { id: "crop-no-rotate", type: "checkbox" });
    rot.append(rotate, document.createTextNode(" 기울기 보정 안 함 / keep the crop upright (no rotation)"));
    panel.appendChild(rot);
    const buttons = el("div", { class: "row" });
    const apply = el("button", { id: "cropApply", type: "button" }, "적용 / apply");
    const reset = el("button", { id: "cropReset", type: "button" }, "기본값 / defaults");
    buttons.append(apply, reset);
    panel.appendChild(buttons);
    const note = el("p", { id: "cropNote", class: "muted", role: "status", "aria-live": "polite" });
    panel.appendChild(note);
    apply.addEventListener("click", applyCrop);
    reset.addEventListener("click", () => { fill(state.server); applyCrop(); });
    const anchor = $("sliderPanel");
    if (anchor && anchor.parentNode) anchor.parentNode.insertBefore(panel, anchor.nextSibling);
    else document.body.appendChild(panel);
  }

  function fill(values) {
    if (!values) return;
    for (const [name, field] of CONTROLS) {
      const input = $(`crop-${name}`);
      const range = state.ranges[field];
      input.min = String(range[0]);
      input.max = String(range[1]);
      input.value = String(values[name]);
      $(`crop-${name}-out`).textContent = Number(values[name]).toFixed(3);
    }
    const det = $("crop-det");
    det.min = String(state.ranges.det_thresh[0]);
    det.max = String(state.ranges.det_thresh[1]);
    det.value = values.det_thresh === null ? "" : String(values.det_thresh);
    $("crop-no-rotate").checked = values.rotate === false;
  }

  // The form fields that differ from the server's values ({} when none do). A slider snaps to its
  // step, so a value within half a step of the server's is the server's own.
  function changed() {
    const out = {};
    if (!state.server) return out;
    for (const [name, field, , step] of CONTROLS) {
      const v = parseFloat($(`crop-${name}`).value);
      if (Math.abs(v - state.server[name]) > step / 2) out[field] = String(v);
    }
    const det = $("crop-det").value.trim();
    const serverDet = state.server.det_thresh === null ? "" : String(state.server.det_thresh);
    if (det !== serverDet && det !== "") out.det_thresh = det;
    if ($("crop-no-rotate").checked !== (state.server.rotate === false)) out.no_rotate = "true";
    return out;
  }

  // Called by openSource with the upload's FormData: adds the crop fields, returns the path to post to.
  function prepare(form) {
    const fields = changed();
    if (!state.perRequest || !Object.keys(fields).length) return PLAIN_PATH;
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    return CROP_PATH;
  }

  async function currentFile() {
    if (app.sourceFile) return app.sourceFile;
    const res = await apiFetch(PLAIN_PATH);   // the default portrait, as the page shows it
    if (!res.ok) throw new Error("기본 사진을 불러오지 못했어요 / could not load the default portrait");
    return new File([await res.blob()], "portrait.jpg", { type: "image/jpeg" });
  }

  async function applyCrop() {
    const note = $("cropNote");
    try {
      const file = await currentFile();
      const fields = changed();
      await upload(file);   // shows its own error and keeps the previous portrait on failure
      if (!$("error").hidden) { note.textContent = "적용 안 됨 / not applied"; return; }
      const shown = Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(", ");
      note.textContent = shown ? `적용됨 / applied: ${shown}` : "기본값 / server defaults";
    } catch (err) {
      showError(err);
    }
  }

  async function init() {
    build();
    try {
      const res = await apiFetch("/crop-options");
      if (!res.ok) { panel.hidden = true; return; }
      const body = await res.json();
      state.server = body.options;
      state.ranges = body.ranges;
      state.perRequest = body.per_request;
      fill(state.server);
      if (!state.perRequest) {
        $("cropNote").textContent = "이 서버는 사진마다 자르기를 바꿀 수 없어요 / this server sets the crop for all photos.";
        for (const b of panel.querySelectorAll("input, button")) b.disabled = true;
      }
    } catch (_) {
      panel.hidden = true;
    }
  }

  window.lpAdvanced = { prepare, changed, state };
  init();
})();

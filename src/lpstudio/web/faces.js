// lpstudio · group photos on the page: faces outlined on the portrait, click one to choose which face the
// buttons, commands and sliders drive, or toggle "all faces". Faces are numbered 0, 1, ... largest first
// (as everywhere in lpstudio). Hooks in app.js: lpFacesOpened(info) after a photo opens, and
// lpFacesBody(path, body), which adds ``faces`` to /render and /generate requests.
"use strict";

const lpFaces = {
  boxes: [],        // face boxes in display pixels (x1, y1, x2, y2), largest first
  width: 1,         // display size of the portrait the boxes refer to
  height: 1,
  animatable: 0,    // how many of them the server animates
  primary: 0,       // the session's own face (requests without ``faces`` drive it)
  selected: 0,      // the face chosen by a click
  all: false,       // the "all faces" toggle
};

function lpFacesElement(tag, attrs = {}, text = "") {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text) el.textContent = text;
  return el;
}

// The overlay of outlines, laid exactly over the portrait canvas (re-laid when the canvas changes size).
function lpFacesOverlay() {
  let overlay = document.getElementById("faceOverlay");
  if (!overlay) {
    overlay = lpFacesElement("div", { id: "faceOverlay", class: "face-overlay" });
    document.getElementById("drop").appendChild(overlay);
    const canvas = document.getElementById("portrait");
    if (window.ResizeObserver) new ResizeObserver(lpFacesPlace).observe(canvas);
    window.addEventListener("resize", lpFacesPlace);
  }
  return overlay;
}

function lpFacesPlace() {
  const overlay = document.getElementById("faceOverlay");
  const canvas = document.getElementById("portrait");
  if (!overlay || !canvas) return;
  overlay.style.left = `${canvas.offsetLeft}px`;
  overlay.style.top = `${canvas.offsetTop}px`;
  overlay.style.width = `${canvas.offsetWidth}px`;
  overlay.style.height = `${canvas.offsetHeight}px`;
}

// The bar above the buttons: which face is driven, and the "all faces" toggle.
function lpFacesBar() {
  let bar = document.getElementById("facesBar");
  if (!bar) {
    bar = lpFacesElement("div", { id: "facesBar", class: "faces-bar", role: "group", "aria-label": "얼굴 / faces" });
    const label = lpFacesElement("label");
    const toggle = lpFacesElement("input", { id: "facesAll", type: "checkbox", "data-testid": "faces-all" });
    toggle.addEventListener("change", () => { lpFaces.all = toggle.checked; lpFacesRender(); });
    label.append(toggle, " 모든 얼굴 / all faces");
    bar.append(lpFacesElement("span", { id: "facesChosen", class: "muted", "aria-live": "polite" }), label);
    const controls = document.querySelector(".controls");
    controls.insertBefore(bar, controls.firstChild);
  }
  return bar;
}

function lpFacesRender() {
  const overlay = lpFacesOverlay();
  overlay.replaceChildren();
  const several = lpFaces.animatable > 1;
  const bar = lpFacesBar();
  bar.hidden = !several;
  overlay.hidden = !several;
  if (!several) return;
  lpFaces.boxes.forEach((box, i) => {
    if (i >= lpFaces.animatable) return;
    const [x1, y1, x2, y2] = box;
    const chosen = lpFaces.all || i === lpFaces.selected;
    const outline = lpFacesElement("button", {
      type: "button",
      class: `face-outline${chosen ? " chosen" : ""}`,
      "data-testid": `face-outline-${i}`,
      "aria-pressed": String(chosen),
      "aria-label": `얼굴 ${i} / face ${i}`,
      title: `얼굴 ${i} / face ${i}`,
    });
    outline.style.left = `${(100 * x1) / lpFaces.width}%`;
    outline.style.top = `${(100 * y1) / lpFaces.height}%`;
    outline.style.width = `${(100 * (x2 - x1)) / lpFaces.width}%`;
    outline.style.height = `${(100 * (y2 - y1)) / lpFaces.height}%`;
    outline.append(lpFacesElement("span", { class: "face-number" }, String(i)));
    outline.addEventListener("click", () => {
      lpFaces.selected = i;
      lpFaces.all = false;
      document.getElementById("facesAll").checked = false;
      lpFacesRender();
    });
    overlay.appendChild(outline);
  });
  document.getElementById("facesChosen").textContent = lpFaces.all
    ? "모든 얼굴이 움직여요 / all faces move"
    : `얼굴 ${lpFaces.selected} 선택됨 / face ${lpFaces.selected} chosen (클릭해서 바꾸기 / click a face to change)`;
  lpFacesPlace();
}

// app.js calls this when a photo (or the default portrait) is opened.
function lpFacesOpened(info) {
  const keep = lpFaces.boxes.length === (info.faces || []).length && lpFaces.width === info.width;
  lpFaces.boxes = (info.faces || []).map((f) => f.box);
  lpFaces.width = info.width || 1;
  lpFaces.height = info.height || 1;
  lpFaces.animatable = info.animatable_faces || 0;
  lpFaces.primary = info.face_index ?? 0;
  if (!keep) { lpFaces.selected = lpFaces.primary; lpFaces.all = false; }
  const toggle = document.getElementById("facesAll");
  if (toggle) toggle.checked = lpFaces.all;
  lpFacesRender();
}

// app.js passes every JSON body through this: /render and /generate drive the chosen face(s).
function lpFacesBody(path, body) {
  if (lpFaces.animatable <= 1 || (path !== "/render" && path !== "/generate") || !body || !body.session) return body;
  if (lpFaces.all) return { ...body, faces: "all" };
  if (lpFaces.selected === lpFaces.primary) return body;   // the session's own face: the usual (cached) path
  return { ...body, faces: [lpFaces.selected] };
}

window.lpFacesOpened = lpFacesOpened;
window.lpFacesBody = lpFacesBody;

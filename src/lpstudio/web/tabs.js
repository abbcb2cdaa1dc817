// lpstudio: the CLI's other jobs as upload tabs (drive from a video, copy another photo's expression,
// apply a motion template). Loaded after app.js; uses its helpers (api, runClip, draw, showError, ...).
"use strict";

const TABS = [
  {
    id: "drive", ko: "🎬 영상으로 움직이기", en: "drive from a video",
    accept: "video/mp4,video/quicktime,video/webm,.mp4,.mov,.m4v,.webm,.mkv",
    note: "얼굴이 보이는 짧은 영상 / a short video with one face (mp4, mov, webm)",
  },
  {
    id: "expression", ko: "🙂 다른 사진의 표정", en: "copy the expression of another photo",
    accept: "image/jpeg,image/png,image/webp,image/bmp",
    note: "그 사진의 표정을 이 초상화에 / that photo's expression on this portrait",
  },
  {
    id: "template", ko: "📁 모션 템플릿", en: "apply a motion template",
    accept: ".npz",
    note: "lpstudio drive --save-motion 로 만든 .npz / a .npz saved by lpstudio drive --save-motion",
  },
];

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

// A multipart request for the session's photo, re-sending the photo once when the server dropped it.
async function sendForm(path, fill, signal, retry) {
  const form = () => {
    const f = new FormData(); f.append("session", app.session); fill(f);
    if (window.lpFacesForm) window.lpFacesForm(path, f);   // faces_forms.js: the chosen face(s) drive too
    return f;
  };
  try { return await api(path, { method: "POST", body: form(), signal }, retry); }
  catch (err) {
    if (err.status !== 409 || err.kind !== "SessionExpired") throw err;
    await openSource(app.sourceFile, { keepView: true });
    return await api(path, { method: "POST", body: form(), signal }, retry);
  }
}

// Driving video or template: the frames stream and play like any clip.
function driveWith(file, label) {
  if (!file) return;
  runClip(null, `${label} ${file.name}`, (signal) => sendForm("/drive", (f) => f.append("file", file, file.name), signal, false));
}

// Another photo's expression: one still, shown like a slider preview.
async function copyExpression(file) {
  if (!file) return;
  stopIdle();
  stopVoice();
  if (app.clip) { app.clip.abort.abort(); app.clip = null; }
  const token = ++app.token;
  showError(null);
  setProgress(0, 1, `🙂 ${file.name} …`);
  try {
    const pose = $("tabPose").checked;
    const res = await sendForm("/edit", (f) => { f.append("expression_from", file, file.name); f.append("pose", String(pose)); },
      undefined, false);
    const bmp = await bitmapFrom(await res.blob());
    if (token === app.token) {
      draw(bmp);
      canvas.dataset.state = "edited";
      setProgress(1, 1, "완료 / done");
    }
  } catch (err) {
    if (token === app.token) { showError(err); setProgress(0, 1, "오류 / error"); }
  }
}

function selectTab(id) {
  for (const t of TABS) {
    const on = t.id === id;
    $(`tab-${t.id}`).setAttribute("aria-selected", String(on));
    $(`panel-${t.id}`).hidden = !on;
  }
}

function buildTabs() {
  const mount = $("jobTabs");
  if (!mount) return;
  const list = el("div", { className: "tab-list", role: "tablist" });
  mount.append(el("h2", { textContent: "다른 작업 / more jobs" }), list);
  for (const t of TABS) {
    const tab = el("button", { id: `tab-${t.id}`, type: "button", role: "tab", className: "two-line" },
      [el("span", { className: "ko", textContent: t.ko }), el("span", { className: "en", textContent: t.en })]);
    tab.dataset.testid = `tab-${t.id}`;
    tab.setAttribute("aria-controls", `panel-${t.id}`);
    tab.addEventListener("click", () => selectTab(t.id));
    list.append(tab);
    const input = el("input", { id: `tabFile-${t.id}`, type: "file", accept: t.accept });
    input.dataset.testid = `tab-${t.id}-file`;
    input.setAttribute("aria-label", `${t.en}: 파일 / file`);
    const panel = el("div", { id: `panel-${t.id}`, role: "tabpanel", className: "tab-panel" },
      [el("p", { className: "muted", textContent: t.note }), input]);
    if (t.id === "expression") {
      const pose = el("input", { id: "tabPose", type: "checkbox" });
      pose.dataset.testid = "tab-expression-pose";
      panel.append(el("label", {}, [pose, " 고개 방향도 / head pose too"]));
    }
    input.addEventListener("change", () => {
      const file = input.files[0];
      input.value = "";
      if (t.id === "expression") copyExpression(file);
      else driveWith(file, t.id === "drive" ? "🎬" : "📁");
    });
    mount.append(panel);
  }
  selectTab(TABS[0].id);
}

buildTabs();

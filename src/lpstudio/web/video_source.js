// lpstudio: a video as the portrait (POST /video-source, docs/VIDEO_SOURCE_API.md). A tab beside the
// other jobs of tabs.js: pick the source video and a driving video or .npz template, go; the job is
// polled for its progress, the result plays in a <video> with a download link. Or dub it: words to say
// (말하기 / speech) or a speech audio file; only the mouth moves and the speech becomes the sound.
// Loaded after tabs.js; uses app.js's helpers (api, app, showError, $).
"use strict";

const VSRC_POLL_MS = 700;              // how often the page asks for the job's progress
const VSRC_VIDEO = "video/mp4,video/quicktime,video/webm,.mp4,.mov,.m4v,.webm,.mkv";
const VSRC_SPEECH = "audio/*,.wav,.mp3,.m4a,.ogg,.oga,.opus,.flac,.webm";  // the server sniffs what it is
const vsrc = { job: null, url: null, token: 0 };

function vsrcEl(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
}

function vsrcFile(id, accept, label) {
  const input = vsrcEl("input", { id, type: "file", accept });
  input.dataset.testid = id;
  input.setAttribute("aria-label", label);
  return vsrcEl("label", { className: "vsrc-pick" }, [vsrcEl("span", { textContent: label }), input]);
}

function vsrcShowProgress(done, total, text) {
  const bar = $("vsrc-progress");
  bar.max = Math.max(total, 1);
  bar.value = Math.min(done, bar.max);
  $("vsrc-status").textContent = text;
}

function vsrcPhase(phase) {
  return { queued: "차례를 기다려요 / queued", source: "원본 추적 / tracking the source",
    driving: "움직임 읽기 / reading the motion", render: "그리는 중 / rendering" }[phase] || phase;
}

async function vsrcCancel() {
  const job = vsrc.job;
  vsrc.token++;
  vsrc.job = null;
  $("vsrc-cancel").hidden = true;
  vsrcShowProgress(0, 1, "취소됨 / cancelled");
  if (!job) return;
  try {
    await api("/video-source/cancel", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ session: job.session, id: job.id }) }, false);
  } catch (_) { /* already gone */ }
}

async function vsrcShowResult(status, session, token) {
  const res = await api(`${status.url}?session=${encodeURIComponent(session)}`, {}, false);
  const blob = await res.blob();
  if (token !== vsrc.token) return;
  if (vsrc.url) URL.revokeObjectURL(vsrc.url);
  vsrc.url = URL.createObjectURL(blob);
  const video = $("vsrc-video");
  video.src = vsrc.url;
  video.hidden = false;
  const link = $("vsrc-download");
  link.href = vsrc.url;
  link.hidden = false;
  $("vsrc-result").dataset.frames = String(status.frames);
  $("vsrc-result").dataset.state = "done";
}

async function vsrcGo() {
  const source = $("vsrc-source").files[0];
  const driving = $("vsrc-driving").files[0];
  const command = $("vsrc-command").value.trim();
  const text = $("vsrc-text").value.trim();
  const speech = $("vsrc-speech").files[0];
  showError(null);
  if (!source || (!driving && !command && !text && !speech)) {
    showError(new Error("원본 영상과 움직일 영상(.npz), 명령 또는 말할 내용을 골라 주세요 / " +
      "pick a source video, and a driving video, template, command or speech"));
    return;
  }
  if (!app.session) { showError(new Error("먼저 초상화를 열어 주세요 / open a portrait first")); return; }
  if (vsrc.job) await vsrcCancel();
  const token = ++vsrc.token;
  const session = app.session;
  $("vsrc-result").dataset.state = "running";
  $("vsrc-video").hidden = true;
  $("vsrc-download").hidden = true;
  vsrcShowProgress(0, 1, "올리는 중 / uploading");
  try {
    const form = new FormData();
    form.append("session", session);
    form.append("source", source, source.name);
    // exactly one choice is sent: typed words to say, then a speech file, then a command, then a driving file
    if (text) form.append("text", text);
    else if (speech) form.append("speech", speech, speech.name);
    else if (command) form.append("command", command);
    else form.append("driving", driving, driving.name);
    const audio = $("vsrc-audio").value;
    // a dub's sound is its speech: no audio choice is sent with it
    if (!text && !speech) form.append("audio", command && audio === "driving" ? "source" : audio);
    const started = await (await api("/video-source", { method: "POST", body: form }, false)).json();
    if (token !== vsrc.token) return;
    vsrc.job = { id: started.id, session };
    $("vsrc-cancel").hidden = false;
    for (;;) {
      await sleep(VSRC_POLL_MS);
      if (token !== vsrc.token) return;
      const status = await (await api(`${started.status_url}?session=${encodeURIComponent(session)}`, {}, false)).json();
      if (token !== vsrc.token) return;
      if (status.state === "done") {
        vsrcShowProgress(status.total, status.total, `완료 / done: ${status.frames} frames, ${status.fps} fps`);
        vsrc.job = null;
        $("vsrc-cancel").hidden = true;
        await vsrcShowResult(status, session, token);
        return;
      }
      if (status.state !== "queued" && status.state !== "running") throw new Error(status.error || status.state);
      vsrcShowProgress(status.progress, status.total, `${vsrcPhase(status.phase)} ${status.progress}/${status.total}`);
    }
  } catch (err) {
    if (token !== vsrc.token) return;
    vsrc.job = null;
    $("vsrc-cancel").hidden = true;
    $("vsrc-result").dataset.state = "error";
    vsrcShowProgress(0, 1, "오류 / error");
    showError(err);
  }
}

function vsrcBuild() {
  const mount = $("jobTabs");
  const list = mount && mount.querySelector(".tab-list");
  if (!list) return;
  const tab = vsrcEl("button", { id: "tab-vsrc", type: "button", role: "tab", className: "two-line" },
    [vsrcEl("span", { className: "ko", textContent: "🎞 영상을 초상화로" }),
      vsrcEl("span", { className: "en", textContent: "a video as the portrait" })]);
  tab.dataset.testid = "tab-vsrc";
  tab.setAttribute("aria-controls", "panel-vsrc");
  tab.setAttribute("aria-selected", "false");
  list.append(tab);
  const audio = vsrcEl("select", { id: "vsrc-audio" }, [
    vsrcEl("option", { value: "source", textContent: "원본 소리 / source audio" }),
    vsrcEl("option", { value: "driving", textContent: "움직임 영상 소리 / driving audio" }),
    vsrcEl("option", { value: "none", textContent: "소리 없음 / no audio" })]);
  audio.dataset.testid = "vsrc-audio";
  const commandBox = vsrcEl("input", { id: "vsrc-command", type: "text", maxLength: 500,
    placeholder: "웃어줘 · smile" });
  commandBox.dataset.testid = "vsrc-command";
  const textBox = vsrcEl("input", { id: "vsrc-text", type: "text", maxLength: 500,
    placeholder: "안녕하세요 · hello" });
  textBox.dataset.testid = "vsrc-text";
  const go = vsrcEl("button", { id: "vsrc-go", type: "button", textContent: "▶ 만들기 / go" });
  go.dataset.testid = "vsrc-go";
  const cancel = vsrcEl("button", { id: "vsrc-cancel", type: "button", textContent: "■ 취소 / cancel", hidden: true });
  const bar = vsrcEl("progress", { id: "vsrc-progress", max: 1, value: 0 });
  const video = vsrcEl("video", { id: "vsrc-video", controls: true, loop: true, hidden: true });
  video.setAttribute("playsinline", "");
  const link = vsrcEl("a", { id: "vsrc-download", download: "lpstudio-video.mp4", hidden: true,
    textContent: "⬇ 내려받기 / download (mp4)" });
  const panel = vsrcEl("div", { id: "panel-vsrc", role: "tabpanel", className: "tab-panel vsrc", hidden: true }, [
    vsrcEl("p", { className: "muted",
      textContent: "얼굴이 보이는 짧은 영상이 초상화가 되어 다른 영상(또는 .npz)의 움직임을 따라하거나, " +
        "입만 새 말을 해요 / a short video with one face, moved by a driving video or template, " +
        "or dubbed: only the mouth says new speech" }),
    vsrcFile("vsrc-source", VSRC_VIDEO, "원본 영상 / source video"),
    vsrcFile("vsrc-driving", VSRC_VIDEO + ",.npz", "움직임 / driving video or .npz"),
    vsrcEl("label", { className: "vsrc-pick" }, [
      vsrcEl("span", { textContent: "또는 명령 / or a command " }), commandBox]),
    vsrcEl("label", { className: "vsrc-pick" }, [
      vsrcEl("span", { textContent: "또는 말하기 / or speech (dub) " }), textBox]),
    vsrcFile("vsrc-speech", VSRC_SPEECH, "또는 음성 파일 / or a speech file (dub)"),
    vsrcEl("div", { className: "vsrc-row" }, [audio, go, cancel]),
    vsrcEl("div", { className: "vsrc-row" }, [bar, vsrcEl("span", { id: "vsrc-status", className: "muted" })]),
    vsrcEl("div", { id: "vsrc-result" }, [video, link])]);
  mount.append(panel);
  const show = (on) => { tab.setAttribute("aria-selected", String(on)); panel.hidden = !on; };
  tab.addEventListener("click", () => {
    for (const other of list.querySelectorAll("[role=tab]")) {
      if (other === tab) continue;
      other.setAttribute("aria-selected", "false");
      const p = $(other.getAttribute("aria-controls"));
      if (p) p.hidden = true;
    }
    show(true);
  });
  for (const other of list.querySelectorAll("[role=tab]")) {
    if (other !== tab) other.addEventListener("click", () => show(false));
  }
  go.addEventListener("click", vsrcGo);
  cancel.addEventListener("click", vsrcCancel);
}

vsrcBuild();

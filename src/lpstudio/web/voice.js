// lpstudio: the portrait's voice (Web Audio). Loaded before app.js; uses its helpers at run time.
"use strict";

const VOICE_LEAD_S = 0.06;      // the voice is scheduled this far ahead, so its first sample is never cut
const MUTE_KEY = "lpstudio-muted";

// The voice of speaking clips: one AudioContext (created inside a click, so the browser lets it play),
// a gain node for mute, and the source now playing. The page reports its state as data attributes on
// <body>: audioState (the context's state), muted, gain, voicePlayed (voices started while running),
// avSkewMs (the largest lateness of a frame against the audio clock in the last speaking clip).
const voice = {
  ctx: null,
  gain: null,
  source: null,
  token: -1,
  played: 0,
  muted: (() => { try { return localStorage.getItem(MUTE_KEY) === "1"; } catch (_) { return false; } })(),
};

function audioContext() {
  if (!voice.ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    voice.ctx = new Ctx();
    voice.gain = voice.ctx.createGain();
    voice.gain.connect(voice.ctx.destination);
    const report = () => { document.body.dataset.audioState = voice.ctx.state; };
    voice.ctx.addEventListener("statechange", report);
    report();
    applyMute();
  }
  if (voice.ctx.state === "suspended") voice.ctx.resume().catch(() => {});
  return voice.ctx;
}

function applyMute() {
  const b = $("muteButton");
  b.querySelector(".ko").textContent = voice.muted ? "🔇 소리 꺼짐" : "🔊 소리 켜짐";
  b.querySelector(".en").textContent = voice.muted ? "muted (click for sound)" : "sound on (click to mute)";
  b.setAttribute("aria-label", voice.muted ? "소리 꺼짐 / muted" : "소리 켜짐 / sound on");
  b.setAttribute("aria-pressed", String(voice.muted));
  b.classList.toggle("on", voice.muted);
  if (voice.gain) {
    voice.gain.gain.cancelScheduledValues(voice.ctx.currentTime);
    voice.gain.gain.value = voice.muted ? 0 : 1;
  }
  document.body.dataset.muted = voice.muted ? "1" : "0";
  document.body.dataset.gain = voice.muted ? "0" : "1";
}

function toggleMute() {
  voice.muted = !voice.muted;
  try { localStorage.setItem(MUTE_KEY, voice.muted ? "1" : "0"); } catch (_) { /* private mode */ }
  applyMute();
}

// Stops the voice (of clip ``token`` only, when given: a finished clip never silences a newer one).
function stopVoice(token = null) {
  if (!voice.source || (token !== null && voice.token !== token)) return;
  try { voice.source.stop(); } catch (_) { /* not started */ }
  voice.source.disconnect();
  voice.source = null;
  document.body.dataset.voice = "stopped";
}

// Starts the decoded voice at ``offsetS`` into the clip; returns the AudioContext time of the clip's 0.
function startVoice(buffer, offsetS, token) {
  stopVoice();
  const ctx = voice.ctx;
  const src = ctx.createBufferSource();
  src.buffer = buffer;
  src.connect(voice.gain);
  const at = ctx.currentTime + VOICE_LEAD_S;
  src.start(at, Math.min(offsetS, buffer.duration));
  voice.source = src;
  voice.token = token;
  if (ctx.state === "running") document.body.dataset.voicePlayed = String(++voice.played);
  document.body.dataset.voice = "playing";
  return at - offsetS;
}

// The start line's base64 WAV -> an AudioBuffer (Web Audio decodes it; no data: URL, which the CSP forbids).
async function decodeVoice(audio) {
  const ctx = audioContext();
  if (!ctx) throw new Error("this browser has no Web Audio");
  const bin = atob(audio.wav_base64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return await ctx.decodeAudioData(bytes.buffer);
}

// The portrait says an uploaded audio file: checked here first (size), then by the server (type, length).
function sayAudioFile(file) {
  if (!file) return;
  if (file.size > app.maxAudioBytes) {
    showError(new Error(`${file.name}: ${Math.round(file.size / 1048576)} MB 는 너무 커요 / is too large` +
      `\n→ ${Math.round(app.maxAudioBytes / 1048576)} MB 이하의 음성 파일을 올려 주세요 / upload a smaller audio file`));
    return;
  }
  const form = () => {
    const f = new FormData();
    f.append("session", app.session);
    f.append("idle", String($("idle").checked));
    f.append("file", file, file.name);
    if (window.lpFacesForm) window.lpFacesForm("/generate-audio", f);   // faces_forms.js: the chosen face(s)
    return f;
  };
  const send = async (signal) => {
    try { return await api("/generate-audio", { method: "POST", body: form(), signal }, false); }
    catch (err) {
      if (err.status !== 409 || err.kind !== "SessionExpired") throw err;
      await openSource(app.sourceFile, { keepView: true });   // the server dropped our photo: re-send, retry once
      return await api("/generate-audio", { method: "POST", body: form(), signal }, false);
    }
  };
  runClip(null, `🎤 ${file.name}`, send);
}

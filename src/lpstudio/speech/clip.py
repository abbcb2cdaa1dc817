"""A speaking clip: audio + a timeline of the 17 parameters on the same clock.

:class:`SpeechClip` is what every output plays: ``audio`` (mono or stereo) and ``timeline`` last
exactly as long; frame ``k`` is at ``k * 1000 / fps`` ms and there are
``ceil(audio_ms * fps / 1000)`` frames, so the video is at most one frame longer than the audio
(writers pad the audio with silence to the video's length).

* :func:`speak_text` — text -> eSpeak -> phonemes -> mouth (visemes, co-articulation, loudness),
  prosody (nods, brows, blinks) and, optionally, idle liveliness; one chunk per sentence.
* :func:`iter_speech` — the same, streamed: one :class:`SpeechClip` per sentence as soon as it is
  synthesised, so frames can start before the rest of a long text is spoken.
* :func:`speak_audio` — the user's audio -> the analyser (:mod:`.analyser`) -> mouth, prosody.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LimitError
from ..expressions.idle import with_idle
from ..expressions.timeline import DEFAULT_FPS, Step, Timeline, check_fps, resolve_base
from ..params import PARAM_NAMES, EditParams
from .analyser import Analysis, analyse
from .audio import AudioClip
from .espeak import DEFAULT_PITCH, DEFAULT_RATE_WPM, PAUSE, Phoneme, check_voice_settings, synthesize
from .lipsync import loudness_gains, mouth_motions, phoneme_track
from .prosody import prosody_steps
from .text import check_text, resolve_voice, split_sentences

LEAD_IN_MS: float = 120.0
"""Silence before each sentence, so the mouth can shape the first sound before it starts."""
TAIL_MS: float = 150.0
"""Silence after each sentence, so the mouth can close after the last sound."""
MIN_PAUSE_MS: float = 60.0
"""Silences of the user's audio at least this long count as pauses for prosody."""


@dataclass(frozen=True)
class SpeechClip:
    """Audio and the timeline that goes with it (same clock, same duration).

    ``phonemes`` are on that clock (``"_"`` pauses included; empty for the user's audio),
    ``language`` is the voice of the speech (``"ko"``, ``"en-us"``, ``"mixed"``) or None for audio.
    """

    audio: AudioClip
    timeline: Timeline
    phonemes: tuple[Phoneme, ...] = ()
    language: str | None = None
    text: str | None = None
    speech_start_ms: float = 0.0
    """Where the speech starts on the clip's clock (later than 0 when other actions come first)."""
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def audio_ms(self) -> float:
        return self.audio.duration_ms

    def frame_count(self, fps: float = DEFAULT_FPS) -> int:
        """``ceil(audio_ms * fps / 1000)`` (at least 1)."""
        check_fps(fps)
        return max(1, int(math.ceil(self.audio_ms * fps / 1000.0 - 1e-9)))

    def frame_times(self, fps: float = DEFAULT_FPS) -> np.ndarray:
        """``(n,)`` ms: frame ``k`` at ``k * 1000 / fps``."""
        return np.arange(self.frame_count(fps), dtype=np.float64) * (1000.0 / fps)

    def sample_array(self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, Any] | None = None) -> np.ndarray:
        """``(n_frames, 17)`` parameters in :data:`~lpstudio.params.PARAM_NAMES` order, clamped to range."""
        return sample_timeline_at(self.timeline, self.frame_times(fps), base)

    def sample(self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, Any] | None = None) -> list[EditParams]:
        return [
            EditParams(**dict(zip(PARAM_NAMES, map(float, row), strict=True))) for row in self.sample_array(fps, base)
        ]

    def padded_audio(self, fps: float = DEFAULT_FPS) -> AudioClip:
        """The audio padded with silence to exactly the video's length (``frame_count / fps``)."""
        n = int(round(self.frame_count(fps) * self.audio.sample_rate / fps))
        return self.audio.padded_to(n)

    def to_json(
        self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, Any] | None = None, *, decimals: int = 5
    ) -> dict[str, Any]:
        """``{fps, audio_ms, language, phonemes: [{ipa, start_ms, end_ms, stress}], frames: [{17 params}], ...}``."""
        arr = self.sample_array(fps, base)
        return {
            "fps": fps,
            "audio_ms": round(self.audio_ms, 3),
            "sample_rate": self.audio.sample_rate,
            "language": self.language,
            "text": self.text,
            "speech_start_ms": round(self.speech_start_ms, 3),
            "n_frames": len(arr),
            "base": resolve_base(base),
            "phonemes": [p.to_json() for p in self.phonemes],
            "steps": [s.to_json() for s in self.timeline.steps],
            "frames": [{n: round(float(v), decimals) for n, v in zip(PARAM_NAMES, row, strict=True)} for row in arr],
            **dict(self.info),
        }


def sample_timeline_at(
    timeline: Timeline, times_ms: np.ndarray, base: EditParams | Mapping[str, Any] | None = None
) -> np.ndarray:
    """A timeline's ``(len(times_ms), 17)`` parameters at arbitrary times (:meth:`Timeline.sample_at`)."""
    return timeline.sample_at(times_ms, base)


def _pad(audio: np.ndarray, sample_rate: int, before_ms: float, after_ms: float) -> np.ndarray:
    a = int(round(before_ms * sample_rate / 1000.0))
    b = int(round(after_ms * sample_rate / 1000.0))
    return np.concatenate([np.zeros(a, np.float32), audio.astype(np.float32), np.zeros(b, np.float32)])


def sentence_clip(
    sentence: str,
    voice: str,
    *,
    rate: int = DEFAULT_RATE_WPM,
    pitch: int = DEFAULT_PITCH,
    idle: bool = False,
    seed: int = 0,
    follows: bool = False,
) -> SpeechClip:
    """One sentence spoken: lead-in silence, eSpeak's audio, tail silence, and its timeline.

    ``follows``: another sentence came just before (the pause between them gets a blink).
    """
    utt = synthesize(sentence, voice, rate=rate, pitch=pitch)
    sr = utt.sample_rate
    audio = _pad(utt.audio, sr, LEAD_IN_MS, TAIL_MS)
    lead = round(LEAD_IN_MS * sr / 1000.0) * 1000.0 / sr
    duration = 1000.0 * len(audio) / sr
    phonemes = [Phoneme(PAUSE, 0.0, lead)] + [p.shifted(lead) for p in utt.phonemes]
    if phonemes[-1].end_ms < duration:
        if phonemes[-1].is_pause:
            phonemes[-1] = Phoneme(PAUSE, phonemes[-1].start_ms, duration)
        else:
            phonemes.append(Phoneme(PAUSE, phonemes[-1].end_ms, duration))
    phonemes = _merge_pauses(phonemes)
    exclaim = sentence.rstrip().endswith(("!", "！"))
    timeline = speech_timeline(phonemes, duration, audio, sr, exclaim=exclaim, blink_at_start=follows)
    if idle:
        timeline = with_idle(timeline, seed)
    return SpeechClip(
        AudioClip.from_mono(audio, sr),
        timeline,
        tuple(phonemes),
        voice,
        sentence,
        info={"voice": voice, "rate": rate, "pitch": pitch},
    )


def _merge_pauses(phonemes: Sequence[Phoneme]) -> list[Phoneme]:
    out: list[Phoneme] = []
    for p in phonemes:
        if out and p.is_pause and out[-1].is_pause:
            out[-1] = Phoneme(PAUSE, out[-1].start_ms, p.end_ms)
        else:
            out.append(p)
    return out


def speech_timeline(
    phonemes: Sequence[Phoneme],
    duration_ms: float,
    audio: np.ndarray | None,
    sample_rate: int,
    *,
    exclaim: bool = False,
    blink_at_start: bool = False,
) -> Timeline:
    """Mouth (layer 0) and prosody (layer 1) of timed phonemes; lasts exactly ``duration_ms``."""
    gains = loudness_gains(audio, sample_rate, phonemes) if audio is not None else None
    track = phoneme_track(phonemes, duration_ms, gains)
    steps = [Step(m, 0.0, m.name, 0) for m in mouth_motions(track)]
    steps += prosody_steps(
        phonemes, duration_ms, audio=audio, sample_rate=sample_rate, exclaim=exclaim, blink_at_start=blink_at_start
    )
    return Timeline(steps, duration_ms)


def iter_speech(
    text: str,
    voice: str | None = "auto",
    *,
    rate: int = DEFAULT_RATE_WPM,
    pitch: int = DEFAULT_PITCH,
    idle: bool = True,
    seed: int = 0,
) -> Iterator[SpeechClip]:
    """One clip per sentence of ``text``, each synthesised only when asked for (streaming).

    With ``voice`` ``"auto"`` (or None) each sentence gets its own voice (Hangul -> ``ko``).
    Played one after the other they are :func:`speak_text`'s clip.
    """
    text = check_text(text)
    check_voice_settings(rate, pitch)
    sentences = split_sentences(text)
    voices = [resolve_voice(voice, s) for s in sentences]  # an unknown voice fails before any work
    for i, (sentence, v) in enumerate(zip(sentences, voices, strict=True)):
        yield sentence_clip(sentence, v, rate=rate, pitch=pitch, idle=idle, seed=seed + i, follows=i > 0)


def concat(clips: Sequence[SpeechClip]) -> SpeechClip:
    """Clips one after the other (audio, timelines and phonemes on one clock)."""
    if not clips:
        raise ValueError("no clips to join")
    if len(clips) == 1:
        return clips[0]
    rate = clips[0].audio.sample_rate
    channels = max(c.audio.channels for c in clips)
    audio_parts, phonemes = [], []
    timeline = Timeline()
    t = 0.0
    for c in clips:
        if c.audio.sample_rate != rate:
            raise ValueError("clips to join must share a sample rate")
        s = c.audio.samples
        audio_parts.append(np.repeat(s, channels, axis=0) if s.shape[0] < channels else s)
        phonemes.extend(p.shifted(t) for p in c.phonemes)
        timeline = timeline.then(c.timeline)
        t += c.audio_ms
    audio = AudioClip(np.concatenate(audio_parts, axis=1), rate)
    languages = {c.language for c in clips if c.language}
    language = languages.pop() if len(languages) == 1 else ("mixed" if languages else None)
    text = " ".join(c.text for c in clips if c.text) or None
    return SpeechClip(
        audio,
        Timeline(timeline.steps, audio.duration_ms),
        tuple(phonemes),
        language,
        text,
        clips[0].speech_start_ms,
        dict(clips[0].info),
    )


def speak_text(
    text: str,
    voice: str | None = "auto",
    *,
    rate: int = DEFAULT_RATE_WPM,
    pitch: int = DEFAULT_PITCH,
    idle: bool = True,
    seed: int = 0,
    max_audio_ms: float | None = None,
) -> SpeechClip:
    """``text`` spoken as one clip (all sentences joined; see :func:`iter_speech`).

    ``max_audio_ms``: refuse (:class:`~lpstudio.errors.LimitError`) as soon as the sentences spoken so
    far pass it, so an over-long text costs at most one sentence more than the limit.
    """
    clips: list[SpeechClip] = []
    total = 0.0
    for clip in iter_speech(text, voice, rate=rate, pitch=pitch, idle=idle, seed=seed):
        clips.append(clip)
        total += clip.audio_ms
        if max_audio_ms is not None:
            check_speech_ms(total, max_audio_ms, partial=len(clips) < len(split_sentences(text)))
    return concat(clips)


def check_speech_ms(duration_ms: float, max_ms: float, *, partial: bool = False) -> None:
    """Refuse speech longer than ``max_ms`` with a :class:`~lpstudio.errors.LimitError` naming the limit."""
    if duration_ms > max_ms:
        more = " and more" if partial else ""
        raise LimitError(
            f"the speech lasts {duration_ms / 1000:.1f} s{more}; the limit is {max_ms / 1000:g} s",
            hint="say a shorter text, or split it into several commands",
        )


def _audio_segments(an: Analysis) -> list[Phoneme]:
    """Speech/silence segments of an analysis, as pseudo-phonemes for prosody (not reported)."""
    speech = an.loudness > 0
    out: list[Phoneme] = []
    i, n = 0, len(speech)
    while i < n:
        j = i
        while j < n and speech[j] == speech[i]:
            j += 1
        a, b = i * an.hop_ms, min(j * an.hop_ms, an.duration_ms)
        if b > a:
            if speech[i]:
                out.append(Phoneme("ə", a, b, 0, 0))
            elif b - a >= MIN_PAUSE_MS:
                out.append(Phoneme(PAUSE, a, b))
            elif out:
                out[-1] = Phoneme(out[-1].ipa, out[-1].start_ms, b, out[-1].stress, out[-1].word)
        i = j
    return out


def speak_audio(clip: AudioClip, *, idle: bool = True, seed: int = 0) -> SpeechClip:
    """The user's speech: the analyser's mouth, prosody from its loudness, and idle liveliness."""
    an = analyse(clip)
    duration = clip.duration_ms
    steps = [Step(m, 0.0, m.name, 0) for m in mouth_motions(an.track())]
    segments = _audio_segments(an)
    mono = clip.mono()
    steps += prosody_steps(segments, duration, audio=mono, sample_rate=clip.sample_rate)
    timeline = Timeline(steps, duration)
    if idle:
        timeline = with_idle(timeline, seed)
    return SpeechClip(clip, timeline, (), None, None, info={"voice": None})

"""Speech from text with eSpeak NG through its C library (ctypes): audio and one event per phoneme.

The library is found, in this order:

1. ``$LPSTUDIO_ESPEAK_LIBRARY`` when set (a path to ``libespeak-ng``; only that is tried, which is how
   tests simulate a machine without it);
2. the ``espeakng-loader`` wheel from PyPI (``pip install "liveportrait-studio[speech]"``), which ships
   ``libespeak-ng`` and its voice data;
3. the system library (Debian/Ubuntu ``libespeak-ng1``), with its compiled-in data folder.

One call (:func:`synthesize`) runs ``espeak_Synth`` in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode with a synth
callback, initialised with ``PHONEME_EVENTS | PHONEME_IPA``: the callback receives the audio (16-bit
mono at the library's sample rate, 22050 Hz for the bundled voices) and the events, among them one
``espeakEVENT_PHONEME`` per phoneme with its start (in samples) and IPA name. A phoneme ends where the
next one starts; the last one ends with the audio. (The command line's ``--pho`` output does not work
for Korean; the events do.)

The C library keeps global state, so it is initialised once per process on first use (never on
import) and every call holds a lock.

Constants below are from eSpeak NG's public header ``speak_lib.h``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CommandError, SpeechUnavailableError

ENV_LIBRARY: str = "LPSTUDIO_ESPEAK_LIBRARY"
"""Environment variable naming the ``libespeak-ng`` shared library to use (and nothing else)."""

INSTALL_HINT: str = 'pip install "liveportrait-studio[speech]" (or: sudo apt install libespeak-ng1)'

# speak_lib.h: espeak_AUDIO_OUTPUT, initialisation options, event types, synth flags, parameters.
AUDIO_OUTPUT_SYNCHRONOUS: int = 2
INITIALIZE_PHONEME_EVENTS: int = 0x0001
INITIALIZE_PHONEME_IPA: int = 0x0002
INITIALIZE_DONT_EXIT: int = 0x8000
EVENT_LIST_TERMINATED: int = 0
EVENT_WORD: int = 1
EVENT_SENTENCE: int = 2
EVENT_PHONEME: int = 7
POS_CHARACTER: int = 1
CHARS_UTF8: int = 1
PARAM_RATE: int = 1
PARAM_VOLUME: int = 2
PARAM_PITCH: int = 3
EE_OK: int = 0
EVENT_NAME_BYTES: int = 8
"""``espeak_EVENT.id.string`` is a ``char[8]``: the IPA name, NUL-terminated unless it fills all 8 bytes."""

# Voice settings (eSpeak's own ranges and defaults).
DEFAULT_RATE_WPM: int = 175
MIN_RATE_WPM: int = 80
MAX_RATE_WPM: int = 450
DEFAULT_PITCH: int = 50
MIN_PITCH: int = 0
MAX_PITCH: int = 100
VOLUME: int = 100

MAX_SYNTH_CHARS: int = 2000
"""Longest text one :func:`synthesize` call takes (split longer text into sentences first)."""

PAUSE: str = "_"
"""The phoneme name of a pause (eSpeak reports pauses as events with an empty name)."""
STRESS_MARKS: dict[str, int] = {"ˈ": 2, "ˌ": 1}
"""IPA stress marks eSpeak prefixes to a syllable's vowel: primary (2) and secondary (1)."""


@dataclass(frozen=True)
class Phoneme:
    """One phoneme on the clock of its audio: IPA name without stress marks (``"_"`` for a pause)."""

    ipa: str
    start_ms: float
    end_ms: float
    stress: int = 0
    """0 unstressed, 1 secondary, 2 primary stress (from eSpeak's ``ˌ``/``ˈ``)."""
    word: int = -1
    """Index of the word (in the text) it belongs to, -1 for pauses."""

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms

    @property
    def is_pause(self) -> bool:
        return self.ipa == PAUSE

    def shifted(self, dt_ms: float) -> Phoneme:
        return Phoneme(self.ipa, self.start_ms + dt_ms, self.end_ms + dt_ms, self.stress, self.word)

    def to_json(self) -> dict[str, object]:
        return {
            "ipa": self.ipa,
            "start_ms": round(self.start_ms, 3),
            "end_ms": round(self.end_ms, 3),
            "stress": self.stress,
        }


@dataclass(frozen=True)
class Utterance:
    """What eSpeak said: ``audio`` is ``(n_samples,)`` float32 in [-1, 1] at ``sample_rate``."""

    text: str
    voice: str
    sample_rate: int
    audio: np.ndarray
    phonemes: tuple[Phoneme, ...]

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.audio) / self.sample_rate


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    class _Id(ctypes.Union):
        _fields_ = [
            ("number", ctypes.c_int),
            ("name", ctypes.c_char_p),
            ("string", ctypes.c_char * EVENT_NAME_BYTES),
        ]

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _Id),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def unavailable_error(detail: str = "") -> SpeechUnavailableError:
    """The one-line error for a machine without eSpeak NG."""
    extra = f" ({detail})" if detail else ""
    return SpeechUnavailableError(f"speech needs the eSpeak NG library, which was not found{extra}; {INSTALL_HINT}")


def library_candidates() -> list[tuple[str, str | None]]:
    """``(library path, data folder or None for the library's own)`` in the order they are tried."""
    forced = os.environ.get(ENV_LIBRARY)
    if forced:
        return [(forced, None)]
    out: list[tuple[str, str | None]] = []
    try:
        import espeakng_loader  # type: ignore[import-not-found]

        lib, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
        if Path(lib).is_file() and Path(data).is_dir():
            out.append((lib, data))
    except (ImportError, RuntimeError, OSError):
        pass
    found = ctypes.util.find_library("espeak-ng")
    for name in ([found] if found else []) + ["libespeak-ng.so.1", "libespeak-ng.dylib", "espeak-ng.dll"]:
        if (name, None) not in out:
            out.append((name, None))
    return out


class _Espeak:
    """The loaded library (one per process)."""

    def __init__(self, lib: ctypes.CDLL, sample_rate: int, source: str) -> None:
        self.lib = lib
        self.sample_rate = sample_rate
        self.source = source
        self.voice: str | None = None
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []
        self._callback = _Callback(self._on_synth)  # kept alive as long as the library is
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: ctypes._Pointer, n: int, events: ctypes._Pointer) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            name = ""
            if ev.type == EVENT_PHONEME:
                raw = ctypes.string_at(ctypes.addressof(ev.id), EVENT_NAME_BYTES)
                name = raw.split(b"\0", 1)[0].decode("utf-8", errors="ignore")
            if ev.type in (EVENT_PHONEME, EVENT_WORD, EVENT_SENTENCE):
                self._events.append((ev.type, ev.sample, ev.text_position, name))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, list[tuple[int, int, int, str]]]:
        lib = self.lib
        if voice != self.voice:
            if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise SpeechUnavailableError(
                    f"eSpeak NG ({self.source}) has no voice {voice!r}; reinstall it with its data: {INSTALL_HINT}"
                )
            self.voice = voice
        for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_VOLUME, VOLUME)):
            lib.espeak_SetParameter(param, value, 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        if err != EE_OK:
            raise SpeechUnavailableError(f"eSpeak NG could not speak {text[:40]!r} (error {err})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


_LOCK = threading.Lock()
_ENGINE: list[_Espeak] = []  # filled on first use


def _load() -> _Espeak:
    if _ENGINE:
        return _ENGINE[0]
    tried: list[str] = []
    for path, data in library_candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            tried.append(path)
            continue
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        options = INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode() if data else None, options)
        if rate <= 0:
            raise unavailable_error(f"{path} found but its voice data is missing")
        engine = _Espeak(lib, rate, path)
        _ENGINE.append(engine)
        return engine
    raise unavailable_error("tried " + ", ".join(tried) if tried else "")


def speech_available() -> bool:
    """Whether :func:`synthesize` can work here (loads the library on first call)."""
    try:
        with _LOCK:
            _load()
    except SpeechUnavailableError:
        return False
    return True


def _strip_stress(name: str) -> tuple[str, int]:
    stress = 0
    for mark, level in STRESS_MARKS.items():
        if mark in name:
            stress = max(stress, level)
            name = name.replace(mark, "")
    return name, stress


def _phonemes(events: Sequence[tuple[int, int, int, str]], n_samples: int, sample_rate: int) -> tuple[Phoneme, ...]:
    """Phoneme events -> intervals (a phoneme ends where the next starts), pauses merged."""
    word = -1
    starts: list[tuple[int, str, int, int]] = []  # (sample, name, stress, word)
    for kind, sample, _pos, name in events:
        if kind == EVENT_WORD:
            word += 1
        elif kind == EVENT_PHONEME:
            ipa, stress = _strip_stress(name)
            ipa = ipa or PAUSE
            starts.append((min(max(sample, 0), n_samples), ipa, stress, -1 if ipa == PAUSE else max(word, 0)))
    out: list[Phoneme] = []
    ms = 1000.0 / sample_rate
    for i, (sample, ipa, stress, w) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else n_samples
        if end <= sample:
            continue
        if out and ipa == PAUSE and out[-1].is_pause:
            out[-1] = Phoneme(PAUSE, out[-1].start_ms, end * ms)
            continue
        out.append(Phoneme(ipa, sample * ms, end * ms, stress, w))
    if out and out[0].start_ms > 0:  # audio before the first event (rare): a pause
        out.insert(0, Phoneme(PAUSE, 0.0, out[0].start_ms))
    return tuple(out)


def check_voice_settings(rate: int, pitch: int) -> None:
    """Raise :class:`CommandError` unless ``rate`` (words per minute) and ``pitch`` are in eSpeak's ranges."""
    if not (isinstance(rate, int) and MIN_RATE_WPM <= rate <= MAX_RATE_WPM):
        raise CommandError(
            f"speech rate {rate!r} is outside {MIN_RATE_WPM} .. {MAX_RATE_WPM} words per minute",
            hint=f"{DEFAULT_RATE_WPM} is eSpeak's normal rate",
        )
    if not (isinstance(pitch, int) and MIN_PITCH <= pitch <= MAX_PITCH):
        raise CommandError(
            f"speech pitch {pitch!r} is outside {MIN_PITCH} .. {MAX_PITCH}", hint=f"{DEFAULT_PITCH} is the default"
        )


def synthesize(text: str, voice: str, *, rate: int = DEFAULT_RATE_WPM, pitch: int = DEFAULT_PITCH) -> Utterance:
    """Speak ``text`` with an eSpeak voice (``"ko"``, ``"en-us"``...): audio and phoneme intervals.

    Raises:
        SpeechUnavailableError: eSpeak NG (or the voice) is not installed.
        CommandError: empty or too long text, rate or pitch out of range.
    """
    if not text.strip():
        raise CommandError("nothing to say: the text is empty", hint="give a sentence, e.g. '안녕하세요'")
    if len(text) > MAX_SYNTH_CHARS:
        raise CommandError(
            f"text of {len(text)} characters is too long for one utterance",
            hint=f"split it into sentences of at most {MAX_SYNTH_CHARS} characters",
        )
    check_voice_settings(rate, pitch)
    with _LOCK:
        engine = _load()
        pcm, events = engine.synth(text, voice, rate, pitch)
        sample_rate = engine.sample_rate
    audio = pcm.astype(np.float32) / np.float32(32768.0)
    return Utterance(text, voice, sample_rate, audio, _phonemes(events, len(audio), sample_rate))

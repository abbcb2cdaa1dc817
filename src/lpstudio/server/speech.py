"""The web app's voice: commands that speak, the talk button, and speech audio the user uploads.

Everything here is a plain function (run it off the event loop) that another front end can reuse:

* :func:`speaking_command` / :func:`talk_preset` — a ``/generate`` request that speaks -> a
  :class:`~lpstudio.speech.clip.SpeechClip` (eSpeak NG), bounded by the clip limit *while* it is
  synthesised (a text over the limit costs at most one sentence more than the limit);
* :func:`check_audio_upload` / :func:`uploaded_speech` — an uploaded audio file -> the same kind of
  clip through the audio analyser (loudness + formants), bounded in bytes before decoding and in
  seconds while decoding;
* :func:`audio_start` — the ``audio`` object of the stream's ``start`` line, serialised once (off the
  loop): base64 WAV padded to exactly ``n_frames / fps`` s, and the frame clock (frame ``k`` is shown
  ``k * frame_ms`` after the audio's first sample), plus the key shared renders are told apart by;
* :class:`SpeechDesk` — where synthesis runs: admitted first (a bounded number of spoken requests wait,
  the next one gets 429 at once), then on its own one-thread executor (eSpeak NG speaks one text at a
  time behind a lock anyway), so spoken requests never hold the threads that decode photos and plan
  other requests;
* :class:`SpeechMemo` — spoken requests remembered (bounded in bytes): eSpeak NG's output varies
  by a few samples from one call to the next (its generator carries state between utterances), so
  the same request is answered with the same audio, and so the same frames, from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from ..errors import AudioError, CommandError, OverloadedError, PayloadTooLargeError
from ..expressions.compose import IDLE_TAIL_MS
from ..expressions.presets import get_preset
from ..speech.audio import AudioClip, check_audio_kind, decode_audio, resample
from ..speech.clip import SpeechClip, speak_audio
from ..speech.command import TALK, command_speaks, command_speech
from ..speech.espeak import DEFAULT_RATE_WPM, MAX_RATE_WPM, MIN_RATE_WPM
from ..speech.payload import audio_payload
from .limits import ServiceLimits

TALK_COMMAND: str = "말해봐"
"""What the talk button asks for: the default (Korean) sentence."""
PAGE_AUDIO_MAX_RATE: int = 24_000
"""Uploaded audio is sent back to the page mono at no more than this rate (speech needs far less),
so 30 s is at most ~1.4 MB of WAV in the start line."""
PAGE_RATES: frozenset[int] = frozenset({8_000, 11_025, 12_000, 16_000, 22_050, 24_000})
"""Usual speech rates up to :data:`PAGE_AUDIO_MAX_RATE`, kept as they are; any other is converted to that."""
AUDIO_UPLOAD_SUFFIXES: tuple[str, ...] = (".wav", ".mp3", ".m4a", ".ogg", ".oga", ".opus", ".flac", ".webm")
"""File names the browser's picker offers (a hint to the page only: the first bytes decide what a file is)."""
UPLOAD_HINT = "upload a .wav, .mp3, .m4a, .ogg or .flac file with speech in it"
REASON_SPEECH = "speech"
"""Admission reason of a spoken request refused because the speech queue is full (metrics label)."""
T = TypeVar("T")
SPEECH_MEMO_BYTES: int = 64 * 2**20
"""Default bound of a :class:`SpeechMemo` (a server takes ``ServiceLimits.speech_memo_bytes``)."""


@dataclass(frozen=True)
class SpeechStart:
    """A speaking clip with its ``start``-line audio object (JSON bytes) and the key of that audio."""

    clip: SpeechClip
    audio_json: bytes
    audio_key: str


def _talk_rate(speed: float) -> int:
    return int(min(MAX_RATE_WPM, max(MIN_RATE_WPM, round(DEFAULT_RATE_WPM * speed))))


def speaking_command(command: str, *, idle: bool, seed: int, limits: ServiceLimits) -> SpeechClip | None:
    """The speaking clip of a command, or None when it does not speak (render it the usual way).

    Raises CommandError (not understood), LimitError (longer than the clip limit) and
    SpeechUnavailableError (no eSpeak NG here: the server answers 501).
    """
    limits.check_command(command)
    return command_speech(command, idle=idle, seed=seed, tail_ms=IDLE_TAIL_MS, max_ms=limits.max_clip_ms)


def request_speaks(preset: str | None, command: str | None, *, idle_loop: bool, limits: ServiceLimits) -> bool:
    """Whether a ``/generate`` request speaks (a parse, no synthesis), so it can be admitted before it is.

    An unknown preset or a command that does not parse is "silent" here: planning it refuses it.
    """
    if idle_loop:
        return False
    try:
        if preset:
            return get_preset(preset).name == TALK
        if command and command.strip():
            limits.check_command(command)
            return command_speaks(command)
    except CommandError:
        return False
    return False


def talk_preset(*, speed: float, idle: bool, seed: int, limits: ServiceLimits) -> SpeechClip:
    """The talk button: the default sentence, spoken at ``speed`` times the default rate."""
    clip = command_speech(
        TALK_COMMAND,
        rate=_talk_rate(speed),
        idle=idle,
        seed=seed,
        tail_ms=IDLE_TAIL_MS,
        max_ms=limits.max_clip_ms,
    )
    if clip is None:  # pragma: no cover - the talk command always speaks
        raise AssertionError(f"{TALK_COMMAND!r} did not parse as {TALK!r}")
    return clip


def check_audio_upload(name: str, content_type: str | None, data: bytes, limits: ServiceLimits) -> None:
    """Refuse an empty file, one over the size limit, or one whose first bytes are no audio we read.

    Cheap (a length and a look at the first bytes), so a front end may call it before admitting the
    decode. ``content_type`` (the client's word) is not trusted and not used: only the bytes count.
    """
    del content_type  # kept in the signature for front ends that pass it; the first bytes decide
    if len(data) > limits.max_audio_upload_bytes:
        raise PayloadTooLargeError(
            f"{name} is larger than {limits.max_audio_upload_bytes / 2**20:g} MB",
            hint=f"upload at most {limits.max_clip_ms / 1000:g} s of speech (a compressed .mp3 or .m4a is smaller)",
        )
    if not data:
        raise AudioError(f"{name} is empty", hint=UPLOAD_HINT)
    check_audio_kind(data, name)


def page_rate(rate: int) -> int:
    """The rate an upload at ``rate`` Hz is decoded to: kept when it is a usual speech rate up to
    :data:`PAGE_AUDIO_MAX_RATE`, else :data:`PAGE_AUDIO_MAX_RATE` (so the analyser never designs a
    filter from an odd ratio such as 23,999 -> 16,000)."""
    return rate if rate in PAGE_RATES else PAGE_AUDIO_MAX_RATE


def page_audio(clip: AudioClip) -> AudioClip:
    """Mono, at most :data:`PAGE_AUDIO_MAX_RATE`: what the analyser hears and the page plays."""
    rate = min(clip.sample_rate, PAGE_AUDIO_MAX_RATE)
    return AudioClip.from_mono(resample(clip.mono(), clip.sample_rate, rate), rate)


def uploaded_speech(data: bytes, name: str, *, idle: bool, seed: int, limits: ServiceLimits) -> SpeechClip:
    """Decode an uploaded audio file (at most the clip limit long) and lip-sync to it.

    Raises AudioError: not decodable, no audio track, no samples, or longer than the clip limit.
    """
    audio = decode_audio(data, name, max_seconds=limits.max_clip_ms / 1000.0, choose_rate=page_rate, mono=True)
    clip = speak_audio(audio, idle=idle, seed=seed)
    return replace(clip, text=None, info={"voice": None, "upload": name})


def audio_start(clip: SpeechClip, fps: float) -> SpeechStart:
    """The ``audio`` object of the ``start`` line (serialised once) and the digest of its WAV."""
    payload = audio_payload(clip, fps)
    key = hashlib.sha256(payload["wav_base64"].encode("ascii")).hexdigest()
    payload["key"] = key[:16]
    return SpeechStart(clip, json.dumps(payload, ensure_ascii=False).encode("utf-8"), key)


class SpeechDesk:
    """Speech synthesis of one server: a bounded queue in front of its own one-thread executor.

    :meth:`run` admits a job or raises :class:`~lpstudio.errors.OverloadedError` (429 with
    ``Retry-After``) at once when ``max_pending`` jobs are already waiting or running; a job keeps its
    place until it has finished on the executor (a client that went away does not free it early, as
    the synthesis it started still runs). Thread-safe; another front end can hold one too.
    """

    def __init__(self, max_pending: int, retry_after_s: float, on_reject: Callable[[str], None] | None = None) -> None:
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        self.pending = 0
        self.rejected = 0
        self._on_reject = on_reject
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpstudio-speech")

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """``fn`` queued on the speech thread, or 429 when the queue is full (nothing is queued then)."""
        with self._lock:
            if self.pending >= self.max_pending:
                self.rejected += 1
                if self._on_reject is not None:
                    self._on_reject(REASON_SPEECH)
                # The queue drains one text at a time; a few seconds per text is the usual cost.
                retry = self.retry_after_s * max(1, self.pending)
                raise OverloadedError(
                    f"the server is busy: {self.pending} spoken requests are waiting for speech synthesis (the limit)",
                    reason=REASON_SPEECH,
                    retry_after_s=retry,
                )
            self.pending += 1
        try:
            future = self._executor.submit(fn)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    async def run(self, fn: Callable[[], T]) -> T:
        """:meth:`submit`, awaited without blocking the event loop or the shared thread pool."""
        return await asyncio.wrap_future(self.submit(fn))

    def _done(self, _future: Future | None) -> None:
        with self._lock:
            self.pending -= 1

    def close(self) -> None:
        """Stop the speech thread (jobs not started are dropped)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class SpeechMemo:
    """Spoken requests' :class:`SpeechStart` by request key, at most ``max_bytes`` (thread-safe)."""

    def __init__(self, max_bytes: int = SPEECH_MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Hashable, tuple[SpeechStart, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], SpeechStart | None]) -> SpeechStart | None:
        """The remembered start of ``key``, else ``make()`` (remembered when it fits; None is not)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
        made = make()  # outside the lock: synthesis takes a while, other requests go on
        if made is None:
            return None
        size = int(made.clip.audio.samples.nbytes) + len(made.audio_json)
        with self._lock:
            if size <= self.max_bytes and key not in self._items:
                self._items[key] = (made, size)
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, (_, dropped) = self._items.popitem(last=False)
                    self.bytes -= dropped
            item = self._items.get(key)
        return item[0] if item is not None else made

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

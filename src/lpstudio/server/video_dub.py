"""Dubbing a source video over HTTP: the ``text`` and ``speech`` choices of ``POST /video-source``.

The CLI's ``lpstudio speak VIDEO "안녕하세요"`` / ``--audio speech.wav`` as a server job: only a
feathered mouth region follows the new speech and its audio replaces the video's
(:class:`~lpstudio.drive.dub_job.DubVideoJob`). The speech comes the ways the server's other speech
comes, with the same bounds:

* ``text``: at most ``max_command_chars`` characters, synthesised by eSpeak NG (voice by script:
  Hangul is Korean) on the server's :class:`~.speech.SpeechDesk` (its bounded queue answers 429 when
  full; the event loop only awaits), stopped as soon as it passes ``max_clip_ms``;
* ``speech``: an uploaded audio file checked like ``/generate-audio``'s (:func:`~.speech.check_audio_upload`:
  size, then its first bytes decide the format) and decoded off the loop behind the decode slots,
  at most ``max_clip_ms`` long (:func:`~.speech.uploaded_speech`).

Then, before any model work, a speech longer than the source video (its header) is a one-line 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import UploadFile

from ..errors import LimitError, ParamError
from .limits import ServiceLimits
from .speech import SpeechDesk, check_audio_upload, uploaded_speech
from .video_jobs import UploadProbe, VideoJob

DUB_VOICE = "auto"
"""The voice of a dub's text: chosen per sentence by its script, as for the page's spoken commands."""
DUB_SEED = 0
"""A dub has no idle liveliness, so the seed only names the (unused) variation: fixed."""


@dataclass(eq=False)
class DubRequest:
    """The speech of a dub as asked for: ``text`` or an uploaded ``upload`` (``both``: the client sent both)."""

    text: str | None
    upload: UploadFile | None
    both: bool = False
    name: str = "the speech"
    data: bytes = b""
    clip: Any = None  # the SpeechClip once prepared

    @classmethod
    def of(cls, text: str | None, upload: UploadFile | None, limits: ServiceLimits) -> DubRequest | None:
        """The dub a form asks for (None: not a dub); a text over ``max_command_chars`` is refused here."""
        text = text.strip() if text else None
        if text is None and upload is None:
            return None
        if text is not None and len(text) > limits.max_command_chars:
            raise LimitError(
                f"the text to say is {len(text)} characters long; the limit is {limits.max_command_chars}",
                hint="say a shorter text, or dub the video in parts",
            )
        name = _clean(upload.filename) if upload is not None else "the speech"
        return cls(text, upload, both=text is not None and upload is not None, name=name)

    async def read(self, limits: ServiceLimits) -> None:
        """An upload's bytes (at most one past the limit), refused when empty, too large or not audio."""
        if self.upload is None:
            return
        self.data = await self.upload.read(limits.max_audio_upload_bytes + 1)
        check_audio_upload(self.name, self.upload.content_type, self.data, limits)


def _clean(filename: str | None) -> str:
    from .drive_routes import _clean as clean_name

    return clean_name(filename)


def dub_audio_check(audio: str) -> None:
    """A dub's sound is its speech: ``audio=driving`` or ``none`` makes no sense for it (400)."""
    if audio != "source":
        raise ParamError(
            f"audio={audio} does not apply to a dub: the speech is the result's sound",
            hint="leave out audio when you send text or speech",
        )


async def prepare_dub(dub: DubRequest, job: VideoJob, probe: UploadProbe, state: Any, desk: SpeechDesk) -> None:
    """The dub's speech clip (off the event loop), its length checked against the source video's header.

    Sets ``dub.clip`` and the job's expected output frames. Raises LimitError (400, one line) for a
    speech longer than the video or than ``max_clip_ms``, AudioError for an upload it cannot decode,
    OverloadedError (429) when the speech queue is full.
    """
    from ..drive.dub_job import DUB_HOLD_FRAMES, check_dub_length, dub_too_long

    limits = state.limits
    if dub.text is not None:
        text = dub.text

        def synthesise() -> Any:
            from ..speech.clip import speak_text

            return speak_text(text, DUB_VOICE, idle=False, seed=DUB_SEED, max_audio_ms=limits.max_clip_ms)

        dub.clip = await desk.run(synthesise)  # the speech thread, behind the speech queue's bound
    else:
        data, name = dub.data, dub.name
        dub.data = b""
        async with state.decode_slots:
            dub.clip = await state.off_loop(
                lambda: uploaded_speech(data, name, idle=False, seed=DUB_SEED, limits=limits)
            )
    job.driving_name = dub.name
    needed = check_dub_length(dub.clip.audio_ms, probe.fps, probe.frames, probe.seconds, job.source_name)
    if needed > job.allowed_frames + DUB_HOLD_FRAMES:  # the header says nothing; the length limit does
        raise dub_too_long(dub.clip.audio_ms / 1000.0, job.source_name, job.allowed_frames / probe.fps)
    job.units_total = needed


def dub_job(engine: Any, source: str, dub: DubRequest, result: Any, options: Any, name: str) -> Any:
    """On a thread: the :class:`~lpstudio.drive.dub_job.DubVideoJob` of a prepared dub (``options``: V2VOptions)."""
    from ..drive.dub_job import DubVideoJob

    return DubVideoJob(
        engine,
        source,
        dub.clip,
        result,
        no_crop=options.no_crop,
        batch_size=options.batch_size,  # W+G rows per step, as the others'
        max_frames=options.max_frames,
        name=name,
    )


__all__ = ["DubRequest", "dub_audio_check", "dub_job", "prepare_dub"]

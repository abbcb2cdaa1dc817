"""A source VIDEO for ``animate``, ``speak`` and ``drive SOURCE.mp4 speech.wav`` (not a sub-command).

* ``lpstudio animate talk.mp4 "웃어줘" -o out.mp4`` — the command's timeline (the same planner as for
  a photo, without idle liveliness: the video has its own) layered on each frame's own expression
  and head motion; ``--lip-ratio R`` holds the official retargeting-video lip target on every
  frame (``0``: silent lips). The output has the video's length, fps and audio: a command longer
  than the video ends with it; after a shorter one the video plays on with its own motion.
* ``lpstudio speak talk.mp4 "안녕하세요" -o dubbed.mp4``, ``lpstudio speak talk.mp4 --audio
  speech.wav -o dubbed.mp4`` and ``lpstudio drive talk.mp4 speech.wav -o dubbed.mp4`` — dubbing:
  only the mouth follows the new speech (:mod:`lpstudio.drive.source_edits`), the new audio
  replaces the old, and the output lasts as long as the speech. A speech longer than the video
  (by more than :data:`~lpstudio.drive.dub_job.DUB_HOLD_FRAMES`) is refused before any work: the video is never looped
  or frozen.

Frames stream (one source frame and one batch in memory), with a progress bar over the output's
frames.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import CommandError, ParamError

AUDIO_FORMATS: tuple[str, ...] = ("mp4", "mov", "mkv", "webm")
"""Output formats that carry the source video's audio (gif and PNG frames have none)."""


def is_source_video(path: str | os.PathLike[str] | None) -> bool:
    """True for a video file (by extension) or a folder of frames: a source video, not a photo."""
    from ..drive.v2v import is_source_video as is_video_source

    return path is not None and is_video_source(path)


def check_lip_ratio(value: float | None) -> float | None:
    """``--lip-ratio``: None, or a target lip-open ratio inside the slider range (else :class:`ParamError`)."""
    if value is None:
        return None
    from ..params import SPECS_BY_NAME

    spec = SPECS_BY_NAME["lip_ratio"]
    if not spec.minimum <= value <= spec.maximum:
        raise ParamError(
            f"--lip-ratio must be between {spec.minimum:g} and {spec.maximum:g}, got {value:g}",
            hint="0 closes the lips (silent), about 0.3 is a wide-open mouth",
        )
    return float(value)


def _bar(total: int | None, enabled: bool, desc: str) -> Any:
    from ..drive.source_video import progress_bar

    return progress_bar(total, enabled, desc)


def animate_video(args: argparse.Namespace) -> int:
    """``lpstudio animate SOURCE.mp4 [TEXT] -o OUT``: the command layered over the video's own motion."""
    from ..drive.source_edits import command_items, render_source_edits
    from ..drive.source_video import iter_source_frames, open_source_video
    from ..expressions.compose import build_timeline
    from ..video import detect_format
    from ..video_writer import VideoWriter
    from .common import load_engine

    fmt = detect_format(args.output)  # a bad output name fails before anything is loaded
    lip_ratio = check_lip_ratio(args.lip_ratio)
    if args.batch_size < 1:
        raise ParamError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.cache_dir:
        raise ParamError(
            "--cache-dir caches clips of a photo, not of a source video", hint="leave out --cache-dir for a video"
        )
    timeline = None
    if args.text is not None:
        _, timeline = build_timeline(args.text, idle=False)  # the video has its own liveliness
    elif lip_ratio is None:
        raise CommandError(
            "what should the video do?", hint='give a command, e.g. "웃어줘", or --lip-ratio 0 for silent lips'
        )
    info = open_source_video(args.photo)  # missing, corrupt or 0-frame videos fail here
    crop = not args.no_crop
    engine = load_engine(args, face=crop)
    fps = info.fps_exact
    audio = info.has_audio and fmt in AUDIO_FORMATS
    frames = iter_source_frames(engine, args.photo, no_crop=args.no_crop, face_index=args.face_index)
    items = command_items(frames, timeline, float(fps), lip_ratio=lip_ratio)
    bar = _bar(info.frame_count, not args.no_progress, "animating the video")
    start, written = time.perf_counter(), 0
    try:
        with VideoWriter(args.output, fps, fmt, audio_from=args.photo if audio else None) as writer:
            for image in render_source_edits(
                engine, items, batch_size=args.batch_size, paste_back=crop and not args.face_only
            ):
                writer.write(image)
                written += 1
                bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    print(
        f"wrote {Path(args.output)} ({written} frames, {written / float(fps):.2f} s at {float(fps):.3g} fps, "
        f"{'with the video audio' if audio else 'no audio'}, {fmt}; {seconds:.1f} s)"
    )
    return 0


def dub_video(
    engine_args: argparse.Namespace,
    video: Path,
    clip: Any,
    output: Path,
    *,
    crop: bool = True,
    face_index: int | None = None,
    face_only: bool = False,
    batch_size: int = 4,
    crf: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Dub ``video`` with the speech ``clip`` (a ``SpeechClip``) into ``output`` (streamed).

    Output frame ``k`` is source frame ``k`` with the mouth of the speech at ``k / fps``; the
    output has ``ceil(speech_s * fps)`` frames at the video's fps and the speech as its audio.

    Raises:
        LimitError: the speech is longer than the video (checked from the header before the models
            load, and again when the frames run out).
    """
    from ..drive.dub_job import DUB_HOLD_FRAMES, check_dub_length, dub_too_long
    from ..drive.source_edits import dub_items, render_source_edits
    from ..drive.source_video import iter_source_frames, open_source_video
    from ..speech.mux import DEFAULT_CRF
    from ..video_writer import VideoWriter
    from .common import load_engine

    info = open_source_video(video)
    fps = info.fps_exact
    needed = check_dub_length(clip.audio_ms, float(fps), info.frame_count, None, str(video))  # before the models
    speech_s = clip.audio_ms / 1000.0
    engine = load_engine(engine_args, face=crop)
    detect = getattr(engine_args, "detect_every", None)  # drive's --detect-every
    frames = iter_source_frames(
        engine,
        video,
        no_crop=not crop,
        face_index=face_index,
        max_frames=needed,
        **({} if detect is None else {"detect_every": detect}),
    )

    bar = _bar(needed, progress, "dubbing")
    start, written = time.perf_counter(), 0
    last = None
    try:
        with VideoWriter(
            output, fps, audio_channels=clip.audio.channels, crf=DEFAULT_CRF if crf is None else crf
        ) as writer:  # the dub replaces `output` only once complete; the old audio is not copied
            writer.add_audio(clip.audio)
            for image in render_source_edits(
                engine,
                dub_items(frames, clip.timeline, float(fps)),
                batch_size=batch_size,
                paste_back=crop and not face_only,
                mouth_only=True,
            ):
                writer.write(image)
                last, written = image, written + 1
                bar.update(1)
            if written < needed - DUB_HOLD_FRAMES or last is None:
                raise dub_too_long(speech_s, str(video), written / float(fps))
            while written < needed:  # the speech ends inside the frame after the video's last: hold it
                writer.write(last)
                written += 1
                bar.update(1)
    finally:
        bar.close()
    return {
        "frames": written,
        "fps": fps,
        "video_s": written / float(fps),
        "audio_s": speech_s,
        "language": clip.language,
        "seconds": time.perf_counter() - start,
    }


def print_dub_summary(output: Path, summary: dict[str, Any], what: str) -> None:
    """One line on stderr about a finished dub."""
    print(
        f"wrote {output}: {summary['frames']} frames, {float(summary['fps']):.3g} fps, "
        f"{summary['video_s']:.2f} s, dubbed with {what} ({summary['audio_s']:.2f} s)",
        file=sys.stderr,
    )


def speech_for_video(args: argparse.Namespace, text: str | None) -> Any:
    """The whole speech of ``speak VIDEO``, as one ``SpeechClip`` without idle liveliness or prosody use.

    Synthesised (or analysed) before the models load, so its length can be checked against the video.
    """
    from ..speech.clip import concat, iter_speech, speak_audio

    if args.audio is not None:
        from ..speech.audio import read_audio

        return speak_audio(read_audio(args.audio), idle=False)
    assert text is not None
    return concat(list(iter_speech(text, args.voice, rate=args.rate, pitch=args.pitch, idle=False)))


def speak_video(args: argparse.Namespace, video: Path, text: str | None) -> int:
    """``lpstudio speak VIDEO TEXT -o dubbed.mp4`` (or ``--audio speech.wav``): dub the video."""
    if args.as_command:
        raise CommandError(
            "--command does not apply to a source video: a dub moves only the lips",
            hint='speak the text without --command, or `lpstudio animate VIDEO "..."` for expressions',
        )
    clip = speech_for_video(args, text)
    summary = dub_video(
        args,
        video,
        clip,
        args.output,
        crop=not args.no_crop,
        face_index=args.face_index,
        face_only=args.face_only,
        batch_size=args.batch_size,
        crf=args.crf,
        progress=not args.no_progress,
    )
    print_dub_summary(args.output, summary, clip.language or f"{args.audio}")
    return 0


def drive_video_by_audio(args: argparse.Namespace) -> int:
    """``lpstudio drive VIDEO speech.wav -o dubbed.mp4``: dub the video with the speech audio."""
    from ..speech.audio import read_audio
    from ..speech.clip import speak_audio
    from .common import check_output_path
    from .speak import OUTPUT_SUFFIXES

    if args.batch_size < 1:
        raise ParamError(f"--batch-size must be at least 1, got {args.batch_size}")
    output = check_output_path(args.output, OUTPUT_SUFFIXES)
    if getattr(args, "audio", None) is not None or getattr(args, "no_audio", False):
        raise ParamError(
            "--audio/--no-audio do not apply to dubbing: the speech is the output's audio",
            hint="leave them out",
        )
    clip = speak_audio(read_audio(args.driving), idle=False)
    summary = dub_video(
        args,
        Path(args.source),
        clip,
        output,
        crop=not args.no_crop,
        face_index=args.face_index,
        batch_size=args.batch_size,
        crf=args.crf,
        progress=not args.quiet,
    )
    print_dub_summary(output, summary, str(args.driving))
    return 0

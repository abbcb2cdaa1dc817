"""``lpstudio speak [PHOTO] TEXT -o talk.mp4``: the portrait says TEXT out loud, lips in sync.

* ``lpstudio speak "안녕하세요, 반갑습니다" -o talk.mp4`` — one positional argument is the text (the
  bundled sample portrait speaks it); ``lpstudio speak PHOTO "Nice to meet you" -o talk.mp4``.
* ``lpstudio speak [PHOTO] --audio speech.wav -o talk.mp4`` — the user's speech (wav, mp3, m4a, or a
  video's audio track) drives the mouth; that audio is muxed into the output.
* ``--command``: TEXT is an expression command that may speak ("웃으면서 말해줘 안녕하세요").
* ``--dry-run --json`` needs no weights: ``{fps, audio_ms, language, phonemes: [{ipa, start_ms,
  end_ms, stress}], frames: [{all 17 parameters}], n_frames, steps, ...}`` with
  ``n_frames = ceil(audio_ms * fps / 1000)`` (``phonemes`` is empty for ``--audio``).

Text is spoken sentence by sentence: the frames of the first sentence are rendered and written
(with its audio) while the rest is still to be synthesised, so memory stays bounded. The mp4's
audio is padded with silence to the video's length: the two agree within one AAC frame (21 ms).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .common import add_engine_options, check_output_path, load_engine, sample_portrait
from .crop_args import crop_options_from
from .faces import add_faces_option, check_faces_args

OUTPUT_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".mkv")
DEFAULT_BATCH_SIZE: int = 4
FRAMES_PER_CALL_BATCHES: int = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..expressions.timeline import DEFAULT_FPS
    from ..speech.espeak import DEFAULT_PITCH, DEFAULT_RATE_WPM, MAX_PITCH, MAX_RATE_WPM, MIN_PITCH, MIN_RATE_WPM

    p = subparsers.add_parser(
        "speak",
        help="make the portrait say a text out loud (or lip-sync to your audio) and write a video",
        description="Speak TEXT (Korean or English, eSpeak NG) or lip-sync to --audio, on PHOTO (default: the "
        "bundled sample portrait). One positional argument is the text.",
    )
    p.add_argument("inputs", nargs="*", metavar="[PHOTO] TEXT", help="the photo (optional) and the text to say")
    p.add_argument("-o", "--output", type=Path, default=None, help="output video (.mp4, .mov, .mkv)")
    p.add_argument("--audio", type=Path, default=None, help="lip-sync to this speech (wav, mp3, m4a, or a video)")
    p.add_argument(
        "--command",
        dest="as_command",
        action="store_true",
        help="TEXT is an expression command, e.g. '웃으면서 말해줘 안녕'",
    )
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frames per second (default {DEFAULT_FPS:g})")
    p.add_argument("--voice", default="auto", help="ko, en-us or auto (Hangul -> ko, else en-us; per sentence)")
    p.add_argument(
        "--rate",
        type=int,
        default=DEFAULT_RATE_WPM,
        help=f"speech rate, words per minute ({MIN_RATE_WPM}-{MAX_RATE_WPM}, default {DEFAULT_RATE_WPM})",
    )
    p.add_argument(
        "--pitch",
        type=int,
        default=DEFAULT_PITCH,
        help=f"voice pitch ({MIN_PITCH}-{MAX_PITCH}, default {DEFAULT_PITCH})",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the idle liveliness (default 0)")
    p.add_argument("--no-idle", action="store_true", help="no idle blinks, breathing or saccades")
    p.add_argument("--dry-run", action="store_true", help="only work out audio and timeline (no weights needed)")
    p.add_argument(
        "--json", action="store_true", help="with --dry-run: print audio length, phonemes and frames as JSON"
    )
    p.add_argument("--no-crop", action="store_true", help="the photo is already a cropped face (resized to 256)")
    p.add_argument("--face-index", type=int, default=None, help="which face to use when there are several")
    add_faces_option(p)
    p.add_argument("--face-only", action="store_true", help="write the 512x512 face crop instead of the full photo")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--crf", type=int, default=None, help="x264 quality, lower is better (default 15)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_options(p, default_backend="auto", crop_controls=True)
    p.set_defaults(handler=run)


def _inputs(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    from ..errors import CommandError

    items = list(args.inputs)
    if args.audio is not None:
        if len(items) > 1:
            raise CommandError(
                f"with --audio give at most the photo, got {len(items)} arguments",
                hint="lpstudio speak [PHOTO] --audio speech.wav -o talk.mp4",
            )
        return (Path(items[0]) if items else None), None
    if not items:
        raise CommandError("what should the portrait say?", hint='lpstudio speak [PHOTO] "안녕하세요" -o talk.mp4')
    if len(items) > 2:
        raise CommandError(
            f"expected [PHOTO] TEXT, got {len(items)} arguments", hint='put the text in quotes: "Nice to meet you"'
        )
    return (Path(items[0]) if len(items) == 2 else None), items[-1]


def speech_clips(args: argparse.Namespace, text: str | None, audio: Path | None) -> Iterator[Any]:
    """The clips to play, in order (text: one per sentence, synthesised as they are asked for)."""
    from ..errors import CommandError

    idle = not args.no_idle
    if audio is not None:
        from ..speech.audio import read_audio
        from ..speech.clip import speak_audio

        yield speak_audio(read_audio(audio), idle=idle, seed=args.seed)
        return
    assert text is not None
    if args.as_command:
        from ..speech.command import command_speech

        clip = command_speech(text, voice=args.voice, rate=args.rate, pitch=args.pitch, idle=idle, seed=args.seed)
        if clip is None:
            raise CommandError(
                f"the command {text!r} does not speak", hint="add a speech verb: '말해줘 ...', 'say: ...'"
            )
        yield clip
        return
    from ..speech.clip import iter_speech

    yield from iter_speech(text, args.voice, rate=args.rate, pitch=args.pitch, idle=idle, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    import json

    from ..errors import ParamError

    photo, text = _inputs(args)
    if args.batch_size < 1:
        raise ParamError(f"--batch-size must be at least 1, got {args.batch_size}")
    from ..expressions.timeline import check_fps

    check_fps(args.fps)
    crop_options_from(args)  # bad crop controls: one error line before any speech is synthesised
    faces = check_faces_args(args)
    if not args.dry_run:
        if args.output is None:
            raise ParamError("no output file", hint="give -o talk.mp4 (or --dry-run --json to see the timeline)")
        check_output_path(args.output, OUTPUT_SUFFIXES)
    if args.audio is not None and not args.audio.is_file():
        from ..errors import AudioError

        raise AudioError(f"cannot read audio {args.audio}: no such file", hint="check the path")
    if photo is not None and not args.dry_run:
        from .video_edits import is_source_video, speak_video

        if is_source_video(photo):  # dubbing: only the video's lips follow the speech
            return speak_video(args, photo, text)
    clips = speech_clips(args, text, args.audio)
    if args.dry_run:
        from ..speech.clip import concat

        clip = concat(list(clips))
        data = clip.to_json(args.fps)
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
        else:
            print(
                f"{clip.audio_ms / 1000:.2f} s of speech ({clip.language or 'your audio'}), "
                f"{data['n_frames']} frames at {args.fps:g} fps, {len(clip.phonemes)} phonemes"
            )
        return 0
    summary = render_speech(
        args,
        photo,
        clips,
        args.output,
        fps=args.fps,
        crop=not args.no_crop,
        face_index=args.face_index,
        face_only=args.face_only,
        batch_size=args.batch_size,
        crf=args.crf,
        progress=not args.no_progress,
        sentence_chars=sentence_lengths(text, args.as_command, args.audio),
        faces=faces,
    )
    print(
        f"wrote {args.output} ({summary['frames']} frames, {summary['video_s']:.2f} s video, "
        f"{summary['audio_s']:.2f} s speech, {summary['language'] or 'your audio'})"
    )
    return 0


def render_speech(
    engine_args: argparse.Namespace,
    photo: Path | None,
    clips: Iterable[Any],
    output: Path,
    *,
    fps: float,
    crop: bool = True,
    face_index: int | None = None,
    face_only: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    crf: int | None = None,
    progress: bool = True,
    sentence_chars: Sequence[int] | None = None,
    faces: Any = None,
) -> dict[str, Any]:
    """Render speaking clips one after the other into ``output`` with their audio (streamed).

    The progress bar shows frames done, the total and the time left: the total is exact for
    the clips synthesised so far plus, for the sentences still to come (``sentence_chars``,
    the characters of each clip's sentence), their characters at the speech rate heard so far.
    ``faces`` (a ``--faces`` choice): every chosen face of the photo says it, each frame's faces in one
    render batch, pasted back into one photo (:mod:`lpstudio.group`).

    The first clip is produced (speech synthesised, audio analysed) before the engine loads, so a
    missing speech library or a bad audio file fails in a second. Frame ``k`` is at ``k / fps`` on
    the clock of all clips together; the total is ``ceil(total_audio_ms * fps / 1000)`` frames.
    """
    from ..group.speech import params_of_rows
    from ..imageio import load_image
    from ..speech.clip import sample_timeline_at
    from ..speech.mux import DEFAULT_CRF
    from ..video_writer import VideoWriter

    it = iter(clips)
    first = next(it)
    image = load_image(photo if photo is not None else sample_portrait()).rgb
    engine = load_engine(engine_args, face=crop)
    group = None
    if faces is not None:
        from ..group.render import prepare_group, render_group_frames
        from ..group.speech import speech_tracks

        group = prepare_group(engine, image, faces)
        state = group.states[0]
    else:
        state = engine.prepare_source(image, crop=crop, face_index=face_index)
    base = state.neutral_params()
    paste = crop and not face_only

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", desc="speaking", file=sys.stderr, dynamic_ncols=True)
    estimate = _TotalEstimate(list(sentence_chars) if sentence_chars else [], fps)
    start = time.perf_counter()
    frames, t0, audio_ms, language = 0, 0.0, 0.0, first.language
    chunk = max(1, batch_size * FRAMES_PER_CALL_BATCHES)
    try:
        with VideoWriter(
            output, fps, audio_channels=first.audio.channels, crf=DEFAULT_CRF if crf is None else crf
        ) as writer:  # the clip replaces `output` only once complete
            clip = first
            while clip is not None:
                writer.add_audio(clip.audio)
                end = t0 + clip.audio_ms
                n_end = max(1, int(math.ceil(end * fps / 1000.0 - 1e-9)))
                if bar is not None:
                    bar.total = estimate.total(n_end, end)  # exact so far, plus the sentences still to come
                    bar.refresh()
                times = [k * 1000.0 / fps - t0 for k in range(frames, n_end)]
                if group is not None:  # every chosen face says it: each face on its own base pose
                    tracks = speech_tracks(clip.timeline, times, [s.neutral_params() for s in group.states])
                    outs = render_group_frames(engine, group, tracks, rows_per_batch=batch_size, paste_back=paste)
                else:
                    outs = _single_face(engine, state, params_of_rows(sample_timeline_at(clip.timeline, times, base)),
                                        chunk, batch_size, paste)  # fmt: skip
                for out in outs:
                    writer.write(out)
                    frames += 1
                    if bar is not None:
                        bar.update(1)
                t0, audio_ms = end, end
                if language != clip.language:
                    language = "mixed"
                clip = next(it, None)
    finally:
        if bar is not None:
            bar.close()
    return {
        "frames": frames,
        "video_s": frames / fps,
        "audio_s": audio_ms / 1000.0,
        "language": language,
        "seconds": time.perf_counter() - start,
    }


class _TotalEstimate:
    """The frame total of a speech rendered sentence by sentence, before every sentence is synthesised."""

    def __init__(self, sentence_chars: list[int], fps: float) -> None:
        self.chars = sentence_chars  # characters of each clip's sentence, in order
        self.fps = fps
        self.seen = 0  # clips synthesised so far

    def total(self, frames_known: int, audio_ms_known: float) -> int:
        """``frames_known`` (the clips so far) plus the rest of the sentences at the rate heard so far."""
        self.seen += 1
        spoken = sum(self.chars[: self.seen])
        rest = sum(self.chars[self.seen :])
        if rest <= 0 or spoken <= 0:
            return frames_known
        ms_per_char = audio_ms_known / spoken
        return frames_known + int(math.ceil(rest * ms_per_char * self.fps / 1000.0))


def sentence_lengths(text: str | None, as_command: bool, audio: Path | None) -> list[int]:
    """Characters of each sentence ``speech_clips`` will synthesise (empty for one clip: its total is exact)."""
    if text is None or as_command or audio is not None:
        return []
    from ..speech.text import check_text, split_sentences

    return [len(s) for s in split_sentences(check_text(text))]


def _single_face(engine: Any, state: Any, params: list[Any], chunk: int, batch_size: int, paste: bool) -> Any:
    """Frames of one face, rendered ``chunk`` parameter sets per engine call (pasted back when ``paste``)."""
    for i in range(0, len(params), chunk):
        for out in engine.render(state, params[i : i + chunk], batch_size=batch_size):
            yield engine.paste_back(state, out) if paste else out


def drive_by_audio(args: argparse.Namespace) -> int:
    """``lpstudio drive PHOTO speech.wav -o out.mp4``: the photo lip-syncs to the audio (the speak path)."""
    from ..errors import ParamError
    from ..expressions.timeline import DEFAULT_FPS
    from ..speech.audio import read_audio
    from ..speech.clip import speak_audio

    if args.batch_size < 1:
        raise ParamError(f"--batch-size must be at least 1, got {args.batch_size}")
    output = check_output_path(args.output, OUTPUT_SUFFIXES)
    clip = speak_audio(read_audio(args.driving), idle=True, seed=0)
    summary = render_speech(
        args,
        args.source,
        [clip],
        output,
        fps=DEFAULT_FPS,
        crop=not args.no_crop,
        face_index=args.face_index,
        batch_size=args.batch_size,
        crf=args.crf,
        progress=not args.quiet,
    )
    print(
        f"wrote {output}: {summary['frames']} frames, {DEFAULT_FPS:g} fps, lip-synced to {args.driving} "
        f"({summary['audio_s']:.2f} s)",
        file=sys.stderr,
    )
    return 0

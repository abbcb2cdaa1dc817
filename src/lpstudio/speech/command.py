"""Expression commands that speak: "말해봐", "say: nice to meet you", "웃으면서 말해줘 안녕하세요".

:func:`command_speech` is the one call a front end needs: it splits the text to say from the
command (:func:`lpstudio.expressions.speech_command.split_speech`), parses the rest with the
command language, speaks the text (or :data:`~.text.DEFAULT_SENTENCES` when none is given) where
the command has its talk action, and returns a :class:`~.clip.SpeechClip` whose audio and timeline
cover the whole command:

* the talk action is replaced by the speech (mouth, prosody); its speed sets the speech rate;
* other actions of the same group are layered over the speech and held as long as it lasts
  ("웃으면서 말해줘" smiles through the sentence);
* groups before and after play in sequence, silent ("웃고 나서 말해봐: 안녕" smiles, then speaks);
* idle liveliness runs under the whole clip, as for every command.

Commands without a talk action and without text return None (render them the usual way).
"""

from __future__ import annotations

import numpy as np

from ..errors import CommandError
from ..expressions.budget import CommandTooComplexError
from ..expressions.compose import IDLE_TAIL_MS
from ..expressions.idle import with_idle
from ..expressions.language import Action, CommandPlan, parse_command
from ..expressions.presets import get_preset
from ..expressions.speech_command import split_speech
from ..expressions.timeline import Timeline
from .audio import AudioClip
from .clip import SpeechClip, check_speech_ms, speak_text
from .espeak import DEFAULT_PITCH, DEFAULT_RATE_WPM, MAX_RATE_WPM, MIN_RATE_WPM, Phoneme
from .text import DEFAULT_SENTENCES, detect_language, resolve_voice

TALK: str = "talk"


def _plan(rest: str, text: str | None) -> CommandPlan:
    try:
        plan = parse_command(rest)
    except CommandTooComplexError:
        raise  # refused for its cost, not a reading to fall back from
    except CommandError:
        if text is None:
            raise
        return CommandPlan(((Action(TALK, text=rest),),), rest)
    if plan.precise is not None:
        return plan
    if text is not None and not any(a.preset == TALK for a in plan.actions):
        first = plan.groups[0] if plan.groups else ()
        return CommandPlan(((Action(TALK, text=rest), *first), *plan.groups[1:]), plan.text)
    return plan


def _held(action: Action, duration_ms: float) -> Timeline:
    """``action`` over a speech of ``duration_ms``: held at its apex until the speech ends."""
    p = get_preset(action.preset)
    motion = p.gesture(action.intensity, action.speed)
    if action.repeat == 1 and duration_ms > motion.duration_ms:
        motion = motion.with_hold(duration_ms - motion.duration_ms)
        return Timeline.single(motion, p.name, intensity=action.intensity, speed=action.speed, text=action.text)
    return action.timeline()


def _silence(duration_ms: float, sample_rate: int) -> np.ndarray:
    return np.zeros((1, int(round(duration_ms * sample_rate / 1000.0))), np.float32)


def command_speaks(command: str) -> bool:
    """Whether :func:`command_speech` would speak ``command`` (a parse only, no synthesis: cheap).

    Raises:
        CommandError: the command is not understood.
    """
    rest, text = split_speech(command)
    plan = _plan(rest, text)
    return plan.precise is None and any(a.preset == TALK for a in plan.actions)


def command_speech(
    command: str,
    *,
    voice: str | None = "auto",
    rate: int = DEFAULT_RATE_WPM,
    pitch: int = DEFAULT_PITCH,
    idle: bool = True,
    seed: int = 0,
    tail_ms: float = IDLE_TAIL_MS,
    max_ms: float | None = None,
) -> SpeechClip | None:
    """The speaking clip of a command, or None when the command does not speak (see the module doc).

    ``max_ms`` bounds the whole clip (speech, other actions and the idle tail): synthesis stops
    with a :class:`~lpstudio.errors.LimitError` as soon as it is certain to pass it.

    Raises:
        CommandError: the command is not understood; bad voice, rate or pitch.
        SpeechUnavailableError: eSpeak NG is not installed.
        LimitError: the clip would be longer than ``max_ms``.
    """
    rest, text = split_speech(command)
    plan = _plan(rest, text)
    if plan.precise is not None or not any(a.preset == TALK for a in plan.actions):
        return None
    say = text if text is not None else DEFAULT_SENTENCES[resolve_voice(voice, command)]
    language = resolve_voice(voice, say) if voice not in (None, "auto") else detect_language(say)

    def rate_of(talk: Action) -> int:
        return int(np.clip(round(rate * talk.speed), MIN_RATE_WPM, MAX_RATE_WPM))

    spoken: dict[int, SpeechClip] = {}
    for a in plan.actions:  # speak first: the sample rate of every part comes from the voice
        if a.preset == TALK and rate_of(a) not in spoken:
            budget = None if max_ms is None else max(0.0, max_ms - (tail_ms if idle else 0.0))
            spoken[rate_of(a)] = speak_text(
                say, voice, rate=rate_of(a), pitch=pitch, idle=False, seed=seed, max_audio_ms=budget
            )
    sample_rate = next(iter(spoken.values())).audio.sample_rate

    timeline = Timeline()
    audio_parts: list[np.ndarray] = []
    phonemes: list[Phoneme] = []
    speech_start: float | None = None
    for group in plan.groups:
        talk = next((a for a in group if a.preset == TALK), None)
        start = timeline.duration_ms
        if talk is None:
            timeline = timeline.then(CommandPlan((group,)).timeline())
            audio_parts.append(_silence(timeline.duration_ms - start, sample_rate))
            continue
        clip = spoken[rate_of(talk)]
        one = Timeline(clip.timeline.steps, clip.audio_ms)
        speech_tl = one
        for _ in range(talk.repeat - 1):
            speech_tl = speech_tl.then(one)
        for k in range(talk.repeat):
            phonemes.extend(p.shifted(start + k * clip.audio_ms) for p in clip.phonemes)
        group_tl = speech_tl
        for other in group:
            if other is not talk:
                group_tl = group_tl.over(_held(other, speech_tl.duration_ms))
        speech_start = start if speech_start is None else speech_start
        timeline = timeline.then(group_tl)
        audio = np.concatenate([clip.audio.mono()[None]] * talk.repeat, axis=1)
        audio_parts.append(
            np.concatenate([audio, _silence(group_tl.duration_ms - speech_tl.duration_ms, sample_rate)], 1)
        )
    if max_ms is not None:
        check_speech_ms(timeline.duration_ms + (tail_ms if idle else 0.0), max_ms)
    if idle:
        timeline = with_idle(timeline, seed, tail_ms=tail_ms)
    samples = np.concatenate(audio_parts, axis=1)
    total = int(round(timeline.duration_ms * sample_rate / 1000.0))
    audio = AudioClip(samples, sample_rate).padded_to(total)
    timeline = Timeline(timeline.steps, audio.duration_ms)
    return SpeechClip(
        audio,
        timeline,
        tuple(phonemes),
        language,
        say,
        speech_start or 0.0,
        info={"command": command, "voice": language, "rate": rate, "pitch": pitch, "plan": plan.to_json()},
    )


__all__ = ["command_speech"]

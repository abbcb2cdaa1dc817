"""The portrait speaks (issue 12): text -> voice + lip-synced timeline, and audio -> lip-sync.

Typical use::

    from lpstudio.speech import speak_text, speak_audio, read_audio, command_speech

    clip = speak_text("안녕하세요, 반갑습니다")           # eSpeak NG, Hangul -> the 'ko' voice
    params = clip.sample(fps=25, base=state.neutral_params())   # ceil(audio_ms * 25 / 1000) frames
    wav = wav_bytes(clip.audio)                              # what a page plays with the frames

    clip = speak_audio(read_audio("speech.m4a"))             # the user's speech: loudness + formants
    clip = command_speech("웃으면서 말해줘 안녕하세요")        # a command that speaks (None if it does not)

Modules: :mod:`.espeak` (the C library through ctypes: audio and phoneme events), :mod:`.text`
(language detection, sentences), :mod:`.visemes` (phoneme -> mouth shape), :mod:`.lipsync`
(look-ahead, co-articulation, bilabial closure, loudness -> parameters), :mod:`.prosody` (nods,
brows, blinks), :mod:`.analyser` (audio -> mouth), :mod:`.audio` (reading audio, WAV bytes),
:mod:`.clip` (:class:`SpeechClip`), :mod:`.command` (expression commands that speak),
:mod:`.mux` (a written clip's stream durations; :class:`lpstudio.video_writer.VideoWriter` writes clips),
:mod:`.payload` (the audio for a page, on the frames' clock).
Nothing loads the speech library on import.
"""

from __future__ import annotations

from .analyser import analyse, audio_track
from .audio import AudioClip, decode_audio, is_audio_path, read_audio, wav_bytes, write_wav
from .clip import SpeechClip, concat, iter_speech, sample_timeline_at, speak_audio, speak_text
from .command import command_speech
from .espeak import Phoneme, Utterance, speech_available, synthesize
from .payload import audio_payload
from .text import DEFAULT_SENTENCES, detect_language, split_sentences

__all__ = [
    "AudioClip",
    "DEFAULT_SENTENCES",
    "Phoneme",
    "SpeechClip",
    "Utterance",
    "analyse",
    "audio_payload",
    "audio_track",
    "command_speech",
    "concat",
    "decode_audio",
    "detect_language",
    "is_audio_path",
    "iter_speech",
    "read_audio",
    "sample_timeline_at",
    "speak_audio",
    "speak_text",
    "speech_available",
    "split_sentences",
    "synthesize",
    "wav_bytes",
    "write_wav",
]

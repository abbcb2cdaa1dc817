"""Text to say inside expression commands (split_speech) and commands that speak (command_speech)."""

from __future__ import annotations

import pytest
from speech_helpers import requires_speech

from lpstudio.errors import CommandError
from lpstudio.expressions.language import parse_command
from lpstudio.expressions.speech_command import split_speech


@pytest.mark.parametrize(
    ("command", "rest", "text", "actions"),
    [
        ("말해봐", "말해봐", None, ["talk"]),
        ("talk", "talk", None, ["talk"]),
        ("말해봐: 오늘 날씨 좋네요", "말해봐", "오늘 날씨 좋네요", ["talk"]),
        ("say: nice to meet you", "say", "nice to meet you", ["talk"]),
        ('"안녕" 이라고 말해줘', "말해줘", "안녕", ["talk"]),
        ("“좋은 아침”이라고 말해 주세요", "말해 주세요", "좋은 아침", ["talk"]),
        ("'안녕'이라고 해줘", "말해줘", "안녕", ["talk"]),
        ("안녕하세요라고 말해줘", "말해줘", "안녕하세요", ["talk"]),
        ("웃으면서 반가워요라고 말해", "웃으면서 말해", "반가워요", ["smile", "talk"]),
        ("웃으면서 말해줘 안녕하세요", "웃으면서 말해줘", "안녕하세요", ["smile", "talk"]),
        ("말해 주세요 감사합니다", "말해 주세요", "감사합니다", ["talk"]),
        ("smile and say hello there", "smile and say", "hello there", ["smile", "talk"]),
        ("say hello and smile", "say and smile", "hello", ["talk", "smile"]),
        ("웃고 나서 말해봐: 안녕!", "웃고 나서 말해봐", "안녕!", ["smile", "talk"]),
        # "say something": filler around the verb means the default sentence
        ("뭐라고 말 좀 해봐", "말 좀 해봐", None, ["talk"]),
        ("아무 말이나 해줘", "말해줘", None, ["talk"]),
        ("say something", "say", None, ["talk"]),
        # modifiers after the verb are not text
        ("말해줘 천천히", "말해줘 천천히", None, ["talk"]),
        ("speak slowly", "speak slowly", None, ["talk"]),
        ("say it again please", "say it again please", None, ["talk"]),
        # no speech at all
        ("웃어줘", "웃어줘", None, ["smile"]),
    ],
)
def test_split_speech(command: str, rest: str, text: str | None, actions: list[str]) -> None:
    got_rest, got_text = split_speech(command)
    assert (got_rest, got_text) == (rest, text)
    assert [a.preset for a in parse_command(got_rest).actions] == actions


def test_precise_syntax_is_left_alone() -> None:
    assert split_speech("smile=300:800") == ("smile=300:800", None)


@requires_speech
def test_command_speaks_the_default_sentence_in_the_command_language() -> None:
    from lpstudio.speech.command import command_speech
    from lpstudio.speech.text import DEFAULT_SENTENCES

    ko = command_speech("말해봐", idle=False)
    en = command_speech("talk", idle=False)
    assert ko is not None and ko.text == DEFAULT_SENTENCES["ko"] and ko.language == "ko"
    assert en is not None and en.text == DEFAULT_SENTENCES["en-us"] and en.language == "en-us"
    assert command_speech("웃어줘") is None
    assert command_speech("smile=300:800") is None


@requires_speech
def test_command_layers_and_sequences_around_the_speech() -> None:
    from lpstudio.speech.command import command_speech

    layered = command_speech("웃으면서 말해줘 안녕하세요", idle=False)
    assert layered is not None and layered.text == "안녕하세요"
    presets = {s.preset: s for s in layered.timeline.steps}
    assert presets["smile"].start_ms == 0.0 and presets["speech"].start_ms == 0.0
    assert presets["smile"].end_ms >= presets["speech"].end_ms  # smiling through the sentence
    assert layered.speech_start_ms == 0.0

    seq = command_speech("웃고 나서 말해봐: 오늘 날씨 좋네요", idle=True)
    assert seq is not None
    speech = next(s for s in seq.timeline.steps if s.preset == "speech")
    smile = next(s for s in seq.timeline.steps if s.preset == "smile")
    assert smile.end_ms <= speech.start_ms == pytest.approx(seq.speech_start_ms)
    # the audio is silent before the speech starts and the phonemes are on the clip's clock
    a = seq.audio.samples[0]
    first = int(seq.speech_start_ms * seq.audio.sample_rate / 1000)
    assert abs(a[:first]).max() == 0.0 and abs(a[first:]).max() > 0.05
    assert seq.phonemes[0].start_ms == pytest.approx(seq.speech_start_ms)
    assert seq.audio_ms == pytest.approx(seq.timeline.duration_ms, abs=0.1)


@requires_speech
def test_slow_talk_speaks_slower_and_twice_repeats() -> None:
    from lpstudio.speech.command import command_speech

    normal = command_speech("말해줘", idle=False)
    slow = command_speech("천천히 말해줘", idle=False)
    twice = command_speech("두 번 말해줘", idle=False)
    assert normal and slow and twice
    assert slow.audio_ms > 1.3 * normal.audio_ms
    assert twice.audio_ms == pytest.approx(2 * normal.audio_ms, rel=0.05)
    with pytest.raises(CommandError):
        command_speech("블라블라 해줘")

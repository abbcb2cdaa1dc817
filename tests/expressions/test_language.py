"""The command language: a table of Korean and English phrases, errors, precise sequences."""

from __future__ import annotations

import pytest

from lpstudio.errors import CommandError
from lpstudio.expressions.language import is_precise, normalize, parse_command, parse_precise
from lpstudio.expressions.presets import PRESETS
from lpstudio.expressions.timeline import resolve_base
from lpstudio.params import PARAM_NAMES

# (phrase, expected groups: each group a list of layered presets, modifiers of the FIRST action or None)
# modifiers: dict with any of intensity (<1 / >1 / ==1 as "lt1"/"gt1"/1.0), speed (same), repeat (int)
PHRASES: list[tuple[str, list[list[str]], dict[str, object] | None]] = [
    # verb forms and politeness endings
    ("웃어", [["smile"]], {"intensity": 1.0, "speed": 1.0, "repeat": 1}),
    ("웃어줘", [["smile"]], None),
    ("웃어봐", [["smile"]], None),
    ("웃어 주세요", [["smile"]], None),
    ("웃어주세요", [["smile"]], None),
    ("웃어요", [["smile"]], None),
    ("미소 지어 줘", [["smile"]], None),
    ("smile", [["smile"]], None),
    ("Smile please!", [["smile"]], None),
    ("can you smile for me?", [["smile"]], None),
    ("smiling", [["smile"]], None),
    # intensity
    ("살짝 웃어줘", [["smile"]], {"intensity": "lt1"}),
    ("활짝 웃어", [["smile"]], {"intensity": "gt1"}),
    ("크게 웃어봐", [["smile"]], {"intensity": "gt1"}),
    ("조금만 웃어", [["smile"]], {"intensity": "lt1"}),
    ("smile a little", [["smile"]], {"intensity": "lt1"}),
    ("a big smile", [["smile"]], {"intensity": "gt1"}),
    ("slightly frown", [["frown"]], {"intensity": "lt1"}),
    # speed
    ("천천히 웃어", [["smile"]], {"speed": "lt1"}),
    ("빨리 고개 끄덕여", [["nod"]], {"speed": "gt1"}),
    ("smile slowly", [["smile"]], {"speed": "lt1"}),
    ("nod quickly", [["nod"]], {"speed": "gt1"}),
    ("아주 천천히 웃어", [["smile"]], {"speed": "lt1"}),
    # other presets
    ("깔깔 웃어", [["big_laugh"]], None),
    ("laugh out loud", [["big_laugh"]], None),
    ("눈 깜빡여", [["blink"]], {"repeat": 1}),
    ("blink", [["blink"]], None),
    ("윙크해줘", [["wink_right"]], None),
    ("왼쪽 눈으로 윙크해", [["wink_left"]], None),
    ("wink with your right eye", [["wink_right"]], None),
    ("wink left", [["wink_left"]], None),
    ("말해봐", [["talk"]], None),
    ("이야기 좀 해줘", [["talk"]], None),
    ("talk to me", [["talk"]], None),
    ("say something", [["talk"]], None),
    ("깜짝 놀라봐", [["surprise"]], None),
    ("look surprised", [["surprise"]], None),
    ("고개 끄덕여", [["nod"]], None),
    ("nod", [["nod"]], None),
    ("고개를 저어줘", [["head_shake"]], None),
    ("도리도리", [["head_shake"]], None),
    ("shake your head", [["head_shake"]], None),
    ("왼쪽 봐", [["look_left"]], None),
    ("오른쪽을 쳐다봐", [["look_right"]], None),
    ("위를 봐", [["look_up"]], None),
    ("고개 숙여", [["look_down"]], None),
    ("look to the left", [["look_left"]], None),
    ("look up", [["look_up"]], None),
    ("찡그려봐", [["frown"]], None),
    ("인상 써", [["frown"]], None),
    ("화내봐", [["angry"]], None),
    ("look angry", [["angry"]], None),
    ("슬픈 표정 지어줘", [["sad"]], None),
    ("be sad", [["sad"]], None),
    ("입 내밀어봐", [["pout"]], None),
    ("pout", [["pout"]], None),
    ("뽀뽀해줘", [["kiss"]], None),
    ("blow a kiss", [["kiss"]], None),
    ("졸려 보여줘", [["sleepy"]], None),
    ("하품해", [["sleepy"]], None),
    ("look sleepy", [["sleepy"]], None),
    ("갸우뚱해봐", [["doubtful"]], None),
    ("raise an eyebrow", [["doubtful"]], None),
    ("doubtful", [["doubtful"]], None),
    # combinations (layered)
    ("웃으면서 윙크해줘", [["smile", "wink_right"]], None),
    ("smile and wink", [["smile", "wink_right"]], None),
    ("말하면서 웃어", [["talk", "smile"]], None),
    ("smile while blinking", [["smile", "blink"]], None),
    ("웃으며 고개 끄덕여", [["smile", "nod"]], None),
    ("smile with a wink", [["smile", "wink_right"]], None),
    # sequences
    ("웃고 나서 고개 끄덕여", [["smile"], ["nod"]], None),
    ("smile then nod", [["smile"], ["nod"]], None),
    ("웃고 윙크해", [["smile"], ["wink_right"]], None),
    ("놀란 다음에 웃어", [["surprise"], ["smile"]], None),
    ("smile, then look up", [["smile"], ["look_up"]], None),
    ("blink and then smile", [["blink"], ["smile"]], None),
    ("웃다가 슬퍼해", [["smile"], ["sad"]], None),
    ("웃어. 그리고 윙크", [["smile"], ["wink_right"]], None),
    # repetition
    ("세 번 깜빡여", [["blink"]], {"repeat": 3}),
    ("두번 깜빡여줘", [["blink"]], {"repeat": 2}),
    ("깜빡깜빡", [["blink"]], {"repeat": 2}),
    ("blink twice", [["blink"]], {"repeat": 2}),
    ("blink 3 times", [["blink"]], {"repeat": 3}),
    ("nod x2", [["nod"]], {"repeat": 2}),
    ("끄덕끄덕", [["nod"]], {"repeat": 2}),
    ("빨리 세 번 깜빡여", [["blink"]], {"repeat": 3, "speed": "gt1"}),
    # spacing, punctuation, emoji
    ("웃 어 줘", [["smile"]], None),
    ("살짝웃어줘", [["smile"]], {"intensity": "lt1"}),
    ("웃어줘!!! 😊", [["smile"]], None),
    ("  SMILE!!  ", [["smile"]], None),
    ("😉", [["wink_right"]], None),
    ("웃으면서,, 윙크~~ 😜", [["smile"], ["wink_right"]], None),
    ("smile & wink!", [["smile", "wink_right"]], None),
    # mixed
    (
        "살짝 웃으면서 천천히 윙크하고 나서 세 번 깜빡여",
        [["smile", "wink_right"], ["blink"]],
        {"intensity": "lt1"},
    ),
]


def _check(value: float, want: object) -> bool:
    if want == "lt1":
        return value < 1.0
    if want == "gt1":
        return value > 1.0
    return value == want


def test_table_is_big_enough() -> None:
    assert len(PHRASES) >= 60
    assert sum(1 for p, _, _ in PHRASES if any("\uac00" <= c <= "\ud7a3" for c in p)) >= 30
    assert sum(1 for p, _, _ in PHRASES if p.isascii()) >= 25


@pytest.mark.parametrize("phrase,groups,mods", PHRASES, ids=[p for p, _, _ in PHRASES])
def test_phrase(phrase: str, groups: list[list[str]], mods: dict[str, object] | None) -> None:
    plan = parse_command(phrase)
    got = [[a.preset for a in g] for g in plan.groups]
    assert got == groups
    if mods:
        first = plan.groups[0][0]
        for key, want in mods.items():
            assert _check(getattr(first, key), want), f"{key}={getattr(first, key)} wanted {want}"
    tl = plan.timeline()
    assert tl.duration_ms > 0
    assert [s.preset for s in tl.steps if s.layer == 0][0] == groups[0][0]


def test_layered_wink_starts_at_smile_peak_and_smile_holds() -> None:
    tl = parse_command("웃으면서 윙크해줘").timeline()
    smile, wink = tl.steps
    assert (smile.preset, wink.preset) == ("smile", "wink_right")
    assert wink.layer == 1 and smile.layer == 0
    assert wink.start_ms == pytest.approx(PRESETS["smile"].gesture().apex_ms)
    assert smile.end_ms >= wink.end_ms  # the smile is held until the wink is done


def test_sequence_steps_are_consecutive() -> None:
    tl = parse_command("smile then nod twice").timeline()
    pres = [(s.preset, s.start_ms, s.end_ms) for s in tl.steps]
    assert [p for p, _, _ in pres] == ["smile", "nod", "nod"]
    assert pres[1][1] == pytest.approx(pres[0][2])
    assert pres[2][1] == pytest.approx(pres[1][2])


def test_modifiers_change_the_timeline() -> None:
    base = resolve_base(None)
    slow = parse_command("천천히 웃어").timeline()
    normal = parse_command("웃어").timeline()
    subtle = parse_command("살짝 웃어").timeline()
    assert slow.duration_ms > normal.duration_ms
    i = PARAM_NAMES.index("smile")
    assert subtle.sample_array(25).max(axis=0)[i] < normal.sample_array(25).max(axis=0)[i]
    assert normal.sample_array(25)[0, i] == base["smile"]


@pytest.mark.parametrize("phrase", ["점프해", "dance for me", "asdf", "fly 😶", "look", "   ", "!!!"])
def test_unknown_commands_raise(phrase: str) -> None:
    with pytest.raises(CommandError):
        parse_command(phrase)


# Filler tolerance (issue 12, point 4): words that are not expressions are ignored when a known
# action is present. (command, the presets understood, in order)
FILLER_TOLERANT: list[tuple[str, list[str]]] = [
    ("뭐라고 말 좀 해봐", ["talk"]),
    ("웃으면서 말해줘 안녕하세요", ["smile", "talk"]),
    ('"안녕" 이라고 말해줘', ["talk"]),
    ("say: nice to meet you", ["talk"]),
    ("please smile for me", ["smile"]),
    ("can you smile", ["smile"]),
    ("한번 웃어봐 좀", ["smile"]),
    ("저기요 고개 한번 끄덕여 주실래요", ["nod"]),
    ("hey buddy, could you nod", ["nod"]),
    ("웃으면서 날아", ["smile"]),
    ("😀😀 fly", ["smile"]),
    # everyday words one letter away from an action word are not typos ("eyes"/"yes", "start"/"stare")
    ("blink your eyes", ["blink"]),
    ("start smiling", ["smile"]),
    ("great, now nod", ["nod"]),
]


@pytest.mark.parametrize(("phrase", "presets"), FILLER_TOLERANT)
def test_words_that_are_not_expressions_are_ignored(phrase: str, presets: list[str]) -> None:
    assert [a.preset for a in parse_command(phrase).actions] == presets


@pytest.mark.parametrize("phrase", ["뭐라고 말 좀 해봐", "smile while flying", "웃으면서 날아"])
def test_strict_parsing_still_refuses_unknown_parts(phrase: str) -> None:
    # what the speech splitter uses to tell a command from text to say
    with pytest.raises(CommandError):
        parse_command(phrase, strict=True)


def test_unknown_lists_close_matches() -> None:
    # a typo of a real action with no other known action: refused, with the action suggested
    with pytest.raises(CommandError) as err:
        parse_command("smiel")
    assert "smile" in (err.value.hint or "")
    with pytest.raises(CommandError) as err:
        parse_command("윙그해줘")
    assert "wink_right (윙크)" in (err.value.hint or "")
    with pytest.raises(CommandError) as err:
        parse_command("끄떡여 주세요")
    assert "nod (끄덕)" in (err.value.hint or "")
    # a near-miss of an action word next to a known action is a typo, not filler
    for phrase in ("smile and blnik", "smile blnik please", "nod then winck"):
        with pytest.raises(CommandError) as err:
            parse_command(phrase)
        assert "did you mean" in (err.value.hint or ""), phrase
    # pure gibberish: an error that still lists suggestions, none made up from a shared space
    with pytest.raises(CommandError) as err:
        parse_command("asdf qwer zxcv")
    hint = err.value.hint or ""
    assert "Known expressions: smile" in hint
    assert "빵 터" not in hint


def test_too_many_repeats() -> None:
    with pytest.raises(CommandError):
        parse_command("blink 50 times")


def test_normalize_strips_emoji_and_case() -> None:
    assert normalize("  SMILE 😊!! ") == "smile !!"


# --- precise sequences ---------------------------------------------------------


def test_precise_detection() -> None:
    assert is_precise("smile=300:800\n0=400:0")
    assert not is_precise("웃어줘")
    assert not is_precise("smile then nod")


def test_precise_pose_sequence_timing_and_values() -> None:
    tl = parse_precise("smile=300:800\nwink=30 smile=0.5=200:400\n0=400:0")
    assert tl.duration_ms == pytest.approx(300 + 800 + 200 + 400 + 400)
    arr = tl.sample_array(100)  # one frame per 10 ms
    col = {n: i for i, n in enumerate(PARAM_NAMES)}
    assert arr[0].tolist() == arr[-1].tolist()
    assert arr[80, col["smile"]] == pytest.approx(PRESETS["smile"].pose["smile"])  # held
    assert arr[150, col["wink"]] == pytest.approx(30.0)  # absolute wink=30 reached and held
    assert arr[150, col["smile"]] == pytest.approx(0.5)
    assert arr[-1, col["wink"]] == 0.0


def test_precise_play_items_and_auto_return() -> None:
    tl = parse_command("smile*0.5=200:300; blink x2; wait 100").timeline()
    presets = [s.preset for s in tl.steps]
    assert presets == ["pose", "blink", "blink"]
    # not back at neutral at the end of the items -> an automatic return is added
    arr = tl.sample_array(50)
    assert arr[0].tolist() == arr[-1].tolist()
    i = PARAM_NAMES.index("smile")
    assert arr[len(arr) // 2, i] > 0.3


@pytest.mark.parametrize("text", ["smile=abc:100", "bogus=100:100", "smile=300:800\nfly", "smiel=1=100:100"])
def test_precise_errors(text: str) -> None:
    with pytest.raises(CommandError):
        parse_command(text)


# --- bounded work (a 70-character command used to hold a worker for 8-18 s) ---------------------------------

PARSE_BOUND_S = 0.5
"""Generous wall-clock bound for one adversarial command (they take ~1-30 ms; before the fix, seconds to hours)."""
FILLER_RUN = "say smile with " + "해요" * 24 + "가"
"""The reported command: a run of "해요" (filler words "해" + "요" or "해요") that ends in a non-filler syllable."""
ADVERSARIAL_COMMANDS: list[str] = [
    FILLER_RUN,
    ("say smile with " + "해요" * 250 + "가")[:500],  # the longest filler run a command may hold
    ("말해 " + "봐요" * 250 + "x")[:500],
    ("웃" + "해 줘 " * 125 + "가")[:500],
    ("웃고 " * 170)[:500],  # repeated sequence particles
    ("웃으면서 " * 100)[:500],  # repeated layering particles
    ("blnik " * 84)[:500],  # repeated typo-like words: the hint compares them with the vocabulary
    " ".join(f"smiel{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60))[:500],  # distinct typo-like words
    ("wink " + "with right " * 45)[:500],  # modifier parts merged into the action before them
    "x" * 500,
]


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("text", ADVERSARIAL_COMMANDS, ids=lambda t: f"{t[:12]}..{len(t)}")
def test_adversarial_commands_parse_in_bounded_time(text: str, strict: bool) -> None:
    import time

    start = time.perf_counter()
    try:
        plan = parse_command(text, strict=strict)
    except CommandError as err:
        assert err.message and err.hint  # refused with a message (not understood, or too complex)
    else:
        assert plan.actions
    assert time.perf_counter() - start < PARSE_BOUND_S, text


def test_filler_run_is_understood_as_before() -> None:
    """The reported command still means what it meant (talk and smile), strict or not: only its cost changed."""
    for strict in (False, True):
        try:
            plan = parse_command(FILLER_RUN, strict=strict)
        except CommandError as err:
            assert strict and "cannot understand" in err.message
        else:
            assert [[a.preset for a in g] for g in plan.groups] == [["talk", "smile"]]


def test_speech_split_of_adversarial_commands_is_bounded() -> None:
    import time

    from lpstudio.expressions.speech_command import split_speech

    for text in ADVERSARIAL_COMMANDS[:4]:
        start = time.perf_counter()
        rest, said = split_speech(text)
        assert rest
        assert time.perf_counter() - start < PARSE_BOUND_S, text
    assert split_speech(FILLER_RUN) == ("say", "smile with " + "해요" * 24 + "가")


def test_command_over_its_work_budget_is_refused_with_a_clear_error() -> None:
    from lpstudio.expressions.budget import CommandTooComplexError, command_budget

    text = "살짝 웃으면서 윙크해 주세요 then nod twice"
    parse_command(text)  # fine within the default budget
    with command_budget(limit=len(text)), pytest.raises(CommandTooComplexError) as err:
        parse_command(text)
    assert isinstance(err.value, CommandError)
    assert "too complex" in err.value.message
    assert "split it into several commands" in (err.value.hint or "")

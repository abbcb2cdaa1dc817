"""Free text (Korean or English) -> a :class:`~lpstudio.expressions.timeline.Timeline`.

Two input forms are accepted by :func:`parse_command`:

**Natural commands** such as ``"웃어줘"``, ``"살짝 웃으면서 윙크해 주세요"``,
``"smile then nod twice"`` or ``"천천히 세 번 깜빡여"``:

* *sequence* (one after the other): ``고 나서``, ``한 다음``, ``그리고``, a verb
  ending in ``-고``, ``then``, ``after that``, and the punctuation ``, . ; ! ?``;
* *layering* (at the same time): ``-(으)면서``, ``-며``, ``동시에``, ``and``,
  ``while``, ``with``, ``&``, ``+`` — the first action carries, the others start
  when it reaches its peak, and the carrier is held until they are done;
* *intensity* (``살짝``, ``활짝``, ``크게``, ``a little``, ``big``...), *speed*
  (``천천히``, ``빨리``, ``slowly``...), amplified by ``아주``/``very``...;
* *repetition* (``두 번``, ``3번``, ``twice``, ``3 times``, ``x3``, or
  reduplication such as ``깜빡깜빡``);
* verb forms and politeness endings are ignored (matching is by stem), and so
  are spacing, emoji and other symbols (an emoji alone, e.g. ``😉``, is read as
  its expression).

**Precise sequences** for power users, one item per line (or ``;``), in the
spirit of ComfyUI-AdvancedLivePortrait's ``idx=change:keep`` lines but with
names and milliseconds::

    smile=300:800             # reach the smile pose in 300 ms, hold 800 ms
    smile*0.5 wink=30=200:400 # half a smile plus wink=30 (absolute values)
    blink                     # play a whole preset (over the held pose)
    nod*1.5 x2 @0.8           # intensity 1.5, twice, at 0.8x speed
    wait 300                  # hold the current pose 300 ms
    0=400:0                   # back to the base pose in 400 ms

The sequence always ends at the base pose (a 400 ms return is added if needed).

Anything that cannot be understood raises :class:`~lpstudio.errors.CommandError`
listing the closest known words.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import CommandError, ParamError
from ..params import parse_assignment
from .presets import MAX_INTENSITY, MAX_SPEED, MIN_SPEED, PRESET_NAMES, PRESETS, get_preset
from .timeline import Abs, Easing, Keyframe, Motion, Step, Timeline, Value, scale_value

MAX_REPEAT: int = 10
MAX_COMMAND_CHARS: int = 500
MIN_INTENSITY_WORD: float = 0.2
AMPLIFIER_EXPONENT: float = 1.5
"""``아주 천천히`` / ``very slowly``: the modifier's factor raised to this power."""
LONE_AMPLIFIER: float = 1.25
"""Intensity of an amplifier with nothing to amplify (``정말 웃어``)."""
LAYER_HOLD_MARGIN_MS: float = 150.0
SEQUENCE_GAP_MS: float = 0.0
POSE_RETURN_MS: float = 400.0
MIN_POSE_CHANGE_MS: float = 40.0
DEFAULT_WINK: str = "wink_right"
SUBSUMES: dict[str, frozenset[str]] = {"big_laugh": frozenset({"smile"})}
"""A preset that already contains others: "깔깔 웃어" is a laugh, not a laugh plus a smile."""


# --- lexicon -----------------------------------------------------------------
# (pattern, value). Korean patterns match anywhere (verb stems, any ending, any
# spacing: a space in a pattern matches zero or more spaces); Latin patterns
# match at a word start and take any suffix (smile, smiles, smiling...).

ACTION_WORDS: tuple[tuple[str, str], ...] = (
    # big laugh
    ("깔깔", "big_laugh"),
    ("껄껄", "big_laugh"),
    ("낄낄", "big_laugh"),
    ("하하", "big_laugh"),
    ("박장대소", "big_laugh"),
    ("폭소", "big_laugh"),
    ("빵 터", "big_laugh"),
    ("웃음 터", "big_laugh"),
    ("소리 내 웃", "big_laugh"),
    ("소리 내어 웃", "big_laugh"),
    ("소리 내서 웃", "big_laugh"),
    ("배꼽", "big_laugh"),
    ("키득", "big_laugh"),
    ("laugh", "big_laugh"),
    ("lol", "big_laugh"),
    ("haha", "big_laugh"),
    ("giggl", "big_laugh"),
    ("chuckl", "big_laugh"),
    ("crack up", "big_laugh"),
    # smile
    ("웃", "smile"),
    ("미소", "smile"),
    ("스마일", "smile"),
    ("방긋", "smile"),
    ("방실", "smile"),
    ("싱긋", "smile"),
    ("빙그레", "smile"),
    ("생긋", "smile"),
    ("smil", "smile"),
    ("grin", "smile"),
    ("beam", "smile"),
    # blink
    ("깜빡", "blink"),
    ("깜박", "blink"),
    ("껌뻑", "blink"),
    ("끔뻑", "blink"),
    ("blink", "blink"),
    ("눈 감", "blink"),
    ("눈 을 감", "blink"),
    # wink
    ("윙크", "wink"),
    ("찡긋", "wink"),
    ("wink", "wink"),
    # talk
    ("말해", "talk"),
    ("말하", "talk"),
    ("말씀", "talk"),
    ("말 좀", "talk"),
    ("얘기", "talk"),
    ("이야기", "talk"),
    ("대화", "talk"),
    ("수다", "talk"),
    ("떠들", "talk"),
    ("인사", "talk"),
    ("노래", "talk"),
    ("중얼", "talk"),
    ("talk", "talk"),
    ("speak", "talk"),
    ("say", "talk"),
    ("chat", "talk"),
    ("mumbl", "talk"),
    ("sing", "talk"),
    ("greet", "talk"),
    # surprise
    ("놀라", "surprise"),
    ("놀란", "surprise"),
    ("놀래", "surprise"),
    ("깜짝", "surprise"),
    ("헉", "surprise"),
    ("충격", "surprise"),
    ("surpris", "surprise"),
    ("shock", "surprise"),
    ("astonish", "surprise"),
    ("amaz", "surprise"),
    ("gasp", "surprise"),
    ("wow", "surprise"),
    ("startl", "surprise"),
    # nod
    ("끄덕", "nod"),
    ("수긍", "nod"),
    ("nod", "nod"),
    ("yes", "nod"),
    # head shake
    ("도리도리", "head_shake"),
    ("절레절레", "head_shake"),
    ("고개 를 저", "head_shake"),
    ("고개 저", "head_shake"),
    ("고개 를 젓", "head_shake"),
    ("고개 젓", "head_shake"),
    ("고개 를 흔들", "head_shake"),
    ("고개 흔들", "head_shake"),
    ("가로저", "head_shake"),
    ("shake", "head_shake"),
    ("no", "head_shake"),
    # head up/down as looks
    ("고개 를 들", "look_up"),
    ("고개 들", "look_up"),
    ("고개 를 숙", "look_down"),
    ("고개 숙", "look_down"),
    ("고개 떨구", "look_down"),
    # frown / angry
    ("찡그", "frown"),
    ("찌푸", "frown"),
    ("인상", "frown"),
    ("얼굴 을 구기", "frown"),
    ("frown", "frown"),
    ("scowl", "frown"),
    ("grimac", "frown"),
    ("화나", "angry"),
    ("화내", "angry"),
    ("화난", "angry"),
    ("화가", "angry"),
    ("화 를 내", "angry"),
    ("성나", "angry"),
    ("성내", "angry"),
    ("분노", "angry"),
    ("열받", "angry"),
    ("빡치", "angry"),
    ("짜증", "angry"),
    ("버럭", "angry"),
    ("angr", "angry"),
    ("mad", "angry"),
    ("furious", "angry"),
    ("rage", "angry"),
    ("annoy", "angry"),
    ("irritat", "angry"),
    # sad
    ("슬퍼", "sad"),
    ("슬픈", "sad"),
    ("슬프", "sad"),
    ("슬픔", "sad"),
    ("우울", "sad"),
    ("울상", "sad"),
    ("시무룩", "sad"),
    ("울어", "sad"),
    ("울 것", "sad"),
    ("눈물", "sad"),
    ("서글", "sad"),
    ("속상", "sad"),
    ("sad", "sad"),
    ("unhapp", "sad"),
    ("sorrow", "sad"),
    ("depress", "sad"),
    ("cry", "sad"),
    ("upset", "sad"),
    ("gloom", "sad"),
    # pout / kiss
    ("삐죽", "pout"),
    ("뾰로통", "pout"),
    ("삐쳐", "pout"),
    ("삐친", "pout"),
    ("삐져", "pout"),
    ("토라", "pout"),
    ("입 내밀", "pout"),
    ("입 을 내밀", "pout"),
    ("입술 내밀", "pout"),
    ("입술 을 내밀", "pout"),
    ("pout", "pout"),
    ("sulk", "pout"),
    ("뽀뽀", "kiss"),
    ("키스", "kiss"),
    ("입맞춤", "kiss"),
    ("kiss", "kiss"),
    ("smooch", "kiss"),
    ("pucker", "kiss"),
    # sleepy
    ("졸려", "sleepy"),
    ("졸린", "sleepy"),
    ("졸리", "sleepy"),
    ("졸아", "sleepy"),
    ("졸음", "sleepy"),
    ("꾸벅", "sleepy"),
    ("하품", "sleepy"),
    ("잠 와", "sleepy"),
    ("잠 이 와", "sleepy"),
    ("잠 온", "sleepy"),
    ("피곤", "sleepy"),
    ("나른", "sleepy"),
    ("sleep", "sleepy"),
    ("tired", "sleepy"),
    ("drows", "sleepy"),
    ("yawn", "sleepy"),
    ("doz", "sleepy"),
    ("exhaust", "sleepy"),
    # doubtful
    ("갸우뚱", "doubtful"),
    ("갸웃", "doubtful"),
    ("의심", "doubtful"),
    ("미심쩍", "doubtful"),
    ("의아", "doubtful"),
    ("못 믿", "doubtful"),
    ("글쎄", "doubtful"),
    ("뭐지", "doubtful"),
    ("한쪽 눈썹", "doubtful"),
    ("눈썹 을 올", "doubtful"),
    ("눈썹 올", "doubtful"),
    ("doubt", "doubtful"),
    ("skeptic", "doubtful"),
    ("suspicio", "doubtful"),
    ("raise an eyebrow", "doubtful"),
    ("raise one eyebrow", "doubtful"),
    ("raise your eyebrow", "doubtful"),
    ("eyebrow", "doubtful"),
    ("hmm", "doubtful"),
    ("unsure", "doubtful"),
    ("quizzical", "doubtful"),
    ("confus", "doubtful"),
    # looking (needs a direction)
    ("봐", "look"),
    ("보세요", "look"),
    ("보기", "look"),
    ("보자", "look"),
    ("보고", "look"),
    ("쳐다", "look"),
    ("바라", "look"),
    ("시선", "look"),
    ("눈 을 돌", "look"),
    ("눈 돌", "look"),
    ("고개 를 돌", "look"),
    ("고개 돌", "look"),
    ("돌려", "look"),
    ("돌아", "look"),
    ("look", "look"),
    ("glanc", "look"),
    ("gaze", "look"),
    ("turn", "look"),
    ("stare", "look"),
)

DIRECTION_WORDS: tuple[tuple[str, str], ...] = (
    ("왼쪽", "left"),
    ("왼", "left"),
    ("좌측", "left"),
    ("오른쪽", "right"),
    ("오른", "right"),
    ("우측", "right"),
    ("위쪽", "up"),
    ("위", "up"),
    ("하늘", "up"),
    ("천장", "up"),
    ("아래쪽", "down"),
    ("아래", "down"),
    ("밑", "down"),
    ("땅", "down"),
    ("바닥", "down"),
    ("left", "left"),
    ("right", "right"),
    ("upward", "up"),
    ("up", "up"),
    ("sky", "up"),
    ("ceiling", "up"),
    ("downward", "down"),
    ("down", "down"),
    ("floor", "down"),
)

INTENSITY_WORDS: tuple[tuple[str, float], ...] = (
    ("살짝", 0.5),
    ("살며시", 0.5),
    ("조금", 0.6),
    ("약간", 0.6),
    ("가볍게", 0.6),
    ("은은하게", 0.5),
    ("희미하게", 0.4),
    ("작게", 0.6),
    ("활짝", 1.4),
    ("크게", 1.4),
    ("환하게", 1.3),
    ("많이", 1.3),
    ("힘껏", 1.5),
    ("세게", 1.4),
    ("강하게", 1.4),
    ("격하게", 1.6),
    ("a tiny bit", 0.4),
    ("a little", 0.6),
    ("a bit", 0.6),
    ("slight", 0.5),
    ("subtl", 0.5),
    ("gentl", 0.6),
    ("soft", 0.6),
    ("light", 0.6),
    ("faint", 0.4),
    ("little", 0.6),
    ("small", 0.6),
    ("big", 1.4),
    ("wide", 1.3),
    ("broad", 1.4),
    ("a lot", 1.3),
    ("huge", 1.6),
    ("strong", 1.4),
    ("hard", 1.4),
    ("intense", 1.5),
)

AMPLIFIER_WORDS: tuple[str, ...] = (
    "아주",
    "엄청",
    "정말",
    "진짜",
    "너무",
    "매우",
    "완전",
    "되게",
    "very",
    "really",
    "super",
    "extremely",
    "so",
)

SPEED_WORDS: tuple[tuple[str, float], ...] = (
    ("천천히", 0.6),
    ("느리게", 0.6),
    ("느긋하게", 0.7),
    ("슬로우", 0.6),
    ("빨리", 1.6),
    ("빠르게", 1.6),
    ("재빨리", 1.8),
    ("후다닥", 1.8),
    ("잽싸게", 1.8),
    ("얼른", 1.3),
    ("급하게", 1.6),
    ("slowly", 0.6),
    ("slow", 0.6),
    ("leisurely", 0.7),
    ("quickly", 1.6),
    ("quick", 1.6),
    ("fast", 1.6),
    ("rapid", 1.8),
    ("briskly", 1.4),
)

_KO_NUMBERS: dict[str, int] = {
    "한": 1,
    "두": 2,
    "세": 3,
    "네": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
    "열": 10,
    "두어": 2,
    "여러": 3,
    "몇": 3,
}
_EN_NUMBERS: dict[str, int] = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "several": 3,
    "a few": 3,
    "few": 3,
    "multiple": 3,
    "many": 4,
}
_REPEAT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(\d+|두어|다섯|여섯|일곱|여덟|아홉|여러|몇|한|두|세|네|열)\s*(?:번|회|차례)"), "ko"),
    (re.compile(r"\b(once|twice|thrice|double|triple)\b"), "word"),
    (
        re.compile(
            r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|several|a few|few|multiple|many)"
            r"\s*times\b"
        ),
        "en",
    ),
    (re.compile(r"(?:\bx\s*(\d+)\b|\b(\d+)\s*x\b|×\s*(\d+))"), "x"),
)
_WORD_REPEATS: dict[str, int] = {"once": 1, "twice": 2, "thrice": 3, "double": 2, "triple": 3}

EMOJI_ACTIONS: dict[str, str] = {
    "😊": "smile",
    "🙂": "smile",
    "😄": "smile",
    "😀": "smile",
    "😁": "smile",
    "☺": "smile",
    "😂": "big_laugh",
    "🤣": "big_laugh",
    "😆": "big_laugh",
    "😉": "wink",
    "😜": "wink",
    "😮": "surprise",
    "😲": "surprise",
    "😯": "surprise",
    "😱": "surprise",
    "😠": "angry",
    "😡": "angry",
    "🤬": "angry",
    "😢": "sad",
    "😞": "sad",
    "😭": "sad",
    "☹": "sad",
    "🙁": "sad",
    "😘": "kiss",
    "😗": "kiss",
    "😚": "kiss",
    "😙": "kiss",
    "😴": "sleepy",
    "🥱": "sleepy",
    "😪": "sleepy",
    "🤨": "doubtful",
    "🤔": "doubtful",
    "😒": "pout",
    "😤": "angry",
    "🗣": "talk",
    "😣": "frown",
    "😖": "frown",
}

# Sequence connectors (split first), then layering connectors (within a clause).
_SEQUENCE_SPLIT = re.compile(
    r"\s*(?:[,.;!?\n。…~]+|고\s*나\s*서|고\s*난\s*(?:다음|뒤|후)\s*에?|(?:한|하고)\s*(?:다음|뒤|후)\s*에?"
    r"|그\s*다음\s*에?|그리고\s*나\s*서|그\s*후\s*에?|그\s*뒤\s*에?|그리고|다음\s*에|이어서|이후\s*에?"
    r"|(?<=[가-힣])고(?=\s|$)|(?<=[가-힣])다가(?=\s|$)|\band\s+then\b|\bthen\b|\bafter\s+that\b|\bafterwards\b|\bnext\b"
    r"|\bfollowed\s+by\b)\s*"
)
_LAYER_SPLIT = re.compile(
    r"\s*(?:으?면서(?:도)?|(?<=[가-힣])며(?=\s|$)|동시에|와\s*함께|랑\s*같이|\band\b|\bwhile\b|\bwith\b"
    r"|\bplus\b|&|\+)\s*"
)


def _compile(word: str) -> re.Pattern[str]:
    if re.match(r"[a-z]", word):
        body = r"\s+".join(re.escape(w) for w in word.split())
        return re.compile(r"\b" + body + r"\w*")
    body = r"\s*".join(re.escape(w) for w in word.split())
    if word == "보고":
        body += r"(?=\s|$)"
    return re.compile(body)


_ACTION_RX = tuple((_compile(w), v) for w, v in ACTION_WORDS) + ((re.compile(r"보(?=\s|$)"), "look"),)
_DIRECTION_RX = tuple(
    (_compile(w) if not re.match(r"[a-z]", w) else re.compile(r"\b" + w + r"\b"), v) for w, v in DIRECTION_WORDS
)
_INTENSITY_RX = tuple((_compile(w), v) for w, v in INTENSITY_WORDS)
_SPEED_RX = tuple((_compile(w), v) for w, v in SPEED_WORDS)
_AMP_RX = tuple(re.compile((r"\b" + w + r"\b") if re.match(r"[a-z]", w) else re.escape(w)) for w in AMPLIFIER_WORDS)
# The word "no"/"yes"/"so"/"say"/"mad"... must be whole words, not prefixes of others.
_WHOLE_WORDS = {"no", "yes", "so", "lol", "say", "mad", "wow", "sing", "hmm", "hard", "big", "soft", "light"}
_ACTION_RX = tuple(
    (re.compile(r"\b" + re.escape(w) + r"(?:s|ing|ed)?\b") if w in _WHOLE_WORDS else rx, v)
    for (rx, v), (w, _) in zip(_ACTION_RX, ACTION_WORDS + (("보", "look"),), strict=True)
)
_INTENSITY_RX = tuple(
    (re.compile(r"\b" + re.escape(w) + r"(?:ly)?\b") if w in _WHOLE_WORDS else rx, v)
    for (rx, v), (w, _) in zip(_INTENSITY_RX, INTENSITY_WORDS, strict=True)
)


@dataclass(frozen=True)
class Action:
    """One recognised expression with its modifiers."""

    preset: str
    intensity: float = 1.0
    speed: float = 1.0
    repeat: int = 1
    text: str = ""

    def timeline(self) -> Timeline:
        """This action alone (repetitions one after the other)."""
        p = get_preset(self.preset)
        motion = p.motion(self.intensity, self.speed)
        one = Timeline.single(motion, p.name, intensity=self.intensity, speed=self.speed, text=self.text)
        out = one
        for _ in range(self.repeat - 1):
            out = out.then(one, p.repeat_gap_ms / self.speed)
        return out


@dataclass(frozen=True)
class CommandPlan:
    """What a command means: a sequence of groups; the actions of a group are layered."""

    groups: tuple[tuple[Action, ...], ...]
    text: str = ""
    precise: Timeline | None = field(default=None, compare=False)

    @property
    def actions(self) -> list[Action]:
        return [a for g in self.groups for a in g]

    def timeline(self) -> Timeline:
        """The plan as a timeline (layers timed on the carrier's peak, groups one after another)."""
        if self.precise is not None:
            return self.precise
        out = Timeline()
        for group in self.groups:
            out = out.then(_group_timeline(group), SEQUENCE_GAP_MS)
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "groups": [
                [
                    {
                        "preset": a.preset,
                        "intensity": a.intensity,
                        "speed": a.speed,
                        "repeat": a.repeat,
                        "text": a.text,
                    }
                    for a in g
                ]
                for g in self.groups
            ],
        }


def _group_timeline(group: tuple[Action, ...]) -> Timeline:
    carrier = group[0]
    if len(group) == 1:
        return carrier.timeline()
    p = get_preset(carrier.preset)
    base_motion = p.motion(carrier.intensity, carrier.speed)
    at = base_motion.apex_ms
    layers = [a.timeline() for a in group[1:]]
    need_until = at + max(tl.duration_ms for tl in layers) + LAYER_HOLD_MARGIN_MS
    if carrier.repeat == 1 and need_until > base_motion.release_ms:
        base_motion = base_motion.with_hold(need_until - base_motion.release_ms)
        out = Timeline.single(base_motion, p.name, intensity=carrier.intensity, speed=carrier.speed, text=carrier.text)
    else:
        out = carrier.timeline()
    for tl in layers:
        out = out.over(tl, at_ms=at)
    return out


# --- normalisation and matching ----------------------------------------------


def normalize(text: str) -> str:
    """Lower-case NFKC text with emoji/symbols removed (sentence punctuation kept)."""
    t = unicodedata.normalize("NFKC", text).lower()
    out = []
    for ch in t:
        cat = unicodedata.category(ch)
        if ch in ",.;!?\n~&+×*=:@" or ch.isspace() or cat[0] in "LN":
            out.append("\n" if ch == "\n" else (" " if ch.isspace() else ch))
        else:
            out.append(" ")
    return re.sub(r"[ \t]+", " ", "".join(out)).strip()


def _emoji_actions(text: str) -> list[str]:
    found = []
    for ch in text:
        if ch in EMOJI_ACTIONS:
            found.append(EMOJI_ACTIONS[ch])
    return found


@dataclass
class _Match:
    start: int
    end: int
    kind: str
    value: object


def _scan(text: str) -> list[_Match]:
    """All lexicon matches, longest first, without overlaps, in text order."""
    cands: list[_Match] = []
    for kind, table in (
        ("action", _ACTION_RX),
        ("dir", _DIRECTION_RX),
        ("int", _INTENSITY_RX),
        ("speed", _SPEED_RX),
    ):
        for rx, value in table:
            for m in rx.finditer(text):
                cands.append(_Match(m.start(), m.end(), kind, value))
    for pattern, how in _REPEAT_PATTERNS:
        for m in pattern.finditer(text):
            cands.append(_Match(m.start(), m.end(), "repeat", _repeat_value(m, how)))
    for rx in _AMP_RX:
        for m in rx.finditer(text):
            cands.append(_Match(m.start(), m.end(), "amp", AMPLIFIER_EXPONENT))
    cands.sort(key=lambda c: (-(c.end - c.start), c.start))
    taken: list[_Match] = []
    for c in cands:
        if all(c.end <= t.start or c.start >= t.end for t in taken):
            taken.append(c)
    return sorted(taken, key=lambda c: c.start)


def _repeat_value(m: re.Match[str], how: str) -> int:
    if how == "ko":
        w = m.group(1)
        return int(w) if w.isdigit() else _KO_NUMBERS[w]
    if how == "word":
        return _WORD_REPEATS[m.group(1)]
    if how == "en":
        w = m.group(1)
        return int(w) if w.isdigit() else _EN_NUMBERS[w]
    return int(next(g for g in m.groups() if g))


def _part_actions(part: str) -> list[Action]:
    """The actions of one layering part, with its modifiers applied to all of them."""
    matches = _scan(part)
    intensity, speed, repeat = 1.0, 1.0, None
    pending_amp = False
    presets: list[tuple[str, int]] = []
    directions: list[str] = []
    for i, m in enumerate(matches):
        if m.kind == "amp":
            nxt = matches[i + 1] if i + 1 < len(matches) else None
            if nxt is not None and nxt.kind in ("int", "speed") and part[m.end : nxt.start].strip() == "":
                pending_amp = True
            else:
                intensity *= LONE_AMPLIFIER
            continue
        power = AMPLIFIER_EXPONENT if pending_amp else 1.0
        pending_amp = False
        if m.kind == "int":
            intensity *= float(m.value) ** power  # type: ignore[arg-type]
        elif m.kind == "speed":
            speed *= float(m.value) ** power  # type: ignore[arg-type]
        elif m.kind == "repeat":
            repeat = int(m.value)  # type: ignore[call-overload]
        elif m.kind == "dir":
            directions.append(str(m.value))
        elif m.kind == "action":
            presets.append((str(m.value), m.start))
    # resolve "look"/"wink" with directions
    resolved: list[str] = []
    has_wink = any(p == "wink" for p, _ in presets)
    for name, _ in presets:
        if name == "look":
            if has_wink or (not directions and any(n != "look" for n, _ in presets)):
                continue  # "웃어봐": 봐 is a politeness ending here, not a look
            if not directions:
                raise CommandError(
                    f"{part!r}: look where?",
                    hint="say a direction: 왼쪽/오른쪽/위/아래, left/right/up/down",
                )
            resolved.append(f"look_{directions[0]}")
        elif name == "wink":
            side = next((d for d in directions if d in ("left", "right")), None)
            resolved.append(f"wink_{side}" if side else DEFAULT_WINK)
        else:
            resolved.append(name)
    if not presets and directions and re.search(r"(봐|보|look|glanc|turn)", part):
        resolved.append(f"look_{directions[0]}")
    for big, small in SUBSUMES.items():
        if big in resolved:
            resolved = [r for r in resolved if r not in small]
    # reduplication ("깜빡깜빡", "nod nod") -> repetition; other duplicates collapse
    counts: dict[str, int] = {}
    order: list[str] = []
    for name in resolved:
        if name not in counts:
            order.append(name)
        counts[name] = counts.get(name, 0) + 1
    intensity = min(MAX_INTENSITY, max(MIN_INTENSITY_WORD, intensity))
    speed = min(MAX_SPEED, max(MIN_SPEED, speed))
    out = []
    for name in order:
        n = repeat if repeat is not None else (counts[name] if counts[name] <= 3 else 1)
        if not 1 <= n <= MAX_REPEAT:
            raise CommandError(f"{part!r}: {n} repetitions", hint=f"repeat from 1 to {MAX_REPEAT} times")
        out.append(Action(name, round(intensity, 4), round(speed, 4), n, part.strip()))
    return out


def _vocabulary() -> dict[str, str]:
    """Every known command word -> the preset (or "look") it stands for."""
    words = {w: v for w, v in ACTION_WORDS}
    for p in PRESETS.values():
        for w in (p.name, p.name.replace("_", " "), *p.names_ko, *p.names_en):
            words[w] = p.name
    return words


def close_matches(text: str, n: int = 5) -> list[str]:
    """Presets whose command words are closest to ``text``, as ``"preset (word)"``."""
    vocab = _vocabulary()
    scored: dict[str, tuple[float, str]] = {}
    for tok in [text, *text.split()]:
        for word, preset in vocab.items():
            score = difflib.SequenceMatcher(None, tok, word).ratio()
            if re.search(r"[가-힣]", word) and set(word) & set(tok):
                score = max(score, 0.5)  # Korean: sharing a syllable with a stem is a likely typo
            if score >= 0.45 and score > scored.get(preset, (0.0, ""))[0]:
                scored[preset] = (score, word)
    best = sorted(scored.items(), key=lambda kv: -kv[1][0])[:n]
    out = []
    for preset, (_, word) in best:
        shown = "look_left/look_right/look_up/look_down" if preset == "look" else preset
        out.append(shown if preset.startswith(word) or word == preset else f"{shown} ({word})")
    return out


def unknown_command_error(text: str) -> CommandError:
    close = close_matches(text)
    hint = (f"did you mean: {', '.join(close)}?" if close else "") + (f" Known expressions: {', '.join(PRESET_NAMES)}")
    return CommandError(f"cannot understand {text.strip()!r} as an expression command", hint=hint.strip())


# --- precise sequences --------------------------------------------------------

_POSE_ITEM = re.compile(
    r"^(?P<target>.+?)\s*=\s*(?P<change>\d+(?:\.\d+)?)\s*(?:ms)?\s*:\s*"
    r"(?P<keep>\d+(?:\.\d+)?)\s*(?:ms)?$"
)
_PLAY_ITEM = re.compile(
    r"^(?P<name>[a-z_][a-z_ ]*?)\s*(?:\*\s*(?P<int>\d+(?:\.\d+)?))?"
    r"(?:\s*x\s*(?P<rep>\d+))?(?:\s*@\s*(?P<speed>\d+(?:\.\d+)?))?$"
)
_WAIT_ITEM = re.compile(r"^(?:wait|pause|hold)\s*(?P<ms>\d+(?:\.\d+)?)\s*(?:ms)?$")


def is_precise(text: str) -> bool:
    """True when ``text`` is written in the precise sequence syntax."""
    items = _precise_items(text)
    return bool(items) and any(_POSE_ITEM.match(i) or "=" in i for i in items)


def _precise_items(text: str) -> list[str]:
    lines = []
    for raw in re.split(r"[\n;|]", text):
        line = raw.split("#", 1)[0].strip().lower()
        if line:
            lines.append(line)
    return lines


def _pose_target(target: str, item: str) -> dict[str, Value]:
    if target in ("0", "neutral", "base", "reset"):
        return {}
    pose: dict[str, Value] = {}
    for tok in re.split(r"[\s,]+", target.strip()):
        if not tok:
            continue
        if "=" in tok:
            try:
                name, value = parse_assignment(tok)
            except ParamError as exc:
                raise CommandError(f"precise sequence item {item!r}: {exc.message}", hint=exc.hint) from None
            pose[name] = Abs(value)
            continue
        name, _, k = tok.partition("*")
        try:
            preset = get_preset(name)
        except CommandError as exc:
            raise CommandError(f"precise sequence item {item!r}: {exc.message}", hint=exc.hint) from None
        factor = float(k) if k else 1.0
        check_k = min(MAX_INTENSITY, factor)
        if check_k != factor:
            raise CommandError(f"precise sequence item {item!r}: intensity {factor:g} > {MAX_INTENSITY:g}")
        for pname, v in preset.pose.items():
            pose[pname] = scale_value(v, factor)
    return pose


def parse_precise(text: str) -> Timeline:
    """Parse the precise sequence syntax (see the module docstring) into a timeline."""
    items = _precise_items(text)
    if not items:
        raise CommandError("empty sequence", hint="write e.g. 'smile=300:800' then '0=400:0'")
    keyframes: list[Keyframe] = []
    plays: list[Step] = []
    current: dict[str, Value] = {}
    t = 0.0
    used: set[str] = set()
    for item in items:
        if m := _POSE_ITEM.match(item):
            change, keep = float(m["change"]), float(m["keep"])
            target = _pose_target(m["target"], item)
            used |= set(target)
            change = max(change, MIN_POSE_CHANGE_MS) if t == 0.0 else change
            t += change
            keyframes.append(Keyframe(t, dict(target), Easing.SMOOTHSTEP))
            current = dict(target)
            if keep > 0:
                t += keep
                keyframes.append(Keyframe(t, dict(target), Easing.LINEAR))
        elif m := _WAIT_ITEM.match(item):
            t += float(m["ms"])
            keyframes.append(Keyframe(t, dict(current), Easing.LINEAR))
        elif m := _PLAY_ITEM.match(item):
            try:
                preset = get_preset(m["name"].strip())
            except CommandError as exc:
                raise CommandError(f"precise sequence item {item!r}: {exc.message}", hint=exc.hint) from None
            action = Action(preset.name, float(m["int"] or 1.0), float(m["speed"] or 1.0), int(m["rep"] or 1), item)
            if not 1 <= action.repeat <= MAX_REPEAT:
                raise CommandError(f"precise sequence item {item!r}: repeat from 1 to {MAX_REPEAT} times")
            tl = action.timeline()
            plays.extend(tl.shifted(t, layer_offset=1).steps)
            t += tl.duration_ms
            keyframes.append(Keyframe(t, dict(current), Easing.LINEAR))
        else:
            raise CommandError(
                f"cannot read precise sequence item {item!r}",
                hint="items are TARGET=CHANGE_MS:KEEP_MS (TARGET: 0, a preset[*k], or name=value ...), "
                "a preset name [*intensity] [xN] [@speed], or 'wait MS'",
            )
    # every track names all used params at every pose keyframe (unnamed -> back to base)
    full = [Keyframe(k.t_ms, {n: k.values.get(n, 0.0) for n in used}, k.easing) for k in keyframes]
    end = t + (POSE_RETURN_MS if any(not _zero(v) for v in current.values()) else 0.0)
    steps = list(plays)
    if used:
        pose_motion = Motion("pose", [k for k in full if k.values], end, apex_ms=full[0].t_ms if full else 0.0)
        steps.insert(0, Step(pose_motion, 0.0, "pose", 0, 1.0, 1.0, "; ".join(items)))
    return Timeline(steps, end)


def _zero(v: Value) -> bool:
    return isinstance(v, (int, float)) and float(v) == 0.0


# --- entry points ---------------------------------------------------------------


def parse_command(text: str) -> CommandPlan:
    """Understand a free-text (Korean/English) or precise-sequence command.

    Raises :class:`CommandError` (with close matches) when nothing, or some
    part, cannot be understood.
    """
    if not isinstance(text, str) or not text.strip():
        raise CommandError("empty command", hint="try '웃어줘', 'smile and wink', or 'blink twice'")
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError(f"command is {len(text)} characters long", hint=f"keep it under {MAX_COMMAND_CHARS}")
    if is_precise(text):
        return CommandPlan((), text, precise=parse_precise(text))
    norm = normalize(text)
    groups: list[tuple[Action, ...]] = []
    unknown: list[str] = []
    for clause in _SEQUENCE_SPLIT.split(norm):
        if not clause or not clause.strip():
            continue
        parts: list[tuple[str, list[Action]]] = []
        carry = ""
        for part in _LAYER_SPLIT.split(clause):
            if not part or not part.strip():
                continue
            text_part = f"{carry} {part}".strip()
            acts = _part_actions(text_part)
            if acts:
                parts.append((text_part, acts))
                carry = ""
            elif not _scan(part):
                unknown.append(part)  # no known word at all
            elif parts and _part_actions(f"{parts[-1][0]} {part}"):
                # "wink with your right eye": a part of modifiers belongs to the previous action
                merged = f"{parts[-1][0]} {part}"
                parts[-1] = (merged, _part_actions(merged))
            else:
                carry = text_part  # "slowly and smile": modifiers before their action
        if carry:
            unknown.append(carry)
        group: list[Action] = []
        for _, acts in parts:
            for a in acts:
                if a.preset not in {g.preset for g in group}:
                    group.append(a)
        if group:
            groups.append(tuple(group))
    if not groups:
        emoji = _emoji_actions(unicodedata.normalize("NFKC", text))
        if emoji and not _meaningful(unknown):
            names = [DEFAULT_WINK if e == "wink" else e for e in dict.fromkeys(emoji)]
            return CommandPlan((tuple(Action(n, text=text.strip()) for n in names),), text)
        raise unknown_command_error(norm or text)
    if unknown and _meaningful(unknown):
        raise unknown_command_error(" ".join(unknown))
    return CommandPlan(tuple(groups), text)


# Parts with none of these are filler ("please", "해 주세요", "좀") and may be ignored.
_FILLER = re.compile(
    r"^(?:please|pls|now|again|do it|and|also|too|for me|okay|ok|hey|just|"
    r"좀|해|해요|해줘|해 줘|해 주세요|해주세요|주세요|줘|봐|봐요|요|한번|한 번|다시|또|같이|그냥|이제|"
    r"어|아|여|지|자|라|세요|\s)*$"
)


def _meaningful(parts: Iterable[str]) -> bool:
    return any(not _FILLER.match(p.strip()) for p in parts)


def command_timeline(text: str) -> Timeline:
    """``parse_command(text).timeline()``."""
    return parse_command(text).timeline()


def plan_summary(plan: CommandPlan) -> Mapping[str, object]:
    """A short JSON-friendly description of a plan."""
    return plan.to_json()


__all__ = [
    "Action",
    "CommandPlan",
    "command_timeline",
    "is_precise",
    "normalize",
    "parse_command",
    "parse_precise",
    "unknown_command_error",
    "close_matches",
]

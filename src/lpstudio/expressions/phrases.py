"""Natural commands ("살짝 웃으면서 윙크해줘", "smile then nod twice") -> a :class:`CommandPlan`.

:func:`parse_phrases` splits a command into a sequence of clauses (``고 나서``, ``then``,
punctuation...), each clause into layered parts (``-면서``, ``and``, ``while``...), and
scans each part for the words of :mod:`.lexicon`: actions, directions, intensity,
speed, amplifiers and repetition. Words that are not expressions (fillers, politeness,
quoting particles: "뭐라고 말 좀 해봐", "please smile for me", "can you nod") are ignored as
soon as one known action is present; a command with no known action at all is an error listing
the closest words, and so is a word that is an action word with two letters swapped or one letter
extra or missing ("smile and blnik").
With ``strict=True`` (how :mod:`.speech_command` tells a command from text to say) every part
must be understood or be filler.
"""

from __future__ import annotations

import bisect
import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import CommandError
from .budget import charge, command_budget
from .custom import custom_patterns
from .lexicon import (
    ACTION_WORDS,
    AMPLIFIER_WORDS,
    DIRECTION_WORDS,
    EMOJI_ACTIONS,
    EN_NUMBERS,
    INTENSITY_WORDS,
    KO_NUMBERS,
    REPEAT_PATTERNS,
    SPEED_WORDS,
    WHOLE_WORDS,
    WORD_REPEATS,
)
from .presets import MAX_INTENSITY, MAX_SPEED, MIN_SPEED, PRESET_NAMES, PRESETS, get_preset
from .timeline import Timeline

MAX_REPEAT: int = 10
MIN_INTENSITY_WORD: float = 0.2
AMPLIFIER_EXPONENT: float = 1.5
"""``아주 천천히`` / ``very slowly``: the modifier's factor raised to this power."""
LONE_AMPLIFIER: float = 1.25
"""Intensity of an amplifier with nothing to amplify (``정말 웃어``)."""
TYPO_MIN_CHARS: int = 4
"""Leftover words (and action words) shorter than this are never taken for typos of each other."""
LAYER_HOLD_MARGIN_MS: float = 150.0
SEQUENCE_GAP_MS: float = 0.0
DEFAULT_WINK: str = "wink_right"
SUBSUMES: dict[str, frozenset[str]] = {"big_laugh": frozenset({"smile"})}
"""A preset that already contains others: "깔깔 웃어" is a laugh, not a laugh plus a smile."""
CLOSE_MATCH_CUTOFF: float = 0.45
"""Lowest similarity (difflib ratio) of a word to a command word for the hint to suggest it."""
KOREAN_SHARED_SYLLABLE_SCORE: float = 0.5
"""Similarity given to a Korean command word that shares a syllable with a word of the command."""
MAX_HINT_TOKENS: int = 32
"""Distinct words of a command compared with the vocabulary for the "did you mean" hint (the first ones:
a hint needs no more, and a long command of distinct words would otherwise cost ~350 comparisons each)."""

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


def _word_rx(word: str, whole_suffix: str) -> re.Pattern[str]:
    """A lexicon word's pattern; a :data:`~.lexicon.WHOLE_WORDS` word takes only ``whole_suffix``."""
    if word in WHOLE_WORDS:
        return re.compile(r"\b" + re.escape(word) + whole_suffix + r"\b")
    return _compile(word)


def _anchor(word: str) -> str:
    """A literal every match of ``word``'s pattern contains (its first word): no anchor, no match."""
    return word.split()[0]


_Entry = tuple[re.Pattern[str], object, str]
"""A lexicon pattern, what a match means, and the literal (anchor) a text must contain for it to match."""

_ACTION_RX: tuple[_Entry, ...] = tuple((_word_rx(w, "(?:s|ing|ed)?"), v, _anchor(w)) for w, v in ACTION_WORDS) + (
    (re.compile(r"보(?=\s|$)"), "look", "보"),
)
_DIRECTION_RX: tuple[_Entry, ...] = tuple(
    (_compile(w) if not re.match(r"[a-z]", w) else re.compile(r"\b" + w + r"\b"), v, _anchor(w))
    for w, v in DIRECTION_WORDS
)
_INTENSITY_RX: tuple[_Entry, ...] = tuple((_word_rx(w, "(?:ly)?"), v, _anchor(w)) for w, v in INTENSITY_WORDS)
_SPEED_RX: tuple[_Entry, ...] = tuple((_compile(w), v, _anchor(w)) for w, v in SPEED_WORDS)
_AMP_RX: tuple[_Entry, ...] = tuple(
    (re.compile((r"\b" + w + r"\b") if re.match(r"[a-z]", w) else re.escape(w)), AMPLIFIER_EXPONENT, w)
    for w in AMPLIFIER_WORDS
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
        gesture = p.gesture(self.intensity, self.speed)
        one = Timeline.single(gesture, p.name, intensity=self.intensity, speed=self.speed, text=self.text)
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
    base_gesture = p.gesture(carrier.intensity, carrier.speed)
    at = base_gesture.apex_ms
    layers = [a.timeline() for a in group[1:]]
    need_until = at + max(tl.duration_ms for tl in layers) + LAYER_HOLD_MARGIN_MS
    if carrier.repeat == 1 and need_until > base_gesture.release_ms:
        base_gesture = base_gesture.with_hold(need_until - base_gesture.release_ms)
        out = Timeline.single(base_gesture, p.name, intensity=carrier.intensity, speed=carrier.speed, text=carrier.text)
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
    """All lexicon matches, longest first, without overlaps, in text order.

    Linear in the text for a fixed lexicon: a pattern runs only when its anchor literal is in the
    text, and a candidate is checked against its two neighbours among the matches kept (they never
    overlap, so they are ordered by start and by end alike). Charged to the command's budget.
    """
    charge(len(text) + 1)
    cands: list[_Match] = []
    _find(text, custom_patterns(), "action", cands)  # saved names first: they win ties ("smile2" over "smile")
    for kind, table in (
        ("action", _ACTION_RX),
        ("dir", _DIRECTION_RX),
        ("int", _INTENSITY_RX),
        ("speed", _SPEED_RX),
    ):
        _find(text, table, kind, cands)
    for pattern, how in REPEAT_PATTERNS:
        for m in pattern.finditer(text):
            cands.append(_Match(m.start(), m.end(), "repeat", _repeat_value(m, how)))
    _find(text, _AMP_RX, "amp", cands)
    cands.sort(key=lambda c: (-(c.end - c.start), c.start))
    starts: list[int] = []
    taken: list[_Match] = []
    for c in cands:
        i = bisect.bisect_left(starts, c.start)
        if i > 0 and taken[i - 1].end > c.start:
            continue  # overlaps the kept match that starts before it
        if i < len(taken) and taken[i].start < c.end:
            continue  # overlaps the kept match that starts at or after it
        starts.insert(i, c.start)
        taken.insert(i, c)
    return taken


def _find(text: str, table: tuple[_Entry, ...], kind: str, into: list[_Match]) -> None:
    """Append the matches of ``table``'s patterns whose anchor is in ``text``."""
    for rx, value, anchor in table:
        if anchor in text:
            into.extend(_Match(m.start(), m.end(), kind, value) for m in rx.finditer(text))


def _repeat_value(m: re.Match[str], how: str) -> int:
    if how == "ko":
        w = m.group(1)
        return int(w) if w.isdigit() else KO_NUMBERS[w]
    if how == "word":
        return WORD_REPEATS[m.group(1)]
    if how == "en":
        w = m.group(1)
        return int(w) if w.isdigit() else EN_NUMBERS[w]
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
    """Presets whose command words are closest to ``text``, as ``"preset (word)"``.

    ``text`` and its first :data:`MAX_HINT_TOKENS` distinct words are compared with every command
    word; difflib's cheap upper bounds skip the comparisons that cannot beat the best so far.
    """
    vocab = _vocabulary()
    matchers = [(word, preset, _matcher(word), bool(re.search(r"[가-힣]", word))) for word, preset in vocab.items()]
    scored: dict[str, tuple[float, str]] = {}
    for tok in list(dict.fromkeys([text, *text.split()]))[: MAX_HINT_TOKENS + 1]:
        charge(len(tok) + 1)
        letters = set(tok) - {" "}
        for word, preset, matcher, korean in matchers:
            floor = KOREAN_SHARED_SYLLABLE_SCORE if korean and not letters.isdisjoint(word) else 0.0
            best = scored.get(preset, (0.0, ""))[0]
            matcher.set_seq1(tok)
            score = _similarity(matcher, floor, best)
            if score is not None:
                scored[preset] = (score, word)
    best_words = sorted(scored.items(), key=lambda kv: -kv[1][0])[:n]
    out = []
    for preset, (_, word) in best_words:
        shown = "look_left/look_right/look_up/look_down" if preset == "look" else preset
        out.append(shown if preset.startswith(word) or word == preset else f"{shown} ({word})")
    return out


def _similarity(matcher: difflib.SequenceMatcher[str], floor: float, best: float) -> float | None:
    """``max(ratio, floor)`` when it is at least :data:`CLOSE_MATCH_CUTOFF` and over ``best``, else None.

    The ratio is computed only when its two cheap upper bounds leave it a chance.
    """
    for bound in (matcher.real_quick_ratio, matcher.quick_ratio, matcher.ratio):
        score = max(bound(), floor)
        if score < CLOSE_MATCH_CUTOFF or score <= best:
            return None
    return score


def _matcher(word: str) -> difflib.SequenceMatcher[str]:
    """A matcher against ``word`` (its index built once; each token is set as the first sequence)."""
    matcher: difflib.SequenceMatcher[str] = difflib.SequenceMatcher(None)
    matcher.set_seq2(word)
    return matcher


def unknown_command_error(text: str) -> CommandError:
    close = close_matches(text)
    hint = (f"did you mean: {', '.join(close)}?" if close else "") + (f" Known expressions: {', '.join(PRESET_NAMES)}")
    return CommandError(f"cannot understand {text.strip()!r} as an expression command", hint=hint.strip())


# --- whole commands -------------------------------------------------------------


def parse_phrases(text: str, *, strict: bool = False) -> CommandPlan:
    """Understand a natural (not precise) command; raises :class:`CommandError` with close matches.

    Words that are not expressions are ignored when a known action is present (see the module
    doc); ``strict`` refuses any part that is neither understood nor filler. The work is bounded
    (:mod:`.budget`): a command that would take too long is refused with a :class:`CommandError`.
    """
    with command_budget():
        return _parse_phrases(text, strict=strict)


def _parse_phrases(text: str, *, strict: bool) -> CommandPlan:
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
            elif parts and (merged_acts := _part_actions(merged := f"{parts[-1][0]} {part}")):
                # "wink with your right eye": a part of modifiers belongs to the previous action
                parts[-1] = (merged, merged_acts)
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
        if emoji and not (strict and _meaningful(unknown)):
            names = [DEFAULT_WINK if e == "wink" else e for e in dict.fromkeys(emoji)]
            return CommandPlan((tuple(Action(n, text=text.strip()) for n in names),), text)
        raise unknown_command_error(norm or text)
    if strict and unknown and _meaningful(unknown):
        raise unknown_command_error(" ".join(unknown))
    typo = _typo(norm)
    if typo is not None:
        raise unknown_command_error(typo)
    return CommandPlan(tuple(groups), text)


def leftover_words(text: str) -> list[str]:
    """The words of a normalised command that no lexicon entry matched (fillers, text, typos)."""
    covered = [(m.start, m.end) for m in _scan(text)]
    out = []
    for m in re.finditer(r"\w+", text):
        if not any(a <= m.start() and m.end() <= b for a, b in covered):
            out.append(m.group(0))
    return out


def _near_miss(word: str, known: str) -> bool:
    """Whether ``word`` is ``known`` typed with two letters swapped, or one letter extra or missing.

    A substituted letter does not count: too many everyday words are one letter away from an action
    word ("start"/"stare", "great"/"greet"). The first letter must match.
    """
    if word == known or word[0] != known[0]:
        return False
    if len(word) == len(known):
        diff = [i for i, (a, b) in enumerate(zip(word, known, strict=True)) if a != b]
        return len(diff) == 2 and word[diff[0]] == known[diff[1]] and word[diff[1]] == known[diff[0]]
    longer, shorter = (word, known) if len(word) > len(known) else (known, word)
    if len(longer) - len(shorter) != 1:
        return False
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def _typo_targets() -> list[str]:
    """Whole English action words (preset names and their one-word English names, not lexicon stems)."""
    out = {w.lower() for p in PRESETS.values() for w in (p.name, *p.names_en)}
    return sorted(w for w in out if w.isalpha() and w.isascii() and len(w) >= TYPO_MIN_CHARS)


def _typo(norm: str) -> str | None:
    """The first leftover English word that is a near-miss of an English action word ("blnik"), if any."""
    words = _typo_targets()
    for word in leftover_words(norm):
        if len(word) < TYPO_MIN_CHARS or not re.fullmatch(r"[a-z]+", word) or _is_filler(word):
            continue
        if any(_near_miss(word, known) for known in words):
            return word
    return None


FILLER_WORDS: tuple[str, ...] = (
    "please", "pls", "now", "again", "do it", "and", "also", "too", "for me", "okay", "ok", "hey", "just",
    "좀", "해", "해요", "해줘", "해 줘", "해 주세요", "해주세요", "주세요", "줘", "봐", "봐요", "요",
    "한번", "한 번", "다시", "또", "같이", "그냥", "이제", "어", "아", "여", "지", "자", "라", "세요",
)  # fmt: skip
"""Parts made only of these (and spaces, in any number and order) are filler ("please", "해 주세요", "좀")."""
_FILLER_BY_FIRST: dict[str, tuple[str, ...]] = {
    first: tuple(w for w in FILLER_WORDS if w[0] == first) for first in {w[0] for w in FILLER_WORDS}
}


def _is_filler(text: str) -> bool:
    """Whether ``text`` is a run of :data:`FILLER_WORDS` and spaces.

    Linear time: the positions reachable by a run of filler words, left to right (a regular expression
    with these words as alternatives backtracks exponentially: "해요" is "해" + "요").
    """
    charge(len(text) + 1)
    reach = bytearray(len(text) + 1)
    reach[0] = 1
    for i, ch in enumerate(text):
        if not reach[i]:
            continue
        if ch.isspace():
            reach[i + 1] = 1
        for word in _FILLER_BY_FIRST.get(ch, ()):
            if text.startswith(word, i):
                reach[i + len(word)] = 1
    return bool(reach[len(text)])


def _meaningful(parts: Iterable[str]) -> bool:
    return any(not _is_filler(p.strip()) for p in parts)

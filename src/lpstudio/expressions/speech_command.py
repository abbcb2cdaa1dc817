"""What to say, inside an expression command: ``split_speech(command) -> (rest_of_command, text | None)``.

Forms understood (Korean and English):

* a colon after a speech verb: ``"말해봐: 오늘 날씨 좋네요"``, ``"say: nice to meet you"``;
* quoted text, with or without a quoting particle: ``"\\"안녕\\" 이라고 말해줘"``, ``'say "hi"'``,
  ``「안녕」이라고 해줘`` (quotes: ``" ' “ ” ‘ ’ « » 「 」 『 』``);
* an unquoted quotation with (이)라고: ``"안녕하세요라고 말해줘"``, ``"웃으면서 반가워요라고 말해"``;
* the text after the verb: ``"웃으면서 말해줘 안녕하세요"``, ``"smile and say nice to meet you"``;
  a tail made only of modifiers or other commands (``"말해줘 천천히"``, ``"say it and smile"``)
  is not text;
* placeholders for "something" (``"뭐라고 말 좀 해봐"``, ``"아무 말이나 해줘"``, ``"say something"``)
  are removed from the command and mean the default sentence (``text`` is None).

``rest_of_command`` is the command without the text (and without a quoting particle), always with
a speech verb when there was text or a placeholder (``"'안녕'이라고 해줘"`` -> ``("말해줘", "안녕")``).
Commands without speech come back unchanged with ``None``.
"""

from __future__ import annotations

import re
import unicodedata

from .budget import CommandTooComplexError, command_budget

QUOTES: dict[str, str] = {
    '"': '"',
    "'": "'",
    "“": "”",
    "‘": "’",
    "«": "»",
    "「": "」",
    "『": "』",
    "„": "“",
}
_QUOTE_RX = re.compile(
    "|".join(f"{re.escape(o)}(?P<q{i}>[^{re.escape(c)}]+){re.escape(c)}" for i, (o, c) in enumerate(QUOTES.items()))
)
_PARTICLE_RX = re.compile(r"\s*(?:이?라고|하고|고)(?=\s|$|[,.!?])")

_KO_VERB = (
    r"(?:말\s*좀\s*해|말\s*해|말하|말씀\s*해|말씀하|얘기\s*해|얘기하|이야기\s*해|이야기하)[가-힣]*"
    r"(?:\s+(?:줘|주세요|줄래|봐|봐요|보세요|주라)(?=\s|$|[,.!?]))?"
)
_EN_VERB = r"\b(?:say|speak|talk)\b"
_VERB_RX = re.compile(f"{_KO_VERB}|{_EN_VERB}", re.IGNORECASE)
_SPEECH_WORD_RX = re.compile(r"말|얘기|이야기|\bsay\b|\bspeak|\btalk", re.IGNORECASE)
_COLON_RX = re.compile(r"\s*[:：]\s*")
_RAGO_RX = re.compile(r"(?P<text>\S(?:.*?\S)?)\s*(?P<particle>라고|이라고)\s+(?=말|얘기|이야기|해|하|전해)")
_LAYER_END_RX = re.compile(r"(?:으?면서(?:도)?|하며|며|,|\band\b|\bwhile\b)\s+")
_CONNECTOR_RX = re.compile(
    r"\s*(?:,|\band then\b|\band\b|\bthen\b|\bwhile\b|그리고|그\s*다음에?|다음에|하고\s*나서|고\s*나서)\s*",
    re.IGNORECASE,
)

PLACEHOLDERS_RX = re.compile(
    r"(?:뭐라고|뭐라도|뭐라|뭐든지?|뭔가|무슨\s*말(?:이든|이라도|이나)?|아무\s*말(?:이나|이라도|이든)?|아무거나|한\s*마디(?:만)?)"
    r"|\b(?:something|anything|a\s+few\s+words|a\s+word|some\s+words)\b",
    re.IGNORECASE,
)
"""Words for "something" said around a speech verb: removed, and the default sentence is spoken."""

FILLER_WORDS: frozenset[str] = frozenset(
    {
        "please", "pls", "now", "again", "it", "that", "this", "for", "me", "us", "to", "out", "loud", "aloud",
        "좀", "한번", "한", "번", "다시", "또", "그냥", "이제", "요", "주세요", "줘", "봐", "봐요", "크게", "소리내서",
    }
)  # fmt: skip
"""Words in a tail after the verb that are not something to say ("say it again please")."""


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip(" \t,")


def _strip_text(text: str) -> str:
    return text.strip().strip(" \t")


def _has_speech_verb(text: str) -> bool:
    return bool(_VERB_RX.search(text) or _SPEECH_WORD_RX.search(text))


def _is_commandish(tail: str) -> bool:
    """Whether a tail after the verb is modifiers/fillers or a command of its own, not text to say."""
    from .language import parse_command

    words = re.findall(r"\w+", tail.lower())
    if not words:
        return True
    if all(w in FILLER_WORDS for w in words):
        return True
    if _modifiers_only(tail):
        return True
    try:
        parse_command(tail, strict=True)
    except CommandTooComplexError:
        raise  # the whole command is refused, not just this reading of it
    except Exception:  # noqa: BLE001  (any refusal means: not a command)
        return False
    return True


def _modifiers_only(tail: str) -> bool:
    from .lexicon import AMPLIFIER_WORDS, INTENSITY_WORDS, SPEED_WORDS

    vocab = {w for w, _ in SPEED_WORDS} | {w for w, _ in INTENSITY_WORDS} | set(AMPLIFIER_WORDS) | FILLER_WORDS
    rest = tail.lower()
    for w in sorted(vocab, key=len, reverse=True):
        rest = rest.replace(w, " ")
    return not re.findall(r"\w+", rest)


def _text_and_more(tail: str) -> tuple[str, str]:
    """Split a tail into (text, a trailing command): "hello and smile" -> ("hello", "smile")."""
    from .language import parse_command

    for m in _CONNECTOR_RX.finditer(tail):
        left, right = tail[: m.start()], tail[m.end() :]
        if not left.strip() or not right.strip():
            continue
        try:
            parse_command(right, strict=True)
        except CommandTooComplexError:
            raise
        except Exception:  # noqa: BLE001
            continue
        return left.strip(), tail[m.start() :].strip(" ,")
    return tail.strip(), ""


def _remove_placeholders(command: str) -> str:
    if not _has_speech_verb(command):
        return command
    return _keep_verb(_clean(PLACEHOLDERS_RX.sub(" ", command)))


def _keep_verb(rest: str) -> str:
    """``rest`` with a speech verb: "해줘" (its 말 went with the quote or the placeholder) -> "말해줘"."""
    if _has_speech_verb(rest):
        return rest
    if rest.startswith(("해", "하")):
        return "말" + rest
    return _clean(f"{rest} 말해")


def split_speech(command: str) -> tuple[str, str | None]:
    """``(rest_of_command, text)`` with ``text`` None when the command says nothing particular.

    See the module docstring for the forms; the text keeps its own punctuation and case. The work is
    bounded (:mod:`.budget`): a command that would take too long raises :class:`CommandTooComplexError`.
    """
    with command_budget():
        return _split_speech(command)


def _split_speech(command: str) -> tuple[str, str | None]:
    s = unicodedata.normalize("NFKC", command).strip()
    # 1. quoted text
    m = _QUOTE_RX.search(s)
    if m:
        text = _strip_text(next(g for g in m.groups() if g is not None))
        after = s[m.end() :]
        pm = _PARTICLE_RX.match(after)
        particle = bool(pm)
        rest = s[: m.start()] + " " + (after[pm.end() :] if pm else after)
        if text and (particle or _has_speech_verb(rest)):
            return _keep_verb(_remove_placeholders(_clean(rest))), text
    # 2. verb, colon, text
    c = _COLON_RX.search(s)
    if c and _has_speech_verb(s[: c.start()]) and s[c.end() :].strip():
        return _remove_placeholders(_clean(s[: c.start()])), _strip_text(s[c.end() :])
    # 3. unquoted (이)라고 + verb
    r = _RAGO_RX.search(s)
    if r:
        span = r.group("text")
        start = r.start("text")
        cuts = list(_LAYER_END_RX.finditer(span))
        if cuts:
            start += cuts[-1].end()
            span = span[cuts[-1].end() :]
        text = span.strip()
        if r.group("particle") == "이라고" and text and not _has_final_consonant(text[-1]):
            text += "이"  # "아이라고": the 이 belongs to the word
        quoted = text + r.group("particle")
        if text and PLACEHOLDERS_RX.fullmatch(text) is None and PLACEHOLDERS_RX.fullmatch(quoted) is None:
            rest = s[:start] + " " + s[r.end() :]
            return _remove_placeholders(_clean(rest)), text
    # 4. verb, then the text
    for v in _VERB_RX.finditer(s):
        tail = s[v.end() :]
        if not tail.strip() or _is_commandish(tail):
            continue
        text, more = _text_and_more(tail)
        text = text.strip(" ,")
        if text and PLACEHOLDERS_RX.fullmatch(text) is None and not _is_commandish(text):
            rest = s[: v.end()] + (" " + more if more else "")
            return _remove_placeholders(_clean(rest)), text
    return _remove_placeholders(s), None


def _has_final_consonant(ch: str) -> bool:
    """Whether a Hangul syllable ends in a consonant (받침): then the particle is 이라고, else 라고."""
    code = ord(ch) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0

"""Commands that give each face of a group photo its own thing to do.

Three forms are understood (faces are numbered from 0, largest first; see
:mod:`lpstudio.group.selection`):

* precise: ``"0:smile; 1:wink"`` -- each ``;``/line item that starts with ``N:`` begins
  face N's command; items without a prefix continue the face before
  (``"0:smile=300:800; 0=400:0; 1:wink"``);
* English: ``"face 0 smile, face 1 wink"``, ``"person 1: nod"``, ``"the left person smiles and the
  right one winks"``, ``"the face on the left ..."``;
* Korean: ``"왼쪽 사람은 웃고 오른쪽 사람은 윙크"``, ``"0번 얼굴은 웃어"``, ``"가운데 사람"``.

The text is split at these face markers (one regular-expression scan, charged to the command's
work budget: :mod:`lpstudio.expressions.budget`), and each face's part is then understood as an
ordinary command (:func:`~lpstudio.expressions.language.parse_command`) within the same budget,
so the whole command stays linear in its length and bounded.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import CommandError
from ..expressions.budget import charge, command_budget
from ..expressions.language import MAX_COMMAND_CHARS
from .selection import LEFT, MIDDLE, RIGHT, FaceSelectionError, position_index

FaceRef = int | str
"""A face index (largest first, from 0) or a position word (``left``, ``right``, ``middle``)."""

_POSITION_WORDS = {
    "left": LEFT,
    "right": RIGHT,
    "middle": MIDDLE,
    "center": MIDDLE,
    "centre": MIDDLE,
    "왼쪽": LEFT,
    "오른쪽": RIGHT,
    "가운데": MIDDLE,
}
_EN_NOUN = r"(?:face|person|one|man|woman|guy|girl|lady|boy)"
_KO_NOUN = r"(?:사람|얼굴|분|친구)"
_KO_PARTICLE = r"(?:은|는|이|가|도)?"
_MARKER = re.compile(
    r"(?:^|(?<=[;\n|]))\s*(?P<pnum>\d{1,3})\s*:(?!\d)"  # precise: "0: smile"
    r"|\b(?:face|person)\s*(?:#|no\.?\s*|number\s*)?(?P<enum>\d{1,3})\b\s*:?"  # "face 1", "person #2:"
    r"|\b(?:the\s+)?(?P<enpos>left|right|middle|center|centre)(?:most)?\s+" + _EN_NOUN + r"s?\b\s*:?"
    r"|\b(?:the\s+)?" + _EN_NOUN + r"\s+(?:on\s+the\s+|in\s+the\s+)(?P<enpos2>left|right|middle|center|centre)\b\s*:?"
    r"|(?P<kopos>왼쪽|오른쪽|가운데)\s*(?:에\s*있는\s*)?"
    + _KO_NOUN
    + _KO_PARTICLE
    + r"|(?P<konum>\d{1,3})\s*번\s*(?:째\s*)?"
    + _KO_NOUN
    + _KO_PARTICLE
)
_SPACES = re.compile(r"[^\S\n]+")
_TRAILING = re.compile(r"(?:[\s,;.|]|\band\b|\bthen\b|\bwhile\b|그리고)+$")
_LEADING = re.compile(r"^(?:[\s,;.:|]|\band\b)+")


@dataclass(frozen=True)
class FaceCommand:
    """One face's part of a per-face command."""

    ref: FaceRef
    text: str


def _clean(text: str) -> str:
    text = _LEADING.sub("", text)
    return _TRAILING.sub("", text).strip()


def split_face_commands(text: str) -> list[FaceCommand] | None:
    """The per-face parts of ``text``, in order, or None when it names no face (an ordinary command).

    Raises:
        CommandError: text before the first face marker, a face named with nothing to do, or a
            command over :data:`~lpstudio.expressions.language.MAX_COMMAND_CHARS`.
    """
    if not isinstance(text, str) or len(text) > MAX_COMMAND_CHARS:
        return None  # parse_command gives the usual error
    norm = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).lower())  # bounded backtracking: linear scan
    with command_budget():
        charge(len(norm) + 1)
        marks = list(_MARKER.finditer(norm))
    if not marks:
        return None
    lead = _clean(norm[: marks[0].start()])
    if lead:
        raise CommandError(
            f"'{lead}' comes before any face is named",
            hint="start each part with the face it is for, e.g. 'face 0 smile, face 1 wink' or '0:smile; 1:wink'",
        )
    out: list[FaceCommand] = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(norm)
        part = _clean(norm[m.end() : end])
        number = m["pnum"] or m["enum"] or m["konum"]
        ref: FaceRef = int(number) if number is not None else _POSITION_WORDS[m["enpos"] or m["enpos2"] or m["kopos"]]
        if not part:
            raise CommandError(
                f"'{m.group(0).strip()}' is named but given nothing to do",
                hint="follow each face with its command, e.g. 'face 0 smile, face 1 wink'",
            )
        out.append(FaceCommand(ref, part))
    return out


def check_face_commands(commands: Sequence[FaceCommand]) -> None:
    """Understand every face's part now (before any model work), within one work budget.

    Raises:
        CommandError: a part is not understood (the message names the face), or too complex.
    """
    from ..expressions.language import parse_command

    with command_budget():
        for c in commands:
            try:
                parse_command(c.text)
            except CommandError as exc:
                raise type(exc)(f"face {c.ref}: {exc.message}", hint=exc.hint) from None


def resolve_face_commands(
    commands: Sequence[FaceCommand], boxes: NDArray[np.floating] | Sequence[Sequence[float]]
) -> dict[int, str]:
    """Face index -> its command text, positions resolved against ``boxes`` (N, 4+), largest first.

    Raises:
        FaceSelectionError: a face number out of range, or a position with no single face.
        CommandError: two parts name the same face.
    """
    found = len(boxes)
    out: dict[int, str] = {}
    for c in commands:
        if isinstance(c.ref, int):
            if not 0 <= c.ref < found:
                raise FaceSelectionError(
                    f"the command names face {c.ref}, but the photo has {found} face{'s' if found != 1 else ''} "
                    f"(numbered 0 to {found - 1}, largest first)",
                    hint=f"name faces from 0 to {found - 1}, or by position (left, right)",
                )
            index = c.ref
        else:
            index = position_index(c.ref, boxes)
        if index in out:
            raise CommandError(
                f"the command gives face {index} two parts ('{out[index]}' and '{c.text}')",
                hint="give each face one part (faces are numbered largest first; `lpstudio face` lists them)",
            )
        out[index] = c.text
    return out

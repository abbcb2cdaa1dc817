"""Choosing faces (``--faces``), per-face commands and per-face tracks: no models needed."""

from __future__ import annotations

import numpy as np
import pytest

from lpstudio.errors import CommandError, ParamError
from lpstudio.expressions.budget import CommandTooComplexError
from lpstudio.group.commands import FaceCommand, check_face_commands, resolve_face_commands, split_face_commands
from lpstudio.group.plan import face_params, face_timelines
from lpstudio.group.selection import (
    ALL_FACES,
    FaceSelectionError,
    left_to_right,
    parse_faces_option,
    position_index,
    resolve_faces,
)
from lpstudio.params import EditParams

# Two faces, largest first: face 0 on the right of the photo, face 1 on the left.
BOXES = np.array([[300, 50, 420, 170, 0.9], [40, 80, 120, 160, 0.8]], np.float32)


def test_faces_option_parses_all_and_lists() -> None:
    assert parse_faces_option(None) is None
    assert parse_faces_option(" ALL ") == ALL_FACES
    assert parse_faces_option("0,2") == (0, 2)
    assert parse_faces_option("1") == (1,)
    assert parse_faces_option([2, 0]) == (2, 0)
    for bad in ("", "a", "0,,1", "-1", "1;2", "0,1,x"):
        with pytest.raises(ParamError, match="--faces"):
            parse_faces_option(bad)
    with pytest.raises(ParamError, match="twice"):
        parse_faces_option("1,1")


def test_resolve_faces_checks_the_range() -> None:
    assert resolve_faces(None, 3) == [0]
    assert resolve_faces(ALL_FACES, 3) == [0, 1, 2]
    assert resolve_faces(ALL_FACES, 12, max_faces=4) == [0, 1, 2, 3]
    assert resolve_faces((1,), 2) == [1]
    with pytest.raises(FaceSelectionError) as info:
        resolve_faces((0, 2), 2)
    msg = info.value.message
    assert "face 2 was asked for" in msg and "has 2 faces" in msg and "0 to 1" in msg and "\n" not in msg
    assert info.value.http_status == 400 and info.value.exit_code == 2
    with pytest.raises(FaceSelectionError, match="at most 2"):
        resolve_faces((0, 1, 2), 3, max_faces=2)
    with pytest.raises(FaceSelectionError, match="no face"):
        resolve_faces(ALL_FACES, 0)


def test_left_and_right_are_positions_in_the_photo() -> None:
    assert left_to_right(BOXES) == [1, 0]
    assert position_index("left", BOXES) == 1 and position_index("right", BOXES) == 0
    three = np.vstack([BOXES, [[200, 60, 260, 120, 0.7]]])
    assert position_index("middle", three) == 2
    with pytest.raises(FaceSelectionError, match="middle"):
        position_index("middle", BOXES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("왼쪽 사람은 웃고 오른쪽 사람은 윙크", [("left", "웃고"), ("right", "윙크")]),
        ("face 1 smile, face 0 wink", [(1, "smile"), (0, "wink")]),
        ("1:smile; 0:wink", [(1, "smile"), (0, "wink")]),
        ("0:smile=300:800; 0=400:0\n1: wink x2", [(0, "smile=300:800; 0=400:0"), (1, "wink x2")]),
        ("the left person smiles and the right one nods", [("left", "smiles"), ("right", "nods")]),
        ("Person #1: blink twice. The face on the right: smile", [(1, "blink twice"), ("right", "smile")]),
        ("0번 얼굴은 웃어 1번 사람은 끄덕여", [(0, "웃어"), (1, "끄덕여")]),
    ],
)
def test_per_face_commands_split(text: str, expected: list[tuple[object, str]]) -> None:
    parts = split_face_commands(text)
    assert parts == [FaceCommand(ref, part) for ref, part in expected]
    check_face_commands(parts)  # every part is an ordinary command


@pytest.mark.parametrize(
    "text",
    ["고개를 왼쪽으로 돌려", "smile then nod twice", "두 번 깜빡여", "look left and smile", "smile=300:800; 0=400:0"],
)
def test_ordinary_commands_name_no_face(text: str) -> None:
    assert split_face_commands(text) is None


def test_per_face_command_errors() -> None:
    with pytest.raises(CommandError, match="comes before any face"):
        split_face_commands("smile, face 1 wink")
    with pytest.raises(CommandError, match="given nothing to do"):
        split_face_commands("face 0 smile, face 1")
    with pytest.raises(CommandError, match="face 1: "):
        check_face_commands(split_face_commands("face 0 smile, face 1 florp"))
    with pytest.raises(FaceSelectionError, match="names face 5, but the photo has 2 faces"):
        resolve_face_commands(split_face_commands("face 5 smile"), BOXES)
    with pytest.raises(CommandError, match="two parts"):
        resolve_face_commands(split_face_commands("face 1 smile, the left one winks"), BOXES)


def test_positions_resolve_to_the_right_faces() -> None:
    parts = split_face_commands("왼쪽 사람은 웃고 오른쪽 사람은 윙크")
    assert resolve_face_commands(parts, BOXES) == {1: "웃고", 0: "윙크"}


def test_long_adversarial_commands_stay_within_the_work_budget() -> None:
    """Linear scan: a 500-character run of near-markers is split or refused quickly, never hangs."""
    for text in ("face " * 100, "0:" * 250, "왼쪽 " * 166, "person #1 " * 50):
        try:
            parts = split_face_commands(text[:500])
            if parts:
                check_face_commands(parts)
        except (CommandError, CommandTooComplexError):
            pass


def test_each_face_gets_its_own_track() -> None:
    """Face 1 smiles, face 0 winks; a third chosen face without a command only idles (or stays still)."""
    timelines = face_timelines([0, 1, 2], {1: "smile", 0: "wink"}, idle=False)
    tracks = face_params(timelines, [EditParams(), EditParams(), EditParams()], fps=25)
    assert len({len(t) for t in tracks}) == 1
    peak = lambda track, name: max(abs(getattr(p, name)) for p in track)  # noqa: E731
    assert peak(tracks[1], "smile") > 0.5 and peak(tracks[1], "wink") == 0
    assert peak(tracks[0], "wink") > 5 and peak(tracks[0], "smile") < peak(tracks[1], "smile") / 2
    assert all(p == tracks[2][0] for p in tracks[2])
    assert tracks[0][-1] == tracks[0][0]  # every track ends on its base pose

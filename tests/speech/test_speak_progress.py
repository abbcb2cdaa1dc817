"""`lpstudio speak`'s progress bar: frames done, the total and the time left, from the first sentence on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from speech_helpers import StandInEngine, requires_speech

from lpstudio.cli import main
from lpstudio.speech.mux import stream_durations

pytestmark = requires_speech

THREE_SENTENCES = "Good morning to you. I have a short story about a boat. Thank you for listening."
BAR = re.compile(r"speaking:\s*\d+%\S*\s*(\d+)/(\d+) \[[0-9:]+<([0-9:?]+)")
"""tqdm's line: ``speaking:  40%|####  | 20/50 [00:01<00:02, 12.3frame/s]`` (done/total [elapsed<left])."""


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandInEngine:
    """The stand-in renderer instead of the model (the progress of the CLI's loop is under test)."""
    engine = StandInEngine()
    monkeypatch.setattr("lpstudio.cli.speak.load_engine", lambda args, face: engine)
    return engine


def test_the_bar_has_a_total_and_a_time_left_from_the_first_sentence(tmp_path: Path, capsys, stand_in) -> None:
    out = tmp_path / "talk.mp4"
    assert main(["speak", THREE_SENTENCES, "-o", str(out), "--no-idle", "--fps", "5"]) == 0
    err = capsys.readouterr().err
    shown = [(int(n), int(total), left) for n, total, left in BAR.findall(err)]
    assert shown, f"no progress bar with a total in: {err[-400:]!r}"
    frames = stream_durations(out)["video_frames"]
    assert shown[-1][:2] == (frames, frames)  # ends at the exact total
    first_total = shown[0][1]
    # before the second sentence was synthesised the total already counted all three (estimated)
    assert frames * 0.6 <= first_total <= frames * 1.6 and first_total > frames / 3
    assert all(left != "?" for _, _, left in shown)  # a time left on every line
    assert all(n <= total for n, total, _ in shown)


def test_one_clip_has_its_exact_total_at_once(tmp_path: Path, capsys, stand_in) -> None:
    out = tmp_path / "hi.mp4"
    assert main(["speak", "--command", "웃으면서 말해줘 안녕하세요", "-o", str(out), "--fps", "5"]) == 0
    shown = [(int(n), int(total)) for n, total, _ in BAR.findall(capsys.readouterr().err)]
    frames = stream_durations(out)["video_frames"]
    assert shown and {total for _, total in shown} == {frames}

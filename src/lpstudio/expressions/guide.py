"""The parameter guide: what each of the 17 editing parameters does.

Ranges, neutral values and units come from :data:`lpstudio.params.PARAM_SPECS`
(never repeated here); this module adds the implicit keypoints each parameter
moves, what a viewer sees at both ends, and how it interacts with the others.
:func:`guide_markdown` generates ``docs/PARAMETERS.md``; :func:`contact_sheet`
renders one row per parameter at minimum / neutral / maximum with the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..params import PARAM_SPECS, SPECS_BY_NAME, EditParams
from .presets import GAZE_SCREEN_RIGHT, PITCH_DOWN, YAW_SCREEN_RIGHT
from .timeline import NOMINAL_EYE_RATIO, NOMINAL_LIP_RATIO


@dataclass(frozen=True)
class ParamGuide:
    name: str
    keypoints: str
    at_min: str
    at_max: str
    interactions: str


def _dir(sign: float, pos: str, neg: str) -> tuple[str, str]:
    """(what the minimum shows, what the maximum shows) for a signed convention."""
    return (neg, pos) if sign > 0 else (pos, neg)


_PITCH = _dir(PITCH_DOWN, "chin down, head tips forward (nodding down)", "chin up, head tips back")
_YAW = _dir(YAW_SCREEN_RIGHT, "face turns toward screen right", "face turns toward screen left")
_GAZE = _dir(GAZE_SCREEN_RIGHT, "pupils move toward screen right", "pupils move toward screen left")

GUIDE: tuple[ParamGuide, ...] = (
    ParamGuide(
        "eye_ratio",
        "all eye keypoints, through the eye retargeting MLP (not a fixed offset)",
        "eyes fully closed",
        "eyes opened very wide (beyond ~0.5 it looks unnatural)",
        "A target for the eye MLP: a value equal to the source's own ratio means no retargeting. "
        "Adds to wink/eyeball_y lid motion; closing both eyes with eye_ratio while wink is up gives a "
        "squeezed wink. Blinks in presets are eye_ratio going to 0.",
    ),
    ParamGuide(
        "lip_ratio",
        "all lip keypoints, through the lip retargeting MLP",
        "mouth closed",
        "mouth wide open",
        "A target for the lip MLP; equal to the source's own ratio means no retargeting. Combines with "
        "lip_variation_three (open/close by keypoint 19) — use both for talking.",
    ),
    ParamGuide(
        "head_pitch",
        "rotates every keypoint (relative to the source pose)",
        _PITCH[0],
        _PITCH[1],
        "Rotation is applied before all expression offsets, so expressions follow the head. Large pitch "
        "with eyeball_y makes the gaze look forced; presets keep pitch under ~10 degrees.",
    ),
    ParamGuide(
        "head_yaw",
        "rotates every keypoint",
        _YAW[0],
        _YAW[1],
        "Beyond ~15 degrees the far cheek is hallucinated; combine with eyeball_x the same way for a "
        "natural look (eyes lead, head follows).",
    ),
    ParamGuide(
        "head_roll",
        "rotates every keypoint in the image plane",
        "head tilts one way (toward one shoulder)",
        "head tilts the other way",
        "Independent of the others; small roll (2-6 degrees) makes smiles, winks and doubt look alive.",
    ),
    ParamGuide(
        "mov_x",
        "keypoint 5 x (applied with the opposite sign, as in the official code)",
        "face shifts sideways one way",
        "face shifts sideways the other way",
        "Moves one keypoint that the stitching network spreads over the face; values beyond +-0.1 "
        "distort the face rather than translate it.",
    ),
    ParamGuide(
        "mov_y",
        "keypoint 5 y",
        "face shifts up",
        "face shifts down",
        "As mov_x. Idle breathing uses a tiny mov_y together with head_pitch.",
    ),
    ParamGuide(
        "mov_z",
        "scales the whole driving keypoint set (not an offset)",
        "face smaller (moves away)",
        "face larger (moves closer)",
        "Multiplies rotation and expression together, so it also scales every other parameter's effect "
        "slightly; neutral is 1.0.",
    ),
    ParamGuide(
        "lip_variation_zero",
        "keypoint 19 x (a lip keypoint, sideways)",
        "mouth pulled to one side",
        "mouth pulled to the other side (a pout/smirk)",
        "The official panel calls it 'pouting'; small values (+-0.03) read as a wry or doubtful mouth.",
    ),
    ParamGuide(
        "lip_variation_one",
        "keypoints 14 y, 3 y, 7 y, 17 z",
        "lips pursed/puckered (kiss)",
        "lips pressed and stretched (tight, tense)",
        "Moves the same keypoints as smile (14, 3, 7, 17) in other directions: it can cancel part of a "
        "smile; presets use negative values for kiss/pout and positive for frown/angry.",
    ),
    ParamGuide(
        "lip_variation_two",
        "keypoints 20 y/z, 14 y",
        "no change (neutral is the minimum)",
        "a grin: corners back, teeth showing",
        "Adds to smile on keypoints 20 and 14; a little (2-5) makes a smile or laugh broader.",
    ),
    ParamGuide(
        "lip_variation_three",
        "keypoint 19 y/z, 17 y",
        "lips pressed shut",
        "mouth opened (jaw drop)",
        "Keypoint-level open/close that adds to lip_ratio; used with lip_ratio for syllables.",
    ),
    ParamGuide(
        "smile",
        "keypoints 20, 14, 17, 13, 16, 3, 7",
        "mouth corners down (a sad mouth)",
        "a broad smile with raised cheeks; the lower lids (13, 16) rise, so the eyes narrow",
        "Narrows the eyes by itself (lids 13/16), so a blink over a smile closes sooner; shares "
        "keypoints with lip_variation_one/two and wink (13, 17, 3).",
    ),
    ParamGuide(
        "wink",
        "keypoints 11, 13 (one eye), 17, 3",
        "no change (neutral is the minimum)",
        "one eye closed, the mouth corner on that side lifts a little",
        "One eye only, always the same one (there is no mirrored wink among the 17 parameters): the "
        "wink_left/wink_right presets both close it and differ by head tilt and glance. Shares 13 with "
        "smile and eyeball_y, so winking over a smile closes the eye fully at lower values.",
    ),
    ParamGuide(
        "eyebrow",
        "keypoints 1, 2",
        "brows pulled together (furrow, frown/anger)",
        "one brow up and the other down (quizzical, skeptical)",
        "Asymmetric by design at the positive end (keypoint 1 goes down while 2 goes up), so it is the "
        "'one eyebrow' of the doubtful preset; the negative end moves both brows inward.",
    ),
    ParamGuide(
        "eyeball_x",
        "keypoints 11, 15 x (the pupils; one eye moves 0.7x as far as the other, depending on direction)",
        _GAZE[0],
        _GAZE[1],
        "Pairs with head_yaw: eyes lead a head turn. Idle saccades use +-4.",
    ),
    ParamGuide(
        "eyeball_y",
        "keypoints 11, 15 y (pupils) and 13, 16 y (lids, as blink = -eyeball_y / 2)",
        "looking down; the upper lids lower with the gaze (eyes look half closed)",
        "looking up; the lids open wider",
        "Also moves the eyelids, so looking down partly closes the eyes on top of eye_ratio, and looking "
        "up widens them (used by surprise). Pairs with head_pitch.",
    ),
)
GUIDE_BY_NAME: dict[str, ParamGuide] = {g.name: g for g in GUIDE}


def guide_json() -> list[dict[str, Any]]:
    """The guide as JSON-friendly records, in panel order."""
    out = []
    for spec in PARAM_SPECS:
        g = GUIDE_BY_NAME[spec.name]
        out.append(
            {
                "name": spec.name,
                "label": spec.label,
                "min": spec.minimum,
                "max": spec.maximum,
                "neutral": spec.neutral,
                "neutral_note": None
                if spec.neutral is not None
                else "the source's own ratio (no retargeting); nominal "
                f"{NOMINAL_EYE_RATIO if spec.name == 'eye_ratio' else NOMINAL_LIP_RATIO} without a source",
                "unit": spec.unit,
                "keypoints": g.keypoints,
                "at_min": g.at_min,
                "at_max": g.at_max,
                "interactions": g.interactions,
            }
        )
    return out


def guide_text() -> str:
    """A plain-text table for the terminal."""
    lines = []
    for rec in guide_json():
        neutral = "source" if rec["neutral"] is None else f"{rec['neutral']:g}"
        lines.append(f"{rec['name']:<20} {rec['min']:>7g} .. {rec['max']:<7g} neutral {neutral:<7} {rec['unit']}")
        lines.append(f"    keypoints: {rec['keypoints']}")
        lines.append(f"    min: {rec['at_min']}")
        lines.append(f"    max: {rec['at_max']}")
        lines.append(f"    with others: {rec['interactions']}")
    return "\n".join(lines)


def guide_markdown() -> str:
    """The content of ``docs/PARAMETERS.md``."""
    out = [
        "# The 17 editing parameters",
        "",
        "<!-- generated by lpstudio.expressions.guide.guide_markdown(); edit that module, then run",
        "     `lpstudio params --markdown > docs/PARAMETERS.md` -->",
        "",
        "Ranges, neutral values and units come from `lpstudio.params.PARAM_SPECS` (the official panel's",
        "slider ranges). `lpstudio params` prints this guide, `lpstudio params --json` gives it as JSON, and",
        "`lpstudio params --sheet out.png` renders a contact sheet (one row per parameter at min / neutral /",
        "max) with the engine, to check the descriptions below on real weights.",
        "",
        "Keypoint space has x to the right and y growing downward (so a negative y offset moves a keypoint",
        "up). The head-rotation and gaze directions below follow the sign constants `PITCH_DOWN`,",
        "`YAW_SCREEN_RIGHT` and `GAZE_SCREEN_RIGHT` in `lpstudio.expressions.presets`, derived from the",
        "official rotation convention; if the contact sheet shows the opposite on real weights, flip the",
        "constant and regenerate this page: the presets follow automatically.",
        "",
        "`eye_ratio` and `lip_ratio` have no fixed neutral: they are targets for the retargeting networks,",
        "and the base pose uses the source photo's own ratios (`state.neutral_params()`), meaning \"no",
        f'retargeting". Without a photo (`lpstudio say --dry-run`) the nominal base is eye '
        f"{NOMINAL_EYE_RATIO} and lip {NOMINAL_LIP_RATIO} (open eyes, closed mouth).",
        "",
        "| parameter | range | neutral | unit | keypoints |",
        "|---|---|---|---|---|",
    ]
    for rec in guide_json():
        neutral = "source's own" if rec["neutral"] is None else f"{rec['neutral']:g}"
        out.append(
            f"| `{rec['name']}` | {rec['min']:g} .. {rec['max']:g} | {neutral} | {rec['unit']} | {rec['keypoints']} |"
        )
    out.append("")
    for rec in guide_json():
        out += [
            f"## `{rec['name']}` ({rec['label']})",
            "",
            f"* **minimum ({rec['min']:g})**: {rec['at_min']}",
            f"* **maximum ({rec['max']:g})**: {rec['at_max']}",
            f"* **moves**: {rec['keypoints']}",
            f"* **with the others**: {rec['interactions']}",
            "",
        ]
    out += [
        "## Order of application",
        "",
        "Head rotation is applied to the canonical keypoints first, then the expression offsets are added",
        "(gaze, smile, wink, eyebrow, lip variations, movement), the result is scaled by `mov_z`, and",
        "finally the eye and lip retargeting deltas (from `eye_ratio`/`lip_ratio`) are added before",
        "stitching. Offsets on shared keypoints (13, 14, 17, 3, 7, 11) simply add up, which is why the",
        "presets keep each contribution moderate.",
        "",
    ]
    return "\n".join(out)


SHEET_CELL: int = 192
SHEET_LABEL_W: int = 200


def sheet_params(base: EditParams) -> list[tuple[str, list[EditParams]]]:
    """Per parameter: the base with it at minimum, neutral (ratios: the base's own) and maximum."""
    rows = []
    for spec in PARAM_SPECS:
        middle = getattr(base, spec.name) if spec.neutral is None else spec.neutral
        rows.append((spec.name, [base.replace(**{spec.name: v}) for v in (spec.minimum, middle, spec.maximum)]))
    return rows


def contact_sheet(render: Callable[[list[EditParams]], list[np.ndarray]], base: EditParams) -> np.ndarray:
    """One row per parameter (min / neutral / max), labelled; ``render`` maps params to RGB frames."""
    from PIL import Image, ImageDraw

    rows = sheet_params(base)
    flat = [p for _, ps in rows for p in ps]
    frames = render(flat)
    cell = SHEET_CELL
    sheet = Image.new("RGB", (SHEET_LABEL_W + 3 * cell, len(rows) * cell + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(("minimum", "neutral", "maximum")):
        draw.text((SHEET_LABEL_W + j * cell + 8, 6), title, fill="black")
    for i, (name, _) in enumerate(rows):
        spec = SPECS_BY_NAME[name]
        y = 24 + i * cell
        draw.text((8, y + cell // 2 - 12), name, fill="black")
        draw.text((8, y + cell // 2 + 2), f"{spec.minimum:g} .. {spec.maximum:g}", fill="gray")
        for j in range(3):
            img = Image.fromarray(np.asarray(frames[i * 3 + j], dtype=np.uint8)).resize((cell, cell))
            sheet.paste(img, (SHEET_LABEL_W + j * cell, y))
    return np.asarray(sheet)

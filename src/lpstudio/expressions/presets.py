"""Named expressions ("presets") built from keyframes over the 17 parameters.

Every preset is designed as a small performance rather than a ramp: a brief
anticipation in the opposite direction, an arrival that slightly overshoots
where it fits, a little head motion that goes with the expression, a hold, and a
settle back to the base pose. :meth:`Preset.gesture` scales offsets by an
intensity and times by a speed.

Sign conventions (keypoint space has y growing downward, so negative y is "up"):

* ``eyeball_x`` > 0 moves the pupils toward screen right; ``eyeball_y`` > 0 looks
  up (and, by the official coupling, opens the lids a little).
* ``head_pitch``/``head_yaw`` directions follow :data:`PITCH_DOWN` and
  :data:`YAW_SCREEN_RIGHT`, derived from the official rotation convention and
  documented in ``docs/PARAMETERS.md``; if a contact sheet made with real weights
  shows the opposite, flip the constant and every preset follows.
* Only one eye can close on its own: the ``wink`` parameter moves keypoints 11
  and 13 of a single eye. ``wink_left``/``wink_right`` both close that eye and
  differ by tilting the head and glancing toward the named (screen) side.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import CommandError
from .custom import active_custom
from .timeline import Easing, Gesture, Keyframe, Rel, Value

PITCH_DOWN: float = 1.0
"""Sign of ``head_pitch`` that lowers the chin (a nod goes this way first)."""
YAW_SCREEN_RIGHT: float = -1.0
"""Sign of ``head_yaw`` that turns the face toward the right of the screen."""
GAZE_SCREEN_RIGHT: float = 1.0
"""Sign of ``eyeball_x`` that moves the pupils toward the right of the screen."""

MIN_INTENSITY: float = 0.0
MAX_INTENSITY: float = 2.0
MIN_SPEED: float = 0.25
MAX_SPEED: float = 4.0

E = Easing


def _k(t_ms: float, easing: Easing = Easing.SMOOTHSTEP, **values: Value) -> Keyframe:
    return Keyframe(t_ms, values, easing)


@dataclass(frozen=True)
class Preset:
    """A named expression.

    ``names_ko``/``names_en`` are display names (the first is canonical);
    ``pose`` is the held expression used by pose sequences (``smile=300:500``);
    ``repeat_gap_ms`` is the base-pose pause between repetitions.
    """

    name: str
    names_ko: tuple[str, ...]
    names_en: tuple[str, ...]
    description: str
    build: Callable[[], Gesture] = field(repr=False)
    pose: Mapping[str, Value] = field(default_factory=dict)
    repeat_gap_ms: float = 0.0

    def gesture(self, intensity: float = 1.0, speed: float = 1.0) -> Gesture:
        """The preset's gesture at ``intensity`` (offset scale) and ``speed`` (time scale)."""
        check_modifiers(intensity, speed)
        return self.build().scaled(intensity, speed, name=self.name)

    def to_json(self) -> dict[str, object]:
        m = self.build()
        return {
            "name": self.name,
            "ko": list(self.names_ko),
            "en": list(self.names_en),
            "description": self.description,
            "duration_ms": m.duration_ms,
            "params": sorted(m.params),
        }


def check_modifiers(intensity: float, speed: float) -> None:
    """Raise :class:`CommandError` unless intensity and speed are in their ranges."""
    if not (MIN_INTENSITY <= intensity <= MAX_INTENSITY):
        raise CommandError(
            f"intensity {intensity:g} is outside {MIN_INTENSITY:g} .. {MAX_INTENSITY:g}",
            hint="1 is the designed strength; 0.5 is subtle, 1.5 is strong",
        )
    if not (MIN_SPEED <= speed <= MAX_SPEED):
        raise CommandError(
            f"speed {speed:g} is outside {MIN_SPEED:g} .. {MAX_SPEED:g}",
            hint="1 is the designed tempo; 0.5 is twice as slow, 2 twice as fast",
        )


# --- the designs ------------------------------------------------------------
# Times in ms. Offsets are added to the base pose; eye_ratio uses Rel (a fraction
# of the source's own eyes-open ratio) so a blink closes any eye completely.

SMILE_POSE: dict[str, Value] = {
    "smile": 0.85,
    "lip_variation_two": 2.0,
    "eye_ratio": Rel(-0.15),
    "head_pitch": -0.8 * PITCH_DOWN,
    "head_roll": 1.2,
}


def _smile() -> Gesture:
    return Gesture(
        "smile",
        [
            _k(
                120,
                smile=-0.04,
                head_pitch=0.4 * PITCH_DOWN,
                eye_ratio=Rel(0.02),
                lip_variation_two=0.0,
                head_roll=-0.3,
            ),
            _k(
                520,
                E.EASE_OUT,
                smile=0.97,
                lip_variation_two=2.6,
                eye_ratio=Rel(-0.19),
                head_pitch=-1.3 * PITCH_DOWN,
                head_roll=1.6,
            ),
            _k(720, **SMILE_POSE),
            _k(1700, **SMILE_POSE),
        ],
        2350,
        apex_ms=720,
        release_ms=1700,
    )


LAUGH_POSE: dict[str, Value] = {
    "smile": 1.15,
    "lip_ratio": 0.3,
    "lip_variation_three": 25.0,
    "lip_variation_two": 5.0,
    "eye_ratio": Rel(-0.45),
    "head_pitch": -3.5 * PITCH_DOWN,
    "head_roll": 2.0,
}


def _big_laugh() -> Gesture:
    kfs = [
        _k(
            150,
            smile=0.1,
            head_pitch=0.8 * PITCH_DOWN,
            lip_ratio=0.0,
            eye_ratio=Rel(0.0),
            head_roll=0.0,
            lip_variation_three=0.0,
            lip_variation_two=0.0,
        ),
        _k(
            450,
            E.EASE_OUT,
            smile=1.2,
            lip_ratio=0.34,
            lip_variation_three=30.0,
            lip_variation_two=5.5,
            eye_ratio=Rel(-0.5),
            head_pitch=-4.2 * PITCH_DOWN,
            head_roll=2.4,
        ),
    ]
    # "ha-ha-ha": the mouth and the head bounce with decreasing, uneven beats
    beats = [
        (640, 0.18, -2.4),
        (830, 0.36, -4.4),
        (1010, 0.17, -2.6),
        (1200, 0.33, -4.0),
        (1390, 0.2, -2.9),
        (1600, 0.3, -3.5),
    ]
    for t, lip, pitch in beats:
        kfs.append(_k(t, lip_ratio=lip, head_pitch=pitch * PITCH_DOWN, lip_variation_three=lip * 85.0))
    kfs.append(_k(1600, smile=1.15, lip_variation_two=5.0, eye_ratio=Rel(-0.45), head_roll=2.0))
    return Gesture("big_laugh", kfs, 2500, apex_ms=450, release_ms=1600)


def _blink() -> Gesture:
    return Gesture(
        "blink",
        [_k(80, E.EASE_IN, eye_ratio=Rel(-1.0)), _k(120, E.LINEAR, eye_ratio=Rel(-1.0))],
        300,
        apex_ms=80,
        release_ms=120,
        return_easing=E.EASE_OUT,
    )


def _wink(side: float) -> Callable[[], Gesture]:
    def build() -> Gesture:
        hold = {
            "wink": 34.0,
            "smile": 0.3,
            "head_roll": 4.0 * side,
            "eyeball_x": 5.0 * side * GAZE_SCREEN_RIGHT,
            "head_pitch": -0.5 * PITCH_DOWN,
        }
        return Gesture(
            f"wink_{'right' if side > 0 else 'left'}",
            [
                _k(100, smile=-0.03, head_roll=-0.6 * side, eyeball_x=0.0, head_pitch=0.3 * PITCH_DOWN),
                _k(
                    290,
                    wink=37.0,
                    smile=0.35,
                    head_roll=5.0 * side,
                    eyeball_x=6.0 * side,
                    head_pitch=-0.7 * PITCH_DOWN,
                ),
                _k(390, **hold),
                _k(700, **hold),
            ],
            1050,
            apex_ms=390,
            release_ms=700,
        )

    return build


# Syllables of "안녕하세요, 반갑습니다": (duration ms, openness, roundness, spread, closes at end)
# openness -> lip_ratio and lip_variation_three, roundness -> lip_variation_one (pursing),
# spread -> lip_variation_two (grin). Labial consonants (ㅂ/ㅁ/ㅍ) close the lips fully.
TALK_SYLLABLES: tuple[tuple[float, float, float, float, bool], ...] = (
    (170, 0.32, 0.0, 0.0, False),  # 안
    (190, 0.22, 0.5, 0.0, False),  # 녕
    (150, 0.36, 0.0, 0.1, False),  # 하
    (160, 0.16, 0.0, 0.8, False),  # 세
    (240, 0.24, 1.0, 0.0, True),  # 요 (then a short pause)
    (170, 0.34, 0.0, 0.0, False),  # 반
    (160, 0.30, 0.0, 0.2, True),  # 갑
    (150, 0.12, 0.3, 0.5, True),  # 습
    (140, 0.14, 0.0, 1.0, False),  # 니
    (230, 0.33, 0.0, 0.0, True),  # 다
)
TALK_PAUSE_AFTER: frozenset[int] = frozenset({4})
TALK_PAUSE_MS: float = 220.0
TALK_LEAD_IN_MS: float = 120.0


def _talk() -> Gesture:
    kfs = [_k(TALK_LEAD_IN_MS, lip_ratio=0.02, lip_variation_three=0.0, head_pitch=0.0, eyebrow=0.0)]
    t = TALK_LEAD_IN_MS
    for i, (dur, openness, roundness, spread, closes) in enumerate(TALK_SYLLABLES):
        peak = t + dur * 0.45
        kfs.append(
            _k(
                peak,
                E.EASE_OUT,
                lip_ratio=openness,
                lip_variation_three=openness * 70.0,
                lip_variation_one=-roundness * 9.0,
                lip_variation_two=spread * 5.0,
            )
        )
        t += dur
        rest = 0.0 if closes else openness * 0.3
        kfs.append(
            _k(
                t,
                E.EASE_IN_OUT,
                lip_ratio=rest,
                lip_variation_three=-8.0 if closes else rest * 60.0,
                lip_variation_one=-roundness * 3.0,
                lip_variation_two=spread * 1.5,
            )
        )
        # stressed syllables get a small nod and a lift of the brows
        if i in (0, 5):
            kfs.append(_k(peak, head_pitch=1.2 * PITCH_DOWN, eyebrow=-2.0))
            kfs.append(_k(peak + 260, head_pitch=-0.4 * PITCH_DOWN, eyebrow=0.0))
        if i in TALK_PAUSE_AFTER:
            t += TALK_PAUSE_MS
            kfs.append(_k(t, lip_ratio=0.0, lip_variation_three=0.0, lip_variation_one=0.0, lip_variation_two=0.0))
    kfs.append(_k(t + 40, head_roll=1.5, head_pitch=0.3 * PITCH_DOWN))
    end = t + 260
    return Gesture("talk", kfs, end, apex_ms=TALK_LEAD_IN_MS + 80, release_ms=t)


SURPRISE_POSE: dict[str, Value] = {
    "eye_ratio": Rel(0.38),
    "eyeball_y": 6.0,
    "lip_ratio": 0.26,
    "lip_variation_three": 30.0,
    "head_pitch": -3.2 * PITCH_DOWN,
    "mov_z": -0.015,
}


def _surprise() -> Gesture:
    return Gesture(
        "surprise",
        [
            _k(
                90,
                eye_ratio=Rel(-0.12),
                head_pitch=0.8 * PITCH_DOWN,
                eyeball_y=0.0,
                lip_ratio=0.0,
                lip_variation_three=0.0,
                mov_z=0.0,
            ),
            _k(
                260,
                E.EASE_OUT,
                eye_ratio=Rel(0.46),
                eyeball_y=8.0,
                lip_ratio=0.31,
                lip_variation_three=36.0,
                head_pitch=-4.2 * PITCH_DOWN,
                mov_z=-0.02,
            ),
            _k(430, **SURPRISE_POSE),
            _k(1300, **SURPRISE_POSE),
        ],
        2000,
        apex_ms=430,
        release_ms=1300,
    )


def _nod() -> Gesture:
    d = PITCH_DOWN
    return Gesture(
        "nod",
        [
            _k(130, head_pitch=-1.5 * d, smile=0.05, eyeball_y=0.0),
            _k(380, E.EASE_IN_OUT, head_pitch=9.0 * d, eyeball_y=4.0, smile=0.12),
            _k(640, head_pitch=-2.0 * d, eyeball_y=-0.5),
            _k(880, head_pitch=3.5 * d, eyeball_y=1.5, smile=0.12),
        ],
        1200,
        apex_ms=380,
        release_ms=880,
    )


def _head_shake() -> Gesture:
    return Gesture(
        "head_shake",
        [
            _k(120, head_yaw=1.5, eyebrow=0.0, smile=0.0, head_pitch=0.0),
            _k(360, head_yaw=-10.0, eyebrow=-5.0, smile=-0.1, head_pitch=1.0 * PITCH_DOWN),
            _k(640, head_yaw=9.0),
            _k(900, head_yaw=-6.5),
            _k(1130, head_yaw=3.0, eyebrow=-5.0, smile=-0.1, head_pitch=1.0 * PITCH_DOWN),
        ],
        1400,
        apex_ms=360,
        release_ms=1130,
    )


def _look(direction: str) -> Callable[[], Gesture]:
    """Eyes lead, the head follows, the eyes relax as the head arrives; back the same way."""

    def build() -> Gesture:
        if direction in ("left", "right"):
            s = 1.0 if direction == "right" else -1.0
            eyes_first = {"eyeball_x": 22.0 * s * GAZE_SCREEN_RIGHT}
            held = {
                "eyeball_x": 15.0 * s * GAZE_SCREEN_RIGHT,
                "head_yaw": 10.0 * s * YAW_SCREEN_RIGHT,
                "head_roll": 1.0 * s,
            }
            start = {"head_yaw": 0.0, "head_roll": 0.0}
        else:
            s = 1.0 if direction == "up" else -1.0
            eyes_first = {"eyeball_y": (22.0 if s > 0 else 26.0) * s}
            held = {"eyeball_y": (15.0 if s > 0 else 20.0) * s, "head_pitch": -5.0 * s * PITCH_DOWN}
            start = {"head_pitch": 0.0}
        eye_name = next(iter(eyes_first))
        return Gesture(
            f"look_{direction}",
            [
                _k(160, E.EASE_OUT, **eyes_first, **start),
                _k(560, **held),
                _k(1400, **held),
                _k(1600, E.EASE_IN_OUT, **{eye_name: 0.0}),
            ],
            1950,
            apex_ms=560,
            release_ms=1400,
        )

    return build


FROWN_POSE: dict[str, Value] = {
    "eyebrow": -22.0,
    "smile": -0.2,
    "eye_ratio": Rel(-0.25),
    "lip_variation_one": 4.0,
    "head_pitch": 1.5 * PITCH_DOWN,
}


def _frown() -> Gesture:
    return Gesture(
        "frown",
        [
            _k(120, eyebrow=2.0, smile=0.0, eye_ratio=Rel(0.03), lip_variation_one=0.0, head_pitch=0.0),
            _k(
                420,
                E.EASE_OUT,
                eyebrow=-25.0,
                smile=-0.23,
                eye_ratio=Rel(-0.28),
                lip_variation_one=5.0,
                head_pitch=1.8 * PITCH_DOWN,
            ),
            _k(600, **FROWN_POSE),
            _k(1500, **FROWN_POSE),
        ],
        2100,
        apex_ms=600,
        release_ms=1500,
    )


ANGRY_POSE: dict[str, Value] = {
    "eyebrow": -28.0,
    "smile": -0.3,
    "eye_ratio": Rel(-0.12),
    "lip_variation_one": 8.0,
    "lip_variation_two": 3.0,
    "head_pitch": 3.0 * PITCH_DOWN,
    "mov_z": 0.02,
}


def _angry() -> Gesture:
    return Gesture(
        "angry",
        [
            # a sharp intake of breath: head up a little
            _k(
                150,
                head_pitch=-1.2 * PITCH_DOWN,
                eyebrow=1.0,
                smile=0.0,
                eye_ratio=Rel(0.05),
                lip_variation_one=0.0,
                lip_variation_two=0.0,
                mov_z=0.0,
                head_roll=0.0,
            ),
            _k(
                380,
                E.EASE_OUT,
                eyebrow=-30.0,
                smile=-0.3,
                eye_ratio=Rel(-0.15),
                lip_variation_one=9.0,
                lip_variation_two=3.5,
                head_pitch=3.6 * PITCH_DOWN,
                mov_z=0.025,
                head_roll=-1.5,
            ),
            _k(520, **ANGRY_POSE, head_roll=1.0),
            _k(660, head_roll=-0.8),
            _k(800, head_roll=0.0),
            _k(1700, **ANGRY_POSE),
        ],
        2400,
        apex_ms=520,
        release_ms=1700,
    )


SAD_POSE: dict[str, Value] = {
    "smile": -0.28,
    "eyebrow": -6.0,
    "eyeball_y": -14.0,
    "eye_ratio": Rel(-0.1),
    "head_pitch": 4.0 * PITCH_DOWN,
    "head_roll": -2.0,
    "lip_variation_one": 5.0,
}


def _sad() -> Gesture:
    return Gesture(
        "sad",
        [
            _k(
                200,
                smile=0.02,
                eyebrow=0.0,
                eyeball_y=2.0,
                eye_ratio=Rel(0.0),
                head_pitch=-0.5 * PITCH_DOWN,
                head_roll=0.0,
                lip_variation_one=0.0,
                lip_ratio=0.0,
            ),
            _k(900, **SAD_POSE),
            _k(1500, lip_ratio=0.06),  # a small sigh
            _k(1900, lip_ratio=0.0),
            _k(2300, **SAD_POSE),
        ],
        3200,
        apex_ms=900,
        release_ms=2300,
    )


POUT_POSE: dict[str, Value] = {
    "lip_variation_zero": 0.05,
    "lip_variation_one": -9.0,
    "smile": -0.12,
    "head_yaw": 5.0,
    "head_roll": -2.5,
    "eyeball_x": -6.0,
    "head_pitch": 1.0 * PITCH_DOWN,
}


def _pout() -> Gesture:
    return Gesture(
        "pout",
        [
            _k(
                150,
                lip_variation_zero=0.0,
                lip_variation_one=1.5,
                smile=0.0,
                head_yaw=0.0,
                head_roll=0.0,
                eyeball_x=0.0,
                head_pitch=0.0,
            ),
            _k(
                480,
                E.EASE_OUT,
                lip_variation_zero=0.06,
                lip_variation_one=-11.0,
                smile=-0.14,
                head_yaw=6.0,
                head_roll=-3.0,
                eyeball_x=-7.0,
                head_pitch=1.2 * PITCH_DOWN,
            ),
            _k(650, **POUT_POSE),
            _k(1600, **POUT_POSE),
        ],
        2200,
        apex_ms=650,
        release_ms=1600,
    )


KISS_POSE: dict[str, Value] = {
    "lip_variation_one": -16.0,
    "lip_variation_zero": 0.03,
    "lip_ratio": 0.0,
    "eye_ratio": Rel(-0.55),
    "mov_z": 0.03,
    "head_roll": 3.0,
    "head_pitch": -1.0 * PITCH_DOWN,
}


def _kiss() -> Gesture:
    return Gesture(
        "kiss",
        [
            _k(
                150,
                lip_variation_one=2.0,
                lip_variation_zero=0.0,
                eye_ratio=Rel(0.0),
                mov_z=0.0,
                head_roll=0.0,
                head_pitch=0.0,
            ),
            _k(
                500,
                E.EASE_OUT,
                lip_variation_one=-18.0,
                lip_variation_zero=0.035,
                eye_ratio=Rel(-0.6),
                mov_z=0.035,
                head_roll=3.5,
                head_pitch=-1.2 * PITCH_DOWN,
            ),
            _k(680, **KISS_POSE),
            _k(1100, **KISS_POSE),
            _k(1180, E.EASE_OUT, lip_variation_one=-8.0),  # the "pop" of the kiss
            _k(1300, lip_variation_one=-12.0),
        ],
        1900,
        apex_ms=680,
        release_ms=1300,
    )


def _sleepy() -> Gesture:
    d = PITCH_DOWN
    return Gesture(
        "sleepy",
        [
            # a yawn: head back, mouth wide, eyes squeezed
            _k(200, lip_ratio=0.0, lip_variation_three=0.0, eye_ratio=Rel(0.0), head_pitch=0.0, head_roll=0.0),
            _k(800, lip_ratio=0.42, lip_variation_three=45.0, eye_ratio=Rel(-0.6), head_pitch=-3.0 * d),
            _k(1250, lip_ratio=0.38, lip_variation_three=40.0, eye_ratio=Rel(-0.65), head_pitch=-3.2 * d),
            _k(1650, lip_ratio=0.0, lip_variation_three=0.0, eye_ratio=Rel(-0.45), head_pitch=1.0 * d),
            # drifting off: lids droop, head sinks and tips
            _k(2500, E.EASE_IN, eye_ratio=Rel(-0.88), head_pitch=7.0 * d, head_roll=3.5),
            # catches itself
            _k(2750, E.EASE_OUT, eye_ratio=Rel(0.08), head_pitch=-1.0 * d, head_roll=0.5),
        ],
        3400,
        apex_ms=800,
        release_ms=2750,
    )


DOUBT_POSE: dict[str, Value] = {
    "eyebrow": 22.0,
    "head_roll": 6.0,
    "eyeball_x": 8.0 * GAZE_SCREEN_RIGHT,
    "lip_variation_zero": 0.03,
    "smile": -0.08,
    "eye_ratio": Rel(-0.12),
}


def _doubtful() -> Gesture:
    return Gesture(
        "doubtful",
        [
            _k(
                130,
                eyebrow=-2.0,
                head_roll=-1.0,
                eyeball_x=0.0,
                lip_variation_zero=0.0,
                smile=0.0,
                eye_ratio=Rel(0.0),
            ),
            _k(
                450,
                E.EASE_OUT,
                eyebrow=25.0,
                head_roll=7.0,
                eyeball_x=9.0 * GAZE_SCREEN_RIGHT,
                lip_variation_zero=0.035,
                smile=-0.1,
                eye_ratio=Rel(-0.14),
            ),
            _k(620, **DOUBT_POSE),
            _k(1700, **DOUBT_POSE),
        ],
        2350,
        apex_ms=620,
        release_ms=1700,
    )


def _preset_list() -> tuple[Preset, ...]:
    return (
        Preset(
            "smile",
            ("미소", "웃기"),
            ("smile",),
            "A warm smile: corners up, eyes narrow a little, head lifts and tilts slightly, then settles back.",
            _smile,
            SMILE_POSE,
        ),
        Preset(
            "big_laugh",
            ("크게 웃기", "폭소"),
            ("big laugh", "laugh"),
            "Open-mouthed laughter: the mouth and the head bounce on uneven 'ha-ha-ha' beats, eyes squeezed.",
            _big_laugh,
            LAUGH_POSE,
        ),
        Preset(
            "blink",
            ("눈 깜빡임", "깜빡"),
            ("blink",),
            "One natural blink: fast close (ease-in), brief hold, slower open (ease-out), about 0.3 s.",
            _blink,
            {"eye_ratio": Rel(-1.0)},
            repeat_gap_ms=90.0,
        ),
        Preset(
            "wink_left",
            ("왼쪽 윙크",),
            ("wink left", "left wink"),
            "A wink with the head tilting and the eyes "
            "glancing to screen left (the wink parameter always closes the same eye).",
            _wink(-1.0),
            {"wink": 34.0, "smile": 0.3, "head_roll": -4.0},
        ),
        Preset(
            "wink_right",
            ("오른쪽 윙크", "윙크"),
            ("wink right", "right wink", "wink"),
            "A wink with the head tilting and the eyes glancing to screen right.",
            _wink(1.0),
            {"wink": 34.0, "smile": 0.3, "head_roll": 4.0},
        ),
        Preset(
            "talk",
            ("말하기", "말해"),
            ("talk", "speak"),
            "Ten syllables of '안녕하세요, 반갑습니다': "
            "varying openness, rounded and spread vowels, lips closing on ㅂ/ㅁ, a pause, small nods.",
            _talk,
            {"lip_ratio": 0.25, "lip_variation_three": 18.0},
        ),
        Preset(
            "surprise",
            ("놀람", "놀라"),
            ("surprise", "surprised"),
            "A quick squint, then eyes wide, brows and gaze up, mouth open, head pulled back.",
            _surprise,
            SURPRISE_POSE,
        ),
        Preset(
            "nod",
            ("끄덕", "고개 끄덕임"),
            ("nod", "yes"),
            "A small lift, a nod down, a rebound and a smaller second nod.",
            _nod,
            {"head_pitch": 6.0 * PITCH_DOWN},
            repeat_gap_ms=0.0,
        ),
        Preset(
            "head_shake",
            ("도리도리", "고개 젓기"),
            ("head shake", "shake head", "no"),
            "Head turns side to side with decreasing swings, brows slightly furrowed.",
            _head_shake,
            {"head_yaw": 8.0},
        ),
        Preset(
            "look_left",
            ("왼쪽 보기",),
            ("look left",),
            "Eyes lead to screen left, the head follows, then both come back.",
            _look("left"),
            {"eyeball_x": -15.0 * GAZE_SCREEN_RIGHT, "head_yaw": -10.0 * YAW_SCREEN_RIGHT},
        ),
        Preset(
            "look_right",
            ("오른쪽 보기",),
            ("look right",),
            "Eyes lead to screen right, the head follows, then both come back.",
            _look("right"),
            {"eyeball_x": 15.0 * GAZE_SCREEN_RIGHT, "head_yaw": 10.0 * YAW_SCREEN_RIGHT},
        ),
        Preset(
            "look_up",
            ("위 보기",),
            ("look up",),
            "Eyes up (lids open with them), head tips back a little.",
            _look("up"),
            {"eyeball_y": 15.0, "head_pitch": -5.0 * PITCH_DOWN},
        ),
        Preset(
            "look_down",
            ("아래 보기",),
            ("look down",),
            "Eyes down (lids lower with them), head tips forward.",
            _look("down"),
            {"eyeball_y": -20.0, "head_pitch": 5.0 * PITCH_DOWN},
        ),
        Preset(
            "frown",
            ("찡그리기", "인상 쓰기"),
            ("frown",),
            "Brows pulled together, eyes narrowed, mouth corners down.",
            _frown,
            FROWN_POSE,
        ),
        Preset(
            "angry",
            ("화내기", "화남"),
            ("angry",),
            "An intake of breath, then a hard furrow, tight lips, "
            "chin down and a lean in, with a small shake of anger.",
            _angry,
            ANGRY_POSE,
        ),
        Preset(
            "sad",
            ("슬픔", "슬퍼"),
            ("sad",),
            "Slow: mouth corners drop, gaze and lids lower, head sinks and tilts, with a small sigh.",
            _sad,
            SAD_POSE,
        ),
        Preset(
            "pout",
            ("삐죽", "뾰로통"),
            ("pout", "sulk"),
            "Lips pushed out and to the side, head turned away, a sideways glance.",
            _pout,
            POUT_POSE,
        ),
        Preset(
            "kiss",
            ("뽀뽀", "키스"),
            ("kiss",),
            "Puckered lips, eyes half closed, a lean toward the viewer and a little pop.",
            _kiss,
            KISS_POSE,
        ),
        Preset(
            "sleepy",
            ("졸림", "졸려"),
            ("sleepy", "yawn"),
            "A yawn, lids drooping, the head sinking, then catching itself awake.",
            _sleepy,
            {"eye_ratio": Rel(-0.7), "head_pitch": 4.0 * PITCH_DOWN},
        ),
        Preset(
            "doubtful",
            ("갸우뚱", "의심"),
            ("doubtful", "skeptical"),
            "One eyebrow up, head tilted, a sideways glance and the mouth pulled to one side.",
            _doubtful,
            DOUBT_POSE,
        ),
    )


PRESETS: Mapping[str, Preset] = {p.name: p for p in _preset_list()}
"""Every preset by its canonical name."""
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (canonical name, or any of its Korean/English names)."""
    key = name.strip().lower().replace("-", "_")
    if key in PRESETS:
        return PRESETS[key]
    custom = active_custom().get(key)  # a name the page saved (expressions/library.py), while it is in force
    if custom is not None:
        return custom
    for p in PRESETS.values():
        if name.strip() in p.names_ko or key.replace("_", " ") in p.names_en:
            return p
    close = difflib.get_close_matches(key, PRESET_NAMES, n=3, cutoff=0.5)
    raise CommandError(
        f"unknown preset {name!r}",
        hint=f"did you mean {', '.join(close)}?" if close else f"presets: {', '.join(PRESET_NAMES)}",
    )


def preset_gesture(name: str, intensity: float = 1.0, speed: float = 1.0) -> Gesture:
    """Shortcut: ``get_preset(name).gesture(intensity, speed)``."""
    return get_preset(name).gesture(intensity, speed)

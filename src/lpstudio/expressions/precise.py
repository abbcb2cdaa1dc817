"""The precise sequence syntax for power users: ``smile=300:800; wink=30=200:400; wait 300; 0=400:0``.

One item per line (or ``;``/``|``), ``#`` starts a comment:

* ``TARGET=CHANGE:KEEP`` reaches a pose in CHANGE ms and holds it KEEP ms; TARGET is
  ``0`` (the base pose), a preset's held pose (``smile``, ``smile*0.5``) or parameter
  assignments (``wink=30``), several separated by spaces or commas;
* ``NAME [*INTENSITY] [xN] [@SPEED]`` plays a whole preset over the held pose;
* ``wait MS`` holds the current pose.

The sequence always ends at the base pose (a :data:`POSE_RETURN_MS` return is added if needed).
"""

from __future__ import annotations

import re

from ..errors import CommandError, ParamError
from ..params import parse_assignment
from .phrases import MAX_REPEAT, Action
from .presets import MAX_INTENSITY, get_preset
from .timeline import Abs, Easing, Gesture, Keyframe, Step, Timeline, Value, scale_value

POSE_RETURN_MS: float = 400.0
MIN_POSE_CHANGE_MS: float = 40.0

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
        pose_gesture = Gesture("pose", [k for k in full if k.values], end, apex_ms=full[0].t_ms if full else 0.0)
        steps.insert(0, Step(pose_gesture, 0.0, "pose", 0, 1.0, 1.0, "; ".join(items)))
    return Timeline(steps, end)


def _zero(v: Value) -> bool:
    return isinstance(v, (int, float)) and float(v) == 0.0

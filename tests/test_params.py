"""The 17 editing parameters: names, ranges, validation messages."""

from __future__ import annotations

import math

import pytest

from lpstudio.errors import ParamError
from lpstudio.params import PARAM_NAMES, PARAM_SPECS, EditParams, parse_assignment


def test_seventeen_parameters_in_panel_order():
    assert PARAM_NAMES == (
        "eye_ratio", "lip_ratio", "head_pitch", "head_yaw", "head_roll", "mov_x", "mov_y", "mov_z",
        "lip_variation_zero", "lip_variation_one", "lip_variation_two", "lip_variation_three",
        "smile", "wink", "eyebrow", "eyeball_x", "eyeball_y",
    )  # fmt: skip


def test_defaults_are_neutral():
    p = EditParams()
    assert p.changed() == {}
    for spec in PARAM_SPECS:
        assert getattr(p, spec.name) == spec.neutral


@pytest.mark.parametrize("spec", PARAM_SPECS, ids=lambda s: s.name)
def test_range_limits_accepted_and_beyond_rejected(spec):
    assert getattr(EditParams(**{spec.name: spec.minimum}), spec.name) == spec.minimum
    assert getattr(EditParams(**{spec.name: spec.maximum}), spec.name) == spec.maximum
    span = spec.maximum - spec.minimum
    with pytest.raises(ParamError, match=rf"{spec.name}.*outside its range"):
        EditParams(**{spec.name: spec.maximum + 0.01 * span})
    with pytest.raises(ParamError, match=rf"{spec.name}.*outside its range"):
        EditParams(**{spec.name: spec.minimum - 0.01 * span})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected(bad):
    with pytest.raises(ParamError, match="smile.*finite"):
        EditParams(smile=bad)


def test_unknown_name_suggests_close_match():
    with pytest.raises(ParamError, match="unknown parameter 'smiel'") as info:
        EditParams.from_mapping({"smiel": 1.0})
    assert "smile" in str(info.value)


def test_not_a_number():
    with pytest.raises(ParamError, match="must be a number"):
        EditParams(wink="lots")


def test_parse_assignment():
    assert parse_assignment("head_yaw=-10") == ("head_yaw", -10.0)
    assert parse_assignment(" smile = 0.5 ") == ("smile", 0.5)
    with pytest.raises(ParamError, match="name=value"):
        parse_assignment("smile")
    with pytest.raises(ParamError, match="outside its range"):
        parse_assignment("wink=40")
    with pytest.raises(ParamError, match="finite"):
        parse_assignment("wink=nan")


def test_replace_validates():
    p = EditParams(smile=1.0)
    assert p.replace(wink=10).as_dict()["wink"] == 10
    with pytest.raises(ParamError):
        p.replace(wink=100)
    with pytest.raises(ParamError, match="unknown parameter"):
        p.replace(smiles=1)

"""Under ``CI=true`` every optional part the suite tests must be installed: a broken install fails here.

Tests of speech, Ray, the MediaPipe face models and the browser skip where their part is
missing (a developer's machine without Chromium still runs the rest). In CI such skips would
turn a broken install green, so :func:`test_ci_has_every_optional_requirement` fails when
one is missing and ``CI`` is set (``.ci/run`` sets it; most CI services do too).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

CI_ENV = "CI"
CI_TRUE_WORDS = ("1", "true", "yes", "on")
"""Values of ``CI`` that mean "running in CI" (GitHub Actions, GitLab and most services set ``CI=true``)."""


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI=true``)."""
    return os.environ.get(CI_ENV, "").strip().lower() in CI_TRUE_WORDS


def _speech() -> str | None:
    from lpstudio.speech.espeak import speech_available

    return None if speech_available() else 'eSpeak NG is not loadable: pip install "liveportrait-studio[speech]"'


def _ray() -> str | None:
    try:
        importlib.import_module("ray.serve")
    except ImportError as exc:
        return f'Ray Serve does not import ({exc}): pip install "liveportrait-studio[ray]"'
    return None


def _mediapipe_models() -> str | None:
    from lpstudio.errors import WeightsError
    from lpstudio.face.mediapipe import locate_models

    try:
        locate_models()  # the three files, with their sha256 checked
    except WeightsError as exc:
        return f"MediaPipe's face models: {exc}"
    return None


def _browser() -> str | None:
    from server.browser_helpers import CHROMIUM

    if not Path(CHROMIUM).is_file() or not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: apt-get install chromium"
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError as exc:
        return f"Playwright does not import ({exc}): pip install playwright"
    return None


REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "speech": _speech,
    "ray": _ray,
    "mediapipe-models": _mediapipe_models,
    "browser": _browser,
}
"""Each optional part: a check that returns None when it is usable, else what is wrong and how to fix it."""


def missing_requirements(checks: dict[str, Callable[[], str | None]] | None = None) -> dict[str, str]:
    """The optional parts that are not usable here, each with what is wrong."""
    missing: dict[str, str] = {}
    for name, check in (checks or REQUIREMENTS).items():
        problem = check()
        if problem is not None:
            missing[name] = problem
    return missing


def test_ci_has_every_optional_requirement() -> None:
    missing = missing_requirements()
    report = "; ".join(f"{name}: {problem}" for name, problem in missing.items())
    if missing and not in_ci():
        pytest.skip(f"not in CI, so their tests skip: {report}")
    assert not missing, f"CI=true but these are missing, so their tests would skip: {report}"


def test_a_missing_requirement_is_named_with_its_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The checks see a missing Chromium, eSpeak NG and model folder (not only a missing import)."""
    import lpstudio.speech.espeak as espeak
    import server.browser_helpers as browser

    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(espeak, "speech_available", lambda: False)
    missing = missing_requirements({"speech": _speech, "browser": _browser})
    assert set(missing) == {"speech", "browser"}
    assert "apt-get install chromium" in missing["browser"] and "[speech]" in missing["speech"]
    monkeypatch.setenv(CI_ENV, "true")
    assert in_ci()
    monkeypatch.setenv(CI_ENV, "false")
    assert not in_ci()

"""Fixtures of the face tests (the stand-in model builders live in standin_models.py)."""

from __future__ import annotations

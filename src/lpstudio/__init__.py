"""lpstudio: make a portrait photo come alive.

Our own implementation of LivePortrait (arXiv 2407.03168) that loads the official
weights unchanged. Start with :func:`lpstudio.load_model`.
"""

from __future__ import annotations

__version__ = "0.1.0"

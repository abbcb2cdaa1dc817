"""Expressions on command: keyframe timelines, named presets, a Korean/English
command language, idle liveliness and a clip cache (issue 4)."""

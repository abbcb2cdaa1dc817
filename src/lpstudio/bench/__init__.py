"""``lpstudio bench``: time every render backend against the float32 eager reference.

Runs on synthetic weights made in memory (no download). Measuring
(:mod:`.measure`: :func:`run_bench`) is kept apart from reporting
(:mod:`.report`: the JSON schema documented in ``docs/BENCH.md``, its validation
and the text table), so the report is testable on fake measurements.
"""

from __future__ import annotations

from .measure import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_ITERS,
    DEFAULT_SEED,
    DRIVING_EDITS,
    QUICK_ITERS,
    BenchOptions,
    PeakMemory,
    psnr_db,
    run_bench,
)
from .report import (
    ENTRY_KEYS,
    REFERENCE,
    REQUIRED_KEYS,
    SCHEMA,
    Measurement,
    build_report,
    dtype_name,
    format_report,
    label,
    validate_report,
)

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERS",
    "DEFAULT_SEED",
    "DRIVING_EDITS",
    "ENTRY_KEYS",
    "QUICK_ITERS",
    "REFERENCE",
    "REQUIRED_KEYS",
    "SCHEMA",
    "BenchOptions",
    "Measurement",
    "PeakMemory",
    "build_report",
    "dtype_name",
    "format_report",
    "label",
    "psnr_db",
    "run_bench",
    "validate_report",
]

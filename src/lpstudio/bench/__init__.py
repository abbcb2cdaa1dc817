"""``lpstudio bench``: time every render backend against the float32 eager reference.

Runs on synthetic weights made in memory (no download). Measuring
(:mod:`.measure`: :func:`run_bench`, following a plan and time budget from :mod:`.plan`) is kept apart from reporting
(:mod:`.report`: the JSON schema documented in ``docs/BENCH.md``, its validation
and the text table), so the report is testable on fake measurements.
"""

from __future__ import annotations

from .measure import DEFAULT_SEED, DRIVING_EDITS, PeakMemory, peak_rss_mb, psnr_db, run_bench
from .plan import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_BUDGET_S,
    DEFAULT_ITERS,
    DEFAULT_PLANS,
    FULL_BATCH_SIZES,
    FULL_ITERS,
    MIXED_SOURCES,
    QUICK_ITERS,
    REPLICA_BATCH,
    BenchOptions,
    Budget,
    Plan,
    Progress,
    resolve,
)
from .report import (
    ENTRY_KEYS,
    REFERENCE,
    REQUIRED_KEYS,
    SCHEMA,
    STATUSES,
    Measurement,
    build_report,
    dtype_name,
    format_report,
    label,
    validate_report,
)

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_BUDGET_S",
    "DEFAULT_ITERS",
    "DEFAULT_PLANS",
    "DEFAULT_SEED",
    "DRIVING_EDITS",
    "ENTRY_KEYS",
    "FULL_BATCH_SIZES",
    "FULL_ITERS",
    "MIXED_SOURCES",
    "QUICK_ITERS",
    "REFERENCE",
    "REPLICA_BATCH",
    "REQUIRED_KEYS",
    "SCHEMA",
    "STATUSES",
    "BenchOptions",
    "Budget",
    "Measurement",
    "PeakMemory",
    "Plan",
    "Progress",
    "build_report",
    "dtype_name",
    "format_report",
    "label",
    "peak_rss_mb",
    "psnr_db",
    "resolve",
    "run_bench",
    "validate_report",
]

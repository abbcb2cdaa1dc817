"""The bench report: the measurement record, the documented JSON schema (``docs/BENCH.md``) and the text table.

Pure functions of measurements (no timing, no model): tests feed them fake
:class:`Measurement` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

SCHEMA = "lpstudio.bench/2"
"""Version 2 added the mixed-sources mode, memory per batch and per replica, peak RSS, the plan's
budget and skipped steps, and the ``skipped`` status."""
STATUSES = ("ok", "unavailable", "failed", "skipped")
REFERENCE = ("eager", torch.float32)
"""The backend and dtype every other one is compared with: the golden-parity path."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def label(name: str, dtype: torch.dtype | str) -> str:
    """``backend/dtype``, the key of a backend in the report."""
    return f"{name}/{dtype if isinstance(dtype, str) else dtype_name(dtype)}"


@dataclass
class Measurement:
    """What was measured for one backend/dtype (all times in ms, per call unless noted)."""

    name: str
    dtype: str
    status: str = "ok"  # ok | unavailable | failed | skipped (time budget)
    reason: str | None = None
    build_ms: float | None = None
    first_render_ms: float | None = None  # first (cold) batch-1 call: includes lazy compiling
    warp_ms: list[float] = field(default_factory=list)  # batch 1
    decode_ms: list[float] = field(default_factory=list)  # batch 1
    render_ms: dict[int, list[float]] = field(default_factory=dict)  # batch size -> per-call times
    peak_memory_mb: float | None = None
    memory_mb_by_batch: dict[int, float] = field(default_factory=dict)  # peak during calls at that batch
    activation_mb_by_batch: dict[int, float] = field(default_factory=dict)  # CUDA: peak above the call's start
    replica_memory_mb: float | None = None
    mixed_ms: list[float] = field(default_factory=list)  # render_mixed calls (whole batch)
    psnr_db: float | None = None
    max_abs_err: float | None = None
    mixed_psnr_db: float | None = None


def _ratio(ref: float | None, ours: float | None) -> float | None:
    """``ref / ours``: above 1 means faster (or smaller) than the reference."""
    if ref is None or ours is None or ours <= 0:
        return None
    return ref / ours


def build_report(
    results: Sequence[Measurement],
    *,
    env: dict[str, Any],
    config: dict[str, Any],
    common: dict[str, Any],
) -> dict[str, Any]:
    """Turn measurements into the documented JSON report (``docs/BENCH.md``).

    ``results`` must hold the reference (``eager``/``float32``). Per-frame render
    time at batch ``b`` is the fastest call divided by ``b``; the backend's best
    is the minimum over batch sizes; ``best_*`` is over all backends that ran.
    Stage times ``W``/``G`` are per frame at batch 1.
    """
    ref_key = label(*REFERENCE)
    by_key = {label(m.name, m.dtype): m for m in results}
    if ref_key not in by_key:
        raise ValueError("the report needs the reference measurement (eager/float32)")
    startup = common.get("startup_ms")

    def per_frame(m: Measurement) -> dict[int, float]:
        return {b: min(ts) / b for b, ts in sorted(m.render_ms.items()) if ts}

    ref_m = by_key[ref_key]
    ref_pf = per_frame(ref_m)
    ref_best = min(ref_pf.values()) if ref_pf else None

    def first_frame(m: Measurement) -> float | None:
        if m.first_render_ms is None:
            return None
        return (startup or 0) + (m.build_ms or 0) + m.first_render_ms

    ref_first = first_frame(ref_m)
    mixed_batch = config.get("mixed_batch")

    def mixed(m: Measurement) -> float | None:
        return min(m.mixed_ms) / mixed_batch if m.mixed_ms and mixed_batch else None

    ref_mixed = mixed(ref_m)

    entries = []
    best: tuple[float, str, int] | None = None
    psnr: dict[str, float | None] = {}
    for m in results:
        key = label(m.name, m.dtype)
        pf = per_frame(m)
        w = min(m.warp_ms) if m.warp_ms else None
        g = min(m.decode_ms) if m.decode_ms else None
        own_best = min(pf.values()) if pf else None
        first = first_frame(m)
        entry = {
            "key": key,
            "backend": m.name,
            "dtype": m.dtype,
            "status": m.status,
            "reason": m.reason,
            "is_reference": key == ref_key,
            "stages_ms": {"W": w, "G": g},
            "render_ms": {str(b): v for b, v in pf.items()},
            "fps": {str(b): 1000.0 / v for b, v in pf.items()},
            "best_render_ms": own_best,
            "build_ms": m.build_ms,
            "first_render_ms": m.first_render_ms,
            "time_to_first_frame_ms": first,
            "peak_memory_mb": m.peak_memory_mb,
            "memory_mb_by_batch": {str(b): v for b, v in sorted(m.memory_mb_by_batch.items())},
            "replica_memory_mb": m.replica_memory_mb,
            "mixed_render_ms": mixed(m),
            "mixed_fps": None if mixed(m) is None else 1000.0 / mixed(m),
            "mixed_psnr_db": m.mixed_psnr_db,
            "psnr_db": m.psnr_db,
            "max_abs_err": m.max_abs_err,
            "vs_reference": {
                "stages": {
                    "W": _ratio(min(ref_m.warp_ms) if ref_m.warp_ms else None, w),
                    "G": _ratio(min(ref_m.decode_ms) if ref_m.decode_ms else None, g),
                },
                "render": {str(b): _ratio(ref_pf.get(b), v) for b, v in pf.items()},
                "best_render": _ratio(ref_best, own_best),
                "time_to_first_frame": _ratio(ref_first, first),
                "peak_memory": _ratio(ref_m.peak_memory_mb, m.peak_memory_mb),
                "mixed_render": _ratio(ref_mixed, mixed(m)),
            },
        }
        entries.append(entry)
        if m.status == "ok":
            psnr[key] = m.psnr_db
            for b, v in pf.items():
                if best is None or v < best[0]:
                    best = (v, key, b)
    return {
        "schema": SCHEMA,
        **env,
        "config": config,
        "engine_build_ms": common.get("engine_build_ms"),
        "startup_ms": startup,
        "stages_ms": common.get("stages_ms", {}),
        "peak_rss_mb": common.get("peak_rss_mb"),
        "wall_s": common.get("wall_s"),
        "skipped": list(common.get("skipped", [])),
        "reference": ref_key,
        "reference_render_ms": ref_best,
        "best_render_ms": None if best is None else best[0],
        "best_backend": None if best is None else best[1],
        "best_batch_size": None if best is None else best[2],
        "best_speedup": None if best is None else _ratio(ref_best, best[0]),
        "psnr_db": psnr,
        "backends": entries,
    }


REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "device": str,
    "config": dict,
    "stages_ms": dict,
    "reference": str,
    "reference_render_ms": (float, int),
    "best_render_ms": (float, int),
    "best_backend": str,
    "best_speedup": (float, int),
    "psnr_db": dict,
    "skipped": list,
    "backends": list,
}
ENTRY_KEYS = (
    "key backend dtype status reason is_reference stages_ms render_ms fps best_render_ms build_ms "
    "first_render_ms time_to_first_frame_ms peak_memory_mb memory_mb_by_batch replica_memory_mb mixed_render_ms "
    "mixed_fps mixed_psnr_db psnr_db max_abs_err vs_reference"
).split()


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``ValueError`` if ``report`` does not follow the documented schema."""
    if report.get("schema") != SCHEMA:
        raise ValueError(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    for key, kind in REQUIRED_KEYS.items():
        if not isinstance(report.get(key), kind):
            raise ValueError(f"report[{key!r}] is {type(report.get(key)).__name__}, expected {kind}")
    for entry in report["backends"]:
        missing = [k for k in ENTRY_KEYS if k not in entry]
        if missing:
            raise ValueError(f"backend entry {entry.get('key')} lacks {missing}")
        if entry["status"] not in STATUSES:
            raise ValueError(f"backend entry {entry['key']} has status {entry['status']!r}")
    if report["best_backend"] not in report["psnr_db"]:
        raise ValueError("best_backend is not among the backends that ran")
    for key in ("batch_sizes", "iters", "budget_s", "mixed_batch", "replica_batch", "steps"):
        if key not in report["config"]:
            raise ValueError(f"report['config'] lacks {key!r}")


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    def ratio(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}x"

    lines = [
        f"lpstudio bench on {report['device']} ({report['device_name']}, torch {report['torch']}, "
        f"{report['threads']} threads); synthetic weights, times in ms, ratios vs {report['reference']}",
        "stages once per source: "
        + ", ".join(f"{k} {ms(v)}" for k, v in report["stages_ms"].items())
        + f"; engine build {ms(report['engine_build_ms'])}; peak RSS {ms(report['peak_rss_mb'])} MB; "
        f"run {ms(report['wall_s'])} s",
    ]
    bs = report["config"]["batch_sizes"]
    head = f"{'backend':<22}{'W':>8}{'G':>8}"
    head += "".join(f"{'b=' + str(b) + '/frame':>14}" for b in bs)
    mb = report["config"].get("mixed_batch")
    if mb:
        head += f"{'mixed b=' + str(mb):>14}"
    head += f"{'fps':>8}{'first':>10}{'peak MB':>9}{'replica':>9}{'PSNR dB':>9}"
    lines += [head]
    for e in report["backends"]:
        if e["status"] != "ok":
            lines.append(f"{e['key']:<22}{e['status']}: {e['reason']}")
            continue
        row = f"{e['key']:<22}{ms(e['stages_ms']['W']):>8}{ms(e['stages_ms']['G']):>8}"
        for b in bs:
            v = e["render_ms"].get(str(b))
            row += f"{ms(v) + ' ' + ratio(e['vs_reference']['render'].get(str(b))):>14}"
        if mb:
            row += f"{ms(e['mixed_render_ms']) + ' ' + ratio(e['vs_reference']['mixed_render']):>14}"
        best_fps = max(e["fps"].values()) if e["fps"] else None
        row += f"{'-' if best_fps is None else f'{best_fps:.2f}':>8}{ms(e['time_to_first_frame_ms']):>10}"
        psnr = "-" if e["psnr_db"] is None else f"{e['psnr_db']:.1f}"
        row += f"{ms(e['peak_memory_mb']):>9}{ms(e['replica_memory_mb']):>9}{psnr:>9}"
        lines.append(row)
    for why in report["skipped"]:
        lines.append(f"skipped {why}")
    lines.append(
        f"reference {ms(report['reference_render_ms'])} ms/frame; best {report['best_backend']} at batch "
        f"{report['best_batch_size']}: {ms(report['best_render_ms'])} ms/frame ({ratio(report['best_speedup'])})"
    )
    return "\n".join(lines)

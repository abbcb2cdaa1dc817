"""The short load test (CI version of benchmarks/load.py): concurrent pages against a live `lpstudio serve`
with the stand-in renderer. No timing assertions: errors (other than 429) must be zero, the server's peak RSS
must stay under its stated bound, and it must drain and exit cleanly on SIGTERM."""

from __future__ import annotations

import argparse

import load  # benchmarks/load.py, on the path through conftest (service_helpers)

CI_USERS = 12
CI_DURATION_S = 12.0


def test_short_load_run_has_no_errors_and_bounded_memory():
    import asyncio

    args = argparse.Namespace(
        users=CI_USERS, duration=CI_DURATION_S, frame_ms=4.0, prepare_ms=50.0, server_args=[], server_log=None
    )
    result = asyncio.run(load.run_load(args))
    assert result["errors"] == 0, result["error_kinds"]
    assert result["served"] > CI_USERS, result
    assert result["frames_received"] > 0 and result["first_frame_ms_p50"] is not None
    assert result["peak_rss_mb"] <= result["rss_bound_mb"], result
    assert result["server_exit_code"] == 0 and not result["server_traceback"]

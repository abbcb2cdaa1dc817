"""Each step's gain in one run: the fused backend's modules as of several commits, timed against the reference.

Loads ``backends/fused_modules.py`` (and ``fused_exact.py`` where it exists) of each
commit given into its own module namespace (``git show``; nothing is checked out),
builds W and G from the same synthetic networks in ``--dtype`` (channels-last, as the
fused backend does) and times W+G per frame, interleaved with the float32 eager
reference so that background load hits all alike; each figure is the minimum over
rounds. Prints a Markdown table (ratio = reference / version, and PSNR vs the reference).

    python benchmarks/fused_history.py c62cd80 294b8b9 e5e02f2 WORKTREE --batch 1 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
FILES = ("fused_exact.py", "fused_modules.py")  # fused_exact first: fused_modules imports it
WORKTREE = "WORKTREE"


def _source(commit: str, name: str) -> str | None:
    path = REPO / "src/lpstudio/backends" / name
    if commit == WORKTREE:
        return path.read_text(encoding="utf-8") if path.exists() else None
    done = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{commit}:src/lpstudio/backends/{name}"], capture_output=True, text=True
    )
    return done.stdout if done.returncode == 0 else None


def load_version(commit: str, folder: Path) -> types.ModuleType:
    """The commit's fused_modules as module ``fused_<commit>.fused_modules`` (relative imports made absolute)."""
    package = f"fused_{commit}"
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]
    sys.modules[package] = pkg
    module = None
    for name in FILES:
        text = _source(commit, name)
        if text is None:
            continue
        text = text.replace("from ..nets", "from lpstudio.nets").replace(
            "from .fused_exact", f"from {package}.fused_exact"
        )
        path = folder / name
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"{package}.{name[:-3]}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    assert module is not None, f"{commit} has no fused_modules.py"
    return module


def build(module: types.ModuleType, networks, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    with torch.no_grad():
        warping = module.FusedWarping(networks.warping).to_compute(dtype).eval()
        decoder = module.FusedDecoder(networks.decoder).to(dtype=dtype).eval()
    for m in [*warping.modules(), *decoder.modules()]:
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() in (4, 5):
            fmt = torch.channels_last if weight.dim() == 4 else torch.channels_last_3d
            m.weight.data = weight.data.contiguous(memory_format=fmt)
    return warping, decoder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("commits", nargs="+", help=f"commits to compare ({WORKTREE}: the files as they are now)")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    from lpstudio.engine import LivePortrait
    from lpstudio.synthetic import synthetic_checkpoints

    dtype = getattr(torch, args.dtype)
    engine = LivePortrait.from_checkpoints(synthetic_checkpoints(1234), "cpu", "float32")
    gen = torch.Generator().manual_seed(0)
    feature = (torch.randn(1, 32, 16, 64, 64, generator=gen) * 0.5).expand(args.batch, -1, -1, -1, -1)
    x_s = (torch.randn(1, 21, 3, generator=gen) * 0.3).expand(args.batch, -1, -1)
    x_d = x_s + torch.randn(args.batch, 21, 3, generator=gen) * 0.03

    def reference() -> torch.Tensor:
        return engine.decode(engine.warp(feature, x_s, x_d).out)

    runners = {"eager/float32 (reference)": reference}
    with tempfile.TemporaryDirectory() as tmp:
        for commit in args.commits:
            folder = Path(tmp) / commit
            folder.mkdir()
            warping, decoder = build(load_version(commit, folder), engine.networks, dtype)
            runners[f"fused/{args.dtype} @ {commit}"] = lambda w=warping, g=decoder: g(w(feature, x_s, x_d))
        best = {k: math.inf for k in runners}
        outs: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            for name, fn in runners.items():  # warm-up (oneDNN primitive creation)
                outs[name] = fn().float()
            for _ in range(args.rounds):
                for name, fn in runners.items():
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], (time.perf_counter() - t0) * 1000 / args.batch)
    ref_name = next(iter(runners))
    print(f"| version | ms/frame (batch {args.batch}) | vs reference | PSNR dB |")
    print("|---|---|---|---|")
    for name in runners:
        mse = float(((outs[name].double() - outs[ref_name].double()) ** 2).mean())
        psnr = "identical" if mse == 0 else f"{10 * math.log10(1 / mse):.1f}"
        print(f"| {name} | {best[name]:,.0f} | {best[ref_name] / best[name]:.2f}x | {psnr} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the official weights live, how to download them, and how to verify them.

The files are those of the Hugging Face repository ``KlingTeam/LivePortrait``
(human model only), kept in the official layout, so an official checkout's
``pretrained_weights/`` folder works as is. Their sizes and sha256 digests
ship with the package (``data/official_weights.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from .errors import WeightsError

ENV_WEIGHTS_DIR = "LPSTUDIO_WEIGHTS_DIR"
"""Environment variable naming the weights folder (overridden by ``--weights-dir``)."""

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class OfficialFile:
    path: str  # relative, official layout
    sha256: str
    size: int


@lru_cache(maxsize=1)
def _official() -> dict:
    text = resources.files("lpstudio").joinpath("data/official_weights.json").read_text(encoding="utf-8")
    return json.loads(text)


def repo_id() -> str:
    """The Hugging Face repository that hosts the weights."""
    return _official()["repo_id"]


#: Folder (official layout) of the InsightFace face models, which may not be used commercially.
INSIGHTFACE_PREFIX = "insightface/"


def official_files() -> list[OfficialFile]:
    """Every file the engine and face pipeline use, with its size and digest."""
    return [OfficialFile(p, f["sha256"], f["size"]) for p, f in _official()["files"].items()]


def _wanted(insightface: bool) -> list[OfficialFile]:
    """The official files, without InsightFace's face models unless ``insightface`` (``--face-models mediapipe``)."""
    return [f for f in official_files() if insightface or not f.path.startswith(INSIGHTFACE_PREFIX)]


def default_weights_dir() -> Path:
    """``$LPSTUDIO_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/lpstudio/weights`` (``~/.cache/...``)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lpstudio" / "weights"


def resolve_weights_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder to read weights from: ``path``, else the default.

    Accepts a folder in the official layout (containing ``liveportrait/``) or an
    official checkout (containing ``pretrained_weights/liveportrait/``).
    """
    root = Path(path).expanduser() if path is not None else default_weights_dir()
    if path is not None and not root.exists():
        raise WeightsError(
            f"weights folder does not exist: {root}",
            hint="check the path, or run `lpstudio weights download --dir DIR`",
        )
    if not (root / "liveportrait").is_dir() and (root / "pretrained_weights" / "liveportrait").is_dir():
        return root / "pretrained_weights"
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileCheck:
    file: OfficialFile
    path: Path
    status: Literal["ok", "missing", "wrong size", "wrong hash"]
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def verify(weights_dir: Path, *, check_hash: bool = True, insightface: bool = True) -> list[FileCheck]:
    """Check every official file under ``weights_dir`` for presence, size and sha256."""
    checks = []
    for f in _wanted(insightface):
        path = weights_dir / f.path
        if not path.is_file():
            checks.append(FileCheck(f, path, "missing"))
            continue
        size = path.stat().st_size
        if size != f.size:
            checks.append(FileCheck(f, path, "wrong size", f"{size} bytes, expected {f.size}"))
            continue
        if check_hash:
            digest = sha256_of(path)
            if digest != f.sha256:
                checks.append(FileCheck(f, path, "wrong hash", f"sha256 {digest}, expected {f.sha256}"))
                continue
        checks.append(FileCheck(f, path, "ok"))
    return checks


def download(weights_dir: Path, *, force: bool = False, insightface: bool = True) -> list[Path]:
    """Download the official files into ``weights_dir`` (resumable; skips files already complete).

    Uses ``huggingface_hub``, which shows a progress bar per file and resumes an
    interrupted download. Each file is checked against its official size and
    sha256 afterwards.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a declared dependency
        raise WeightsError("huggingface_hub is not installed", hint="pip install huggingface_hub") from None

    weights_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in _wanted(insightface):
        target = weights_dir / f.path
        if not force and target.is_file() and target.stat().st_size == f.size:
            paths.append(target)
            continue
        try:
            got = hf_hub_download(repo_id=repo_id(), filename=f.path, local_dir=weights_dir, force_download=force)
        except Exception as exc:  # network, auth, disk: all are the user's to fix
            raise WeightsError(
                f"downloading {f.path} from {repo_id()} failed: {type(exc).__name__}: {exc}",
                hint="check your internet connection and disk space, then run the command again (it resumes)",
            ) from None
        paths.append(Path(got))
    bad = [c for c in verify(weights_dir, insightface=insightface) if not c.ok]
    if bad:
        lines = "; ".join(f"{c.file.path}: {c.status} {c.detail}".strip() for c in bad)
        raise WeightsError(
            f"downloaded files failed verification: {lines}", hint="run `lpstudio weights download --force`"
        )
    return paths

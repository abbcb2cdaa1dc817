"""Where the official weights live, how to download them, and how to verify them.

The files are those of the Hugging Face repository ``KlingTeam/LivePortrait``
(human model only), kept in the official layout, so an official checkout's
``pretrained_weights/`` folder works as is. Their sizes and sha256 digests
ship with the package (``data/official_weights.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from .errors import WeightsError

ENV_WEIGHTS_DIR = "LPSTUDIO_WEIGHTS_DIR"
"""Environment variable naming the weights folder (overridden by ``--weights-dir``)."""

HASH_CHUNK = 1 << 20

ENV_HUB_ENDPOINT = "HF_ENDPOINT"
"""huggingface_hub's variable naming a mirror of the hub (read when each download starts)."""
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
ENV_HUB_OFFLINE = "HF_HUB_OFFLINE"
"""huggingface_hub's switch for no network at all."""
TRUE_WORDS = ("1", "true", "yes", "on")
HUB_PROBE_TIMEOUT_S = 10.0
"""Seconds one reachability check of the hub may take before it counts as unreachable."""
HUB_PROBE_ATTEMPTS = 2
"""Reachability checks before giving up (huggingface_hub's own loop retries 5 times over ~25 s, loudly)."""
HUB_PROBE_PAUSE_S = 1.0
"""Pause between two reachability checks."""
HUB_LOGGER = "huggingface_hub"
HTTP_SERVER_ERROR = 500

SYNTHETIC_MARKER = "LPSTUDIO_SYNTHETIC_WEIGHTS.txt"
"""File that ``lpstudio weights synthetic`` leaves in the folder it fills: every load of that folder warns once."""

log = logging.getLogger(__name__)
_synthetic_warned: set[str] = set()  # folders already warned about in this process (filled at run time only)


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


def is_synthetic(weights_dir: Path) -> bool:
    """Whether ``weights_dir`` was filled by ``lpstudio weights synthetic`` (its marker file is there)."""
    return (Path(weights_dir) / SYNTHETIC_MARKER).is_file()


def synthetic_note(weights_dir: Path) -> str:
    """The one-line warning printed when synthetic weights are loaded."""
    return (
        f"note: the weights in {weights_dir} are synthetic (written by `lpstudio weights synthetic` for an "
        "offline tour): faces come out as noise. For real faces run `lpstudio weights download` "
        "(or give --weights-dir a folder with the official files)."
    )


def warn_if_synthetic(weights_dir: Path) -> bool:
    """Warn on stderr, once per folder and process, when ``weights_dir`` holds synthetic weights; True if it does."""
    root = Path(weights_dir)
    if not is_synthetic(root):
        return False
    key = str(root.resolve())
    if key not in _synthetic_warned:
        _synthetic_warned.add(key)
        print(synthetic_note(root), file=sys.stderr)
    return True


def check_synthetic_target(out_dir: Path) -> Path:
    """``out_dir`` if synthetic weights may be written there: not a file, holding no weights but synthetic ones."""
    from .checkpoint import MODULE_FILES

    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise WeightsError(f"cannot write synthetic weights to {out_dir}: it is a file", hint="give a folder")
    present = [rel for rel in MODULE_FILES.values() if (out_dir / rel).exists()]
    if present and not is_synthetic(out_dir):
        raise WeightsError(
            f"{out_dir} already holds weight files ({present[0]}, ...), not written by `lpstudio weights synthetic`",
            hint="give an empty or new folder, so no real weights are overwritten",
        )
    return out_dir


def write_synthetic(out_dir: Path, seed: int | None = None) -> Path:
    """Fill ``out_dir`` with deterministic synthetic weights in the official layout, and mark it.

    Refuses a folder that already holds weight files not written by this command, so
    nothing the user had is overwritten. Returns the folder.
    """
    from .synthetic import DEFAULT_SEED, write_synthetic_weights

    out_dir = check_synthetic_target(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_synthetic_weights(out_dir, seed=DEFAULT_SEED if seed is None else seed)
    (out_dir / SYNTHETIC_MARKER).write_text(
        "Synthetic LivePortrait weights written by `lpstudio weights synthetic`: deterministic noise in the\n"
        "official layout, for an offline tour of the app. Faces come out as noise. Delete this folder, or run\n"
        "`lpstudio weights download`, for the official weights.\n",
        encoding="utf-8",
    )
    return out_dir


def hub_endpoint() -> str:
    """The hub (or mirror) downloads go to: ``$HF_ENDPOINT``, else the Hugging Face hub."""
    return (os.environ.get(ENV_HUB_ENDPOINT) or DEFAULT_HUB_ENDPOINT).rstrip("/")


def offline_ways() -> str:
    """The three ways on when the hub cannot be reached (one line)."""
    return (
        "use weights you have with --weights-dir DIR or $LPSTUDIO_WEIGHTS_DIR (a folder in the official layout), "
        "or set HF_ENDPOINT to a mirror of the hub, "
        "or run `lpstudio weights synthetic DIR` for an offline tour with synthetic weights (faces come out as noise)"
    )


def probe_hub(url: str, *, timeout_s: float = HUB_PROBE_TIMEOUT_S, attempts: int = HUB_PROBE_ATTEMPTS) -> None:
    """Check that ``url`` answers at all (any HTTP status counts), a bounded number of times.

    A 5xx answer counts as a failure. Raises :class:`WeightsError` naming the endpoint,
    what failed and the three ways on.
    """
    import time
    import urllib.error
    import urllib.request

    reason = "no answer"
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(HUB_PROBE_PAUSE_S)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
                return
        except urllib.error.HTTPError as exc:
            if exc.code < HTTP_SERVER_ERROR:
                return  # it answered (401, 404, ...): reachable; hf_hub_download reports what it said
            reason = f"HTTP {exc.code}"  # a failing server: huggingface_hub would retry it for ~25 s
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:
            inner = getattr(exc, "reason", exc)
            reason = str(getattr(inner, "strerror", None) or inner) or type(inner).__name__
    raise WeightsError(
        f"cannot reach {hub_endpoint()} to download the LivePortrait weights ({reason})", hint=offline_ways()
    )


@contextmanager
def _quiet_hub_logs() -> Iterator[None]:
    """huggingface_hub's retry lines stay out of the terminal while we download (restored afterwards)."""
    logger = logging.getLogger(HUB_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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


def _complete(path: Path, f: OfficialFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size


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
    todo = [f for f in _wanted(insightface) if force or not _complete(weights_dir / f.path, f)]
    if todo and os.environ.get(ENV_HUB_OFFLINE, "").strip().lower() in TRUE_WORDS:
        raise WeightsError(
            f"{ENV_HUB_OFFLINE} is set, so the LivePortrait weights cannot be downloaded", hint=offline_ways()
        )
    if todo:
        from huggingface_hub import hf_hub_url

        # one bounded check first: an unreachable hub is one line, not minutes of retries
        probe_hub(hf_hub_url(repo_id(), todo[0].path, endpoint=hub_endpoint()))
    for f in _wanted(insightface):
        target = weights_dir / f.path
        if f not in todo:
            paths.append(target)
            continue
        try:
            with _quiet_hub_logs():
                got = hf_hub_download(
                    repo_id=repo_id(),
                    filename=f.path,
                    local_dir=weights_dir,
                    force_download=force,
                    endpoint=hub_endpoint(),
                )
        except Exception as exc:  # network, auth, disk: all are the user's to fix
            detail = " ".join(str(exc).split())[:200]
            raise WeightsError(
                f"downloading {f.path} from {repo_id()} at {hub_endpoint()} failed ({type(exc).__name__}: {detail})",
                hint="check the connection and disk space and run it again (it resumes); or " + offline_ways(),
            ) from None
        paths.append(Path(got))
    bad = [c for c in verify(weights_dir, insightface=insightface) if not c.ok]
    if bad:
        lines = "; ".join(f"{c.file.path}: {c.status} {c.detail}".strip() for c in bad)
        raise WeightsError(
            f"downloaded files failed verification: {lines}", hint="run `lpstudio weights download --force`"
        )
    return paths

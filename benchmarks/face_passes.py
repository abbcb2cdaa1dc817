"""Where the every-face search finds or loses each labelled face of the real group photos, pass by pass.

For each labelled face (``tests/data/faces/group_photos.json``) at each scale: the raw detections
of each pass of :class:`~lpstudio.face.fullrange.FaceSearch` that overlap it (best score, its IoU
with the label, and how many raw hits), at each model's own threshold (full range 0.6, short
range 0.5); then the IoU of the search's merged box and of the short-range search's box
(``BlazeFaceDetector.detect(thorough=True)``). Boxes of the search on no labelled face are listed
with the passes that saw them. Used to find why turned faces were lost (issue 21,
``docs/FACE_RECALL_REAL_PHOTO.md``).

    PYTHONPATH=src python benchmarks/face_passes.py                         # both photos, x1.00
    PYTHONPATH=src python benchmarks/face_passes.py --photo sts131_crew --scales 1.0 0.6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "face"))

from real_group_photos import MIN_IOU, box_iou, load_group_photos  # noqa: E402

from lpstudio.face.fullrange import FaceSearch  # noqa: E402

#: Raw detections overlapping a label by at least this IoU are listed for it.
LIST_IOU: float = 0.3
PASS_NAMES: tuple[str, ...] = ("full/whole", "short/whole", "full/tiles", "short/tiles")


def raw_passes(
    search: FaceSearch, image: NDArray[np.uint8]
) -> list[tuple[str, NDArray[np.float64], NDArray[np.float64]]]:
    """(pass name, boxes (N, 4), scores (N,)) of each of the search's four passes, before merging."""
    whole = [search.full._run(image), search.short._run(image)]
    tiles = [search._tiles(image, None), search._short_tiles(image, None)]
    out = [(PASS_NAMES[i], b, s) for i, (b, s, _) in enumerate(whole)]
    for name, found in zip(PASS_NAMES[2:], tiles):
        boxes = np.concatenate([f[0] for f in found] + [np.zeros((0, 4))])
        scores = np.concatenate([f[1] for f in found] + [np.zeros(0)])
        out.append((name, boxes, scores))
    return out


def describe(passes: list[tuple[str, NDArray[np.float64], NDArray[np.float64]]], box: NDArray[np.float64]) -> str:
    """``pass: best score (IoU) xhits`` for each pass with a raw detection overlapping ``box`` (4,)."""
    parts = []
    for name, boxes, scores in passes:
        iou = box_iou(box[None], boxes)[0] if len(boxes) else np.zeros(0)
        near = iou >= LIST_IOU
        if near.any():
            j = int(np.argmax(np.where(near, scores, -1.0)))
            parts.append(f"{name} {scores[j]:.2f} ({iou[j]:.2f}) x{int(near.sum())}")
    return "; ".join(parts) or "no raw detection"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=None, help="one photo of the labels file (default: all)")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    args = ap.parse_args(argv)
    from lpstudio.face.models import MediaPipeFacePipeline

    mp = MediaPipeFacePipeline()
    for photo in load_group_photos():
        if args.photo and photo.name != args.photo:
            continue
        for scale in args.scales:
            shot = photo.scaled(scale)
            passes = raw_passes(mp.search, shot.image)
            search = np.asarray(mp.search.detect(shot.image).boxes, dtype=np.float64)
            short = np.asarray(mp.models.detector.detect(shot.image, thorough=True).boxes, dtype=np.float64)
            print(f"\n## {photo.name} x{scale:.2f}\n")
            print("| face | roll | search IoU | short-range IoU | raw detections: best score (IoU) x hits |")
            print("| --- | ---: | ---: | ---: | --- |")
            for i, name in enumerate(shot.names):
                s_iou = box_iou(shot.boxes[i : i + 1], search).max(initial=0.0)
                r_iou = box_iou(shot.boxes[i : i + 1], short).max(initial=0.0)
                mark = lambda v: f"**{v:.2f}**" if v >= MIN_IOU else f"{v:.2f}"  # noqa: E731
                print(
                    f"| {name} | {shot.roll_deg[i]:.0f} | {mark(s_iou)} | {mark(r_iou)} "
                    f"| {describe(passes, shot.boxes[i])} |"
                )
            off = box_iou(shot.boxes, search).max(axis=0, initial=0.0) < MIN_IOU
            for box in search[off]:
                print(f"| (no face) {np.round(box).astype(int).tolist()} | | | | {describe(passes, box)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Face detection recall and false positives, on real group photos and on group photos composed from portraits.

Real photos (``tests/face/real_group_photos.py``): shippable group photos with hand-labelled face
boxes, at several scales; a face is found by a box with IoU >= 0.5. Half-hidden faces and faces
turned more than 45 degrees in the picture plane are counted apart, and a box on one is no false
positive.
Composed scenes (``tests/face/group_scenes.py``): faces side by side, faces a few pixels from
the edges, overlapping faces, on a noisy and on a real (faceless) background, at each
size; plus photos without any face (false positives only). Prints Markdown tables per
detector: faces found / faces, recall, and false positives (boxes that are no face).

    PYTHONPATH=src python benchmarks/face_recall.py                       # MediaPipe: every-face search
    PYTHONPATH=src python benchmarks/face_recall.py --detector short      # the old short-range search
    PYTHONPATH=src python benchmarks/face_recall.py --detector insightface --weights-dir DIR
    PYTHONPATH=src python benchmarks/face_recall.py --only real           # the real photos only (seconds)

Composed sizes are face sizes in pixels of the photo (1280x720, so also of the 1280 px analysis
copy); real photos list their smallest and largest labelled face at each scale.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "face"))

from group_scenes import LAYOUTS, Scene, background, match, portrait  # noqa: E402
from real_group_photos import MIN_IOU, load_group_photos, match_photo  # noqa: E402

SIZES: tuple[int, ...] = (40, 56, 80, 112, 160, 240)
BACKGROUNDS: tuple[str, ...] = ("noise", "real")
#: Scales the real photos are measured at (1.0: as stored, 1280 px wide).
REAL_SCALES: tuple[float, ...] = (1.0, 0.8, 0.6, 0.5)


def no_face_photos() -> list[tuple[str, np.ndarray]]:
    """Photos with no face: both backgrounds at 1280x720, the astronaut photo's rocket part, a flat gray."""
    rocket, _ = portrait("astronaut")
    return [
        ("noise 1280x720", background("noise", 1280, 720)),
        ("real 1280x720", background("real", 1280, 720)),
        ("rocket crop", np.ascontiguousarray(rocket[260:, 340:])),
        ("flat gray", np.full((600, 800, 3), 128, np.uint8)),
    ]


def detector_for(kind: str, weights_dir: Path | None) -> Callable[[np.ndarray], np.ndarray]:
    """(H, W, 3) uint8 RGB -> (N, 4) boxes, for ``search`` / ``short`` (MediaPipe) or ``insightface``."""
    if kind == "insightface":
        from lpstudio.face import FacePipeline

        if weights_dir is None:
            raise SystemExit("--detector insightface needs --weights-dir (the official files' folder)")
        pipe = FacePipeline(weights_dir)
        return lambda im: pipe.detect(im).boxes
    from lpstudio.face.models import MediaPipeFacePipeline

    mp = MediaPipeFacePipeline()
    if kind == "short":
        return lambda im: mp.models.detector.detect(im, thorough=True).boxes
    return lambda im: mp.detect(im).boxes


def report_real_photos(detect: Callable[[np.ndarray], np.ndarray], scales: list[float]) -> None:
    """Markdown table: each real photo at each scale; faces found among the required ones (visible, within
    45 degrees of upright), among those turned further (on their side, upside down), and among all."""
    print(
        "| photo | scale | face px | found / required faces | found / turned faces | found / all faces "
        "| mean IoU | false positives | s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for photo in load_group_photos():
        for scale in scales:
            shot = photo.scaled(scale)
            t0 = time.perf_counter()
            boxes = detect(shot.image)
            elapsed = time.perf_counter() - t0
            best, fp = match_photo(shot, boxes)
            hit = best >= MIN_IOU
            need = shot.required
            turned = ~shot.occluded & ~need
            sides = shot.face_sizes()
            mean_iou = float(best[hit].mean()) if hit.any() else 0.0
            print(
                f"| {photo.name} | {scale:.2f} | {sides.min():.0f}-{sides.max():.0f} "
                f"| {hit[need].sum()} / {need.sum()} | {hit[turned].sum()} / {turned.sum()} "
                f"| {hit.sum()} / {len(hit)} | {mean_iou:.2f} | {fp} | {elapsed:.2f} |"
            )
        missed = [n for n, b in zip(photo.names, match_photo(photo, detect(photo.image))[0]) if b < MIN_IOU]
        print(f"\n{photo.name} at x1.00: missed {'; '.join(missed) if missed else 'none'}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", choices=["search", "short", "insightface"], default="search")
    ap.add_argument("--weights-dir", type=Path, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--scales", type=float, nargs="+", default=list(REAL_SCALES), help="scales of the real photos")
    ap.add_argument("--only", choices=["real", "composed"], default=None, help="run one of the two parts")
    args = ap.parse_args(argv)
    detect = detector_for(args.detector, args.weights_dir)

    print(f"detector: {args.detector}\n")
    if args.only != "composed":
        print("## Real group photos\n")
        report_real_photos(detect, args.scales)
    if args.only == "real":
        return 0
    print("## Composed group photos\n")
    print("| face px | layout | found / faces | recall | false positives | s per photo |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    totals = {"found": 0, "faces": 0, "fp": 0}
    for size in args.sizes:
        per_size = {"found": 0, "faces": 0, "fp": 0}
        for layout, make in LAYOUTS.items():
            found = faces = fp = 0
            elapsed = 0.0
            for bg in BACKGROUNDS:
                scene: Scene = make(float(size), bg)
                t0 = time.perf_counter()
                boxes = detect(scene.image)
                elapsed += time.perf_counter() - t0
                hits, extra = match(scene, boxes)
                found, faces, fp = found + sum(hits), faces + len(hits), fp + extra
            per_size["found"] += found
            per_size["faces"] += faces
            per_size["fp"] += fp
            rate = elapsed / len(BACKGROUNDS)
            print(f"| {size} | {layout} | {found} / {faces} | {found / faces:.2f} | {fp} | {rate:.2f} |")
        for k in totals:
            totals[k] += per_size[k]
        recall = per_size["found"] / per_size["faces"]
        found_all, faces_all = per_size["found"], per_size["faces"]
        print(f"| **{size}** | all | {found_all} / {faces_all} | **{recall:.2f}** | {per_size['fp']} | |")
    print(
        f"\nall sizes: recall {totals['found'] / totals['faces']:.3f} ({totals['found']} / {totals['faces']}), "
        f"false positives {totals['fp']}"
    )
    fps = 0
    for name, image in no_face_photos():
        n = len(detect(image))
        fps += n
        print(f"no-face photo '{name}': {n} false positive{'s' if n != 1 else ''}")
    print(f"false positives on no-face photos: {fps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate ``tests/data/tflite_reference.npz``: Google's own TFLite runtime on fixed inputs.

lpstudio runs MediaPipe's three ``.tflite`` face models with its own reader
(:mod:`lpstudio.face.tflite`) and its own ONNX conversion (:mod:`lpstudio.face.tflite_onnx`).
This script runs the same files once with the reference runtime (``ai-edge-litert``, the
TensorFlow Lite interpreter, with its reference kernels) and stores the inputs and outputs,
so ``tests/face/test_tflite.py`` can compare both of ours against it without that runtime.

Run from the repository root (``ai-edge-litert`` and ``mediapipe==0.10.21`` installed, e.g.
``pip install ai-edge-litert`` and ``pip install --no-deps mediapipe==0.10.21``)::

    PYTHONPATH=src python tests/data/make_tflite_reference.py

Layout of the ``.npz`` (for each model key ``detector``, ``mesh``, ``iris``):

* ``{key}.inputs``: ``(N, H, W, 3)`` uint8 images; the model input is ``image / scale - 1``
  (:func:`model_input`, ``scale`` stored as ``pixel_scale``), the [-1, 1] range MediaPipe feeds these models;
* ``{key}.names``: the output tensor names, in the order of ``TFLiteModel.output_names``;
* ``{key}.out{j}``: ``(N, ...)`` float32, output ``j`` for each input;
* ``sha256.{key}``: the digest of the model file the outputs came from.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "tflite_reference.npz"
FACE_PHOTO = HERE / "faces" / "grace_hopper.jpg"
"""A real face (resized to each model's input) so the mesh and iris outputs are those of a face."""
NOISE_SEED = 20260
"""Any fixed seed: the second input of each model is uniform noise (every channel and value range)."""
PIXEL_SCALE = 127.5
"""MediaPipe feeds these models ``pixel / 127.5 - 1`` (the [-1, 1] range)."""


def model_input(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """The float input of the models for ``(N, H, W, 3)`` uint8 images (the test repeats it with ``pixel_scale``)."""
    return (images.astype(np.float32) / np.float32(PIXEL_SCALE) - np.float32(1.0)).astype(np.float32)


def fixed_inputs(height: int, width: int) -> NDArray[np.uint8]:
    """Two fixed images of the model's input size: the face photo (resized) and uniform noise."""
    photo = Image.open(FACE_PHOTO).convert("RGB")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    face = np.asarray(photo.crop((left, top, left + side, top + side)).resize((width, height), Image.BILINEAR))
    noise = np.random.default_rng(NOISE_SEED).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.stack([face, noise]).astype(np.uint8)


def main() -> int:
    """Write :data:`OUT`; return the exit status."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        print("needs the reference runtime: pip install ai-edge-litert", file=sys.stderr)
        return 2
    from lpstudio.face.mediapipe import locate_models
    from lpstudio.face.tflite import TFLiteModel

    arrays: dict[str, NDArray] = {}
    for key, path in sorted(locate_models().items()):
        data = path.read_bytes()
        ours = TFLiteModel(data, path.name)  # only for the output order; nothing of ours is computed
        interpreter = Interpreter(
            model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1
        )
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        by_name = {d["name"]: d["index"] for d in interpreter.get_output_details()}
        _, height, width, _ = (int(v) for v in inp["shape"])
        images = fixed_inputs(height, width)
        outputs: list[list[NDArray]] = [[] for _ in ours.output_names]
        for x in model_input(images):
            interpreter.set_tensor(inp["index"], x[None])
            interpreter.invoke()
            for j, name in enumerate(ours.output_names):
                outputs[j].append(np.array(interpreter.get_tensor(by_name[name])[0], dtype=np.float32))
        arrays[f"{key}.inputs"] = images
        arrays[f"{key}.names"] = np.array(ours.output_names)
        for j, values in enumerate(outputs):
            arrays[f"{key}.out{j}"] = np.stack(values)
        arrays[f"sha256.{key}"] = np.array(hashlib.sha256(data).hexdigest())
    arrays["pixel_scale"] = np.array(PIXEL_SCALE, dtype=np.float32)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

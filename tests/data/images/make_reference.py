"""Regenerates tests/data/images/reference.json (and the synthetic PNGs) from transformers.

Not run by CI: the JSON it writes is committed. Needs torch, torchvision, pillow, numpy and
transformers (5.x). Run from the repository root:  python tests/data/images/make_reference.py
The reference is what AutoImageProcessor returns for a Qwen3-VL preprocessor_config.json
(the torchvision Qwen2VLImageProcessor) on a PIL image opened from the file.
"""

import json
import os
import struct
import tempfile
import zlib

import numpy as np
import transformers
from PIL import Image, ImageOps
from transformers import AutoImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
QWEN3_VL = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}
SMALL = {"shortest_edge": 4 * 32 * 32, "longest_edge": 16 * 32 * 32}
DEFAULT = {"shortest_edge": 65536, "longest_edge": 16777216}
N_SAMPLES = 256


def write_png(path, arr, color_type, bit_depth, plte=None, trns=None):
    """A minimal PNG writer, so that every colour type and bit depth can be made exactly."""
    h, w = arr.shape[:2]

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\0" + arr[y].astype(dtype).tobytes() for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        out += chunk(b"PLTE", plte)
    if trns is not None:
        out += chunk(b"tRNS", trns)
    out += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def make_synthetic(dir_):
    """Small images covering the colour types a PNG can hold (alpha, grey, 16-bit, palette)."""
    os.makedirs(dir_, exist_ok=True)
    rng = np.random.default_rng(1234)
    h, w = 61, 45
    yy, xx = np.mgrid[0:h, 0:w]
    r = (xx * 255 // (w - 1)).astype(np.uint8)
    g = (yy * 255 // (h - 1)).astype(np.uint8)
    b = rng.integers(0, 256, (h, w)).astype(np.uint8)
    a = ((xx + yy) * 255 // (w + h - 2)).astype(np.uint8)
    a[:5, :5] = 0
    a[-5:, -5:] = 255
    write_png(f"{dir_}/rgba8.png", np.stack([r, g, b, a], -1), 6, 8)
    write_png(f"{dir_}/la8.png", np.stack([b, a], -1), 4, 8)
    write_png(f"{dir_}/grey8.png", b, 0, 8)
    rgb16 = rng.integers(0, 65536, (h, w, 3)).astype(np.uint16)
    write_png(f"{dir_}/rgb16.png", rgb16, 2, 16)
    rgba16 = np.concatenate([rgb16, (a.astype(np.uint16) * 257)[..., None]], -1)
    write_png(f"{dir_}/rgba16.png", rgba16, 6, 16)
    palette = rng.integers(0, 256, (16, 3)).astype(np.uint8)
    idx = ((xx // 3 + yy // 4) % 16).astype(np.uint8)
    trns = bytes([0, 128] + [255] * 14)
    write_png(f"{dir_}/palette_trns.png", idx, 3, 8, plte=palette.tobytes(), trns=trns)
    write_png(f"{dir_}/pixel_1x1.png", np.array([[[200, 30, 90]]], np.uint8), 2, 8)
    wide = rng.integers(0, 256, (2, 300, 3)).astype(np.uint8)
    write_png(f"{dir_}/wide_300x2.png", wide, 2, 8)
    write_png(f"{dir_}/exact_96x64.png", rng.integers(0, 256, (64, 96, 3)).astype(np.uint8), 2, 8)
    # Stored 64 wide and 32 high with EXIF orientation 6: upright it is 32 wide and 64 high.
    smooth = np.stack([np.mgrid[0:32, 0:64][1] * 4, np.mgrid[0:32, 0:64][0] * 8, np.full((32, 64), 128)], -1)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(smooth.astype(np.uint8)).save(f"{dir_}/exif_rot6.jpg", exif=exif, quality=95)
    big = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    big = np.kron(big, np.ones((37, 41, 1), np.uint8))  # 740 x 984, blocky so downscaling matters
    write_png(f"{dir_}/blocks_984x740.png", big, 2, 8)


def summarise(pixel_values, grid_thw, rng):
    pv = pixel_values.astype(np.float32)
    n, d = pv.shape
    idx = rng.integers(0, n * d, N_SAMPLES)
    flat = pv.reshape(-1)
    return {
        "grid_thw": [int(v) for v in grid_thw],
        "shape": [n, d],
        "sum": float(pv.astype(np.float64).sum()),
        "abs_sum": float(np.abs(pv.astype(np.float64)).sum()),
        # 9 significant digits keep the file small; the test's tolerance is far above that.
        "patch_means": [float(f"{m:.9g}") for m in pv.astype(np.float64).mean(axis=1)],
        # str of a float32 is its shortest round-trip form: parsed as f32 it is exact.
        "samples": [[int(i), float(str(flat[i]))] for i in idx],
    }


def main():
    synth_dir = os.path.join(HERE, "synthetic")
    make_synthetic(synth_dir)
    with tempfile.TemporaryDirectory() as model_dir:
        with open(os.path.join(model_dir, "preprocessor_config.json"), "w") as f:
            json.dump(QWEN3_VL, f)
        proc = AutoImageProcessor.from_pretrained(model_dir)
    rng = np.random.default_rng(0)
    photos = ["chelsea.png", "coffee.png", "rocket.jpg"]
    synthetic = sorted(os.listdir(synth_dir))
    cases = []
    for name in photos + [f"synthetic/{s}" for s in synthetic]:
        for label, size in [("small", SMALL), ("default", DEFAULT)]:
            if name.startswith("synthetic/") and label == "default" and "blocks" not in name:
                continue
            image = Image.open(os.path.join(HERE, name))
            if name.endswith(".jpg"):
                # What transformers' load_image does before the processor sees the image.
                image = ImageOps.exif_transpose(image)
            out = proc(image, size=size, return_tensors="np")
            case = {"image": name, "setting": label, "min_pixels": size["shortest_edge"], "max_pixels": size["longest_edge"]}
            case.update(summarise(out["pixel_values"], out["image_grid_thw"][0], rng))
            cases.append(case)
            print(name, label, case["grid_thw"])
    doc = {
        "generator": "tests/data/images/make_reference.py",
        "transformers": transformers.__version__,
        "processor": type(proc).__name__,
        "config": QWEN3_VL,
        "cases": cases,
    }
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))


if __name__ == "__main__":
    main()

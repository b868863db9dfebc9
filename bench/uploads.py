#!/usr/bin/env python
"""Memory for eight maximal photo uploads validated in parallel (issue 17's target: the
process grows by under 150 MB).

"Maximal" means just under the pixel limit (MAX_IMAGE_PIXELS, 25 MP): a JPEG photo and
a PNG that compresses to almost nothing but decodes to the full 25 MP (the worst case
for memory per byte uploaded); with --kind all also a WebP of the same size and an AVIF just under AVIF's own
limit (MAX_AVIF_PIXELS). The eight request bodies are built first and count in
the baseline, as a server holds them before it decodes; the figure is the growth of
the process's peak resident memory (VmHWM) while the eight run on eight threads.

    .venv/bin/python bench/uploads.py [--kind jpeg|png|webp|avif|both|all]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stefna.settings")
os.environ.setdefault("SECRET_KEY", "bench-only")

import django

django.setup()

from django.conf import settings
from PIL import Image

from generation.images import validate_image

TARGET_MB = 150


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
    Path("/proc/self/clear_refs").write_text("5")


def maximal_jpeg() -> bytes:
    side_w, side_h = 6000, 4160  # 24.96 MP
    small = Image.effect_noise((side_w // 8, side_h // 8), 60).convert("RGB")
    picture = small.resize((side_w, side_h), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def maximal_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (6000, 4160), (200, 120, 40, 255)).save(buffer, "PNG")
    return buffer.getvalue()


def maximal_webp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (6000, 4160), (200, 120, 40, 255)).save(buffer, "WEBP", lossless=True)
    return buffer.getvalue()


def maximal_avif() -> bytes:
    # AVIF has its own lower limit (MAX_AVIF_PIXELS): maximal is just under it, at 3:2.
    width = int((settings.MAX_AVIF_PIXELS * 3 / 2) ** 0.5)
    height = min(width * 2 // 3, settings.MAX_AVIF_PIXELS // width)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "AVIF", quality=50, speed=10)
    return buffer.getvalue()


MAKERS = {"jpeg": maximal_jpeg, "png": maximal_png, "webp": maximal_webp, "avif": maximal_avif}


def run(kind: str) -> float:
    body = MAKERS[kind]()
    with Image.open(io.BytesIO(body)) as header:
        megapixels = header.width * header.height / 1e6
    assert len(body) <= settings.MAX_UPLOAD_BYTES, len(body)
    bodies = [bytes(body) for _ in range(8)]  # eight distinct request bodies
    validate_image(bodies[0])  # warm up: imports, codecs, the decode slots
    time.sleep(0.2)
    _reset_peak()
    baseline = _status("VmRSS")
    errors: list[BaseException] = []

    def upload(data: bytes) -> None:
        try:
            validated = validate_image(data)
            assert max(validated.width, validated.height) <= settings.MAX_SOURCE_SIDE
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(data,)) for data in bodies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    grown_mb = (_status("VmHWM") - baseline) / 1e6
    verdict = "ok" if grown_mb < TARGET_MB else "MISSED"
    print(
        f"uploads {kind}: 8 x {len(body) / 1e6:.1f} MB bodies of {megapixels:.2f} MP in parallel: "
        f"peak memory grew {grown_mb:.0f} MB (target < {TARGET_MB}) {verdict}; {elapsed:.1f} s; "
        f"IMAGE_DECODE_CONCURRENCY={settings.IMAGE_DECODE_CONCURRENCY}"
    )
    return grown_mb


def main() -> int:
    parser = argparse.ArgumentParser()
    # "both" is the target (a photo as JPEG, and PNG, the worst per byte that
    # Stefna decodes in strips); "all" adds WebP (decoded by libwebp at reduced scale)
    # and AVIF (decoded whole, under its own lower pixel limit).
    parser.add_argument("--kind", choices=[*MAKERS, "both", "all"], default="both")
    args = parser.parse_args()
    kinds = {"both": ["jpeg", "png"], "all": list(MAKERS)}.get(args.kind, [args.kind])
    worst = max(run(kind) for kind in kinds)
    return 0 if worst < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())

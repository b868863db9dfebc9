#!/usr/bin/env python
"""How many image bytes pass through our process when a result is saved, and how much
memory that takes.

fal keeps results for about an hour, so every output is copied somewhere durable
(generation/persistence.py, through `services.media_persist`):

1. Cloudinary configured: a remote-URL upload. Cloudinary fetches fal's URL itself,
   so our process should read ~0 bytes of the image. Measured: the bytes the fake fal
   served (all to the fake Cloudinary) vs the bytes our process read (`rchar` in
   /proc/self/io, every read() including sockets: an upper bound).
2. No Cloudinary: the image is streamed into Django's default storage. Our process
   reads the whole image; its resident memory must grow by less than 20 MB for a
   20 MB image (peak RSS sampled every 2 ms, and VmHWM after resetting it).

Both fakes (tests/fakes/: the HTTPS fake fal serving a --megabytes PNG of noise, and the
fake Cloudinary, which really fetches the URL) run in a child process, so their reads
never count as ours. The Media rows live in a throwaway PostgreSQL database
(`stefna_bench_persist`).

    .venv/bin/python bench/persistence.py [--megabytes 20] [--keep-db]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import support

DB_NAME = "stefna_bench_persist"
GROWTH_LIMIT_MB = 20.0


# --- The fakes, in their own process -------------------------------------------------------


def serve_fakes(cert_dir: Path, megabytes: float) -> None:
    """Child process: the fake fal (serving one big PNG at /files/big-*) and the fake
    Cloudinary; prints their addresses as one JSON line, then serves until killed."""
    from tests.fakes.cloudinary import FakeCloudinary
    from tests.fakes.fal import FakeFal

    big = _noise_png(megabytes)
    served = {"bytes": 0, "files": 0}
    fetches: dict[str, int] = {}

    class BigFileFal(FakeFal):
        """The fake fal, whose result URLs under /files/big- answer a large PNG."""

        def handle(self, method, raw_path, headers, body):  # type: ignore[no-untyped-def]
            if raw_path.startswith("/files/big-"):
                served["bytes"] += len(big)
                served["files"] += 1
                fetches[raw_path] = fetches.get(raw_path, 0) + 1
                return 200, big, "image/png"
            if raw_path == "/_bench/stats":
                uploads = [
                    {"public_id": asset["public_id"], "bytes": asset["bytes"]} for asset in cloudinary.assets.values()
                ]
                answer = {"served_bytes": served["bytes"], "fetches": fetches, "assets": uploads}
                return 200, answer, "application/json"
            return super().handle(method, raw_path, headers, body)

    fal = BigFileFal(cert_dir=cert_dir).start()
    cloudinary = FakeCloudinary(ca_path=fal.certs.ca_path).start()
    print(
        json.dumps(
            {
                "fal": fal.base_url,
                "ca": str(fal.certs.ca_path),
                "cloudinary_url": cloudinary.cloudinary_url,
                "image_bytes": len(big),
            }
        ),
        flush=True,
    )
    while True:
        time.sleep(3600)


def _noise_png(megabytes: float) -> bytes:
    """A PNG of random noise: incompressible, so its size is about width × height × 3."""
    from PIL import Image

    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --- Measuring our own process ---------------------------------------------------------------


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """Peak resident memory while the block runs, over the RSS at its start (MB)."""

    def __enter__(self) -> PeakRss:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.start_kb = _status_kb("VmRSS")
        self.peak_kb = self.start_kb
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
        if self.hwm_reset:
            self.peak_kb = max(self.peak_kb, _status_kb("VmHWM"))

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.start_kb) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=20.0, help="size of the result image")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--serve-fakes", metavar="CERT_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fakes:
        serve_fakes(Path(args.serve_fakes), args.megabytes)
        return 0

    work = Path(tempfile.mkdtemp(prefix="stefna-bench-persist-"))
    fakes = subprocess.Popen(
        [sys.executable, __file__, "--serve-fakes", str(work / "certs"), "--megabytes", str(args.megabytes)],
        cwd=support.ROOT,
        env={**os.environ, "PYTHONPATH": str(support.ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = fakes.stdout.readline() if fakes.stdout else ""
        if not line:
            raise RuntimeError("the fakes process did not start")
        info = json.loads(line)
        url = support.create_database(DB_NAME)
        env = support.bench_env(
            DATABASE_URL=url,
            MEDIA_ROOT=str(work / "media"),
            CLOUDINARY_URL=info["cloudinary_url"],
            SSL_CERT_FILE=info["ca"],
            # The fakes answer on 127.0.0.1, which the result-URL rules refuse otherwise.
            ALLOW_PRIVATE_RESULT_URLS="1",
        )
        os.environ.update({key: value for key, value in env.items() if key != "PYTHONPATH"})
        os.environ["DJANGO_SETTINGS_MODULE"] = "stefna.settings"
        return run(info, args)
    finally:
        fakes.kill()
        fakes.wait()
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            support.drop_database(DB_NAME)
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def run(info: dict, args: argparse.Namespace) -> int:
    import django

    django.setup()
    import httpx
    from django.conf import settings
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.test import override_settings

    from generation import services
    from generation.models import Generation, Media
    from stefna.accounts.models import User

    call_command("migrate", verbosity=0)
    user = User.objects.create_user(email="persist-bench@example.com")
    generation = Generation.objects.create(
        user=user, preset_slug="oil_painting", kind="preset", cost=2, status=Generation.Status.SUCCEEDED
    )
    fal = info["fal"]

    def media(index: int, path: str) -> Media:
        source = f"{fal}{path}"
        return Media.objects.create(
            generation=generation, user=user, index=index, url=source, original_url=source, content_type="image/png"
        )

    def stats() -> dict:
        return httpx.get(f"{fal}/_bench/stats", verify=info["ca"], timeout=10).json()

    image_mb = info["image_bytes"] / 1e6
    print(f"== bench/persistence.py: saving a {image_mb:.1f} MB result (PNG of noise) from the fake fal")
    assert settings.CLOUDINARY_ENABLED, "the fake Cloudinary should be configured"

    # 1. Cloudinary: a remote-URL upload. A first upload warms up imports and pools.
    # Bytes and memory are measured on separate uploads: the memory sampler's own reads
    # of /proc would count as bytes read.
    services.media_persist(media_id=media(0, "/files/big-warmup.png").pk)
    before, read_before = stats(), _bytes_read()
    started = time.perf_counter()
    saved = services.media_persist(media_id=media(1, "/files/big-1.png").pk)
    cloud_seconds = time.perf_counter() - started
    our_bytes = _bytes_read() - read_before
    after = stats()
    fetched = after["served_bytes"] - before["served_bytes"]
    # Fetched once, and by Cloudinary (its asset has the image's size): had our process
    # downloaded the image to upload it, the fake fal would have served it twice.
    cloud_fetches = after["fetches"].get("/files/big-1.png", 0)
    with PeakRss() as cloud_memory:
        services.media_persist(media_id=media(4, "/files/big-3.png").pk)
    asset_bytes = next((a["bytes"] for a in after["assets"] if a["public_id"] == saved.storage_key), 0)
    cloud_ok = (
        saved.persisted
        and cloud_fetches == 1
        and asset_bytes == info["image_bytes"]
        and our_bytes < 0.01 * info["image_bytes"]
    )

    # 2. No Cloudinary: streamed into the default storage (local files here).
    with override_settings(CLOUDINARY_ENABLED=False):
        services.media_persist(media_id=media(2, "/files/warmup-small.png").pk)  # a small PNG: warms the client
        read_before = _bytes_read()
        started = time.perf_counter()
        streamed = services.media_persist(media_id=media(3, "/files/big-2.png").pk)
        stream_seconds = time.perf_counter() - started
        stream_read = _bytes_read() - read_before
        with PeakRss() as stream_memory:
            again = services.media_persist(media_id=media(5, "/files/big-4.png").pk)
        stored = default_storage.size(streamed.storage_key) if streamed.persisted else 0
    stream_ok = (
        streamed.persisted and again.persisted and stored == info["image_bytes"]
    ) and stream_memory.growth_mb < GROWTH_LIMIT_MB

    support.print_table(
        [
            [
                "Cloudinary (remote-URL upload)",
                f"{saved.persisted}",
                f"fal served it {cloud_fetches}x ({fetched / 1e6:.1f} MB), to Cloudinary (asset {asset_bytes / 1e6:.1f} MB)",
                f"{our_bytes / 1e3:.1f} KB",
                f"{cloud_memory.growth_mb:.1f} MB",
                f"{cloud_seconds * 1000:.0f} ms",
                "our bytes ~ 0 (< 1% of the image)",
                "MET" if cloud_ok else "MISSED",
            ],
            [
                "default storage (streamed)",
                f"{streamed.persisted}",
                f"{stored / 1e6:.1f} MB stored",
                f"{stream_read / 1e6:.1f} MB",
                f"{stream_memory.growth_mb:.1f} MB",
                f"{stream_seconds * 1000:.0f} ms",
                f"RSS growth < {GROWTH_LIMIT_MB:g} MB",
                "MET" if stream_ok else "MISSED",
            ],
        ],
        ["path", "persisted", "image", "our process read", "peak RSS growth", "time", "target", "result"],
    )
    print(
        "our process read = rchar from /proc/self/io: every read() of a file or a TLS socket (fal's URLs are "
        "HTTPS, so an image fetched by us would show here; the streamed path reads it twice: off the socket, "
        f"then back from the spool file into storage). Peak RSS sampled every 2 ms"
        f"{' plus VmHWM' if stream_memory.hwm_reset else ''}."
    )
    print(f"persistence.py: {int(cloud_ok) + int(stream_ok)}/2 targets met")
    return 0 if cloud_ok and stream_ok else 1


if __name__ == "__main__":
    sys.exit(main())

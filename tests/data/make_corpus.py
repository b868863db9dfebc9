"""Write the hostile-input corpus to a folder, for manual testing with curl or a browser.

    python -m tests.data.make_corpus /tmp/stefna-corpus

The tests never read these files: they build each sample in memory (tests/data/corpus.py),
so nothing binary lives in git.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.data.corpus import IMAGES, PROMPTS


def write_corpus(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in IMAGES:
        path = folder / sample.name
        path.write_bytes(sample.make())
        written.append(path)
    prompts = folder / "prompts.json"
    prompts.write_text(json.dumps({sample.name: sample.prompt for sample in PROMPTS}, ensure_ascii=False, indent=2))
    written.append(prompts)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    for path in write_corpus(args.folder):
        print(f"{path.stat().st_size:>8}  {path}")


if __name__ == "__main__":
    main()

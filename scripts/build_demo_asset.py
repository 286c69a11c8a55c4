"""Build ``assets/demo/default.tar.xz``: the default demo's fingerprints, embeddings, maps and rankings.

Run from the repository root after anything that changes the demo's data, the bundled
model, the default settings or the cache formats (``tests/test_demo_asset.py`` fails
until then)::

    python scripts/build_demo_asset.py

Uses the user's cache when it already holds the results (otherwise computes them:
about 10-25 min on 2 CPU cores, mostly fingerprinting). Prints the manifest and size.
"""

from __future__ import annotations

import json

from mads_core.data import demo_asset


def main() -> int:
    info = demo_asset.build()
    size = demo_asset.ASSET_FILE.stat().st_size
    print(json.dumps(info, indent=1, sort_keys=True))
    print(f"demo asset -> {demo_asset.ASSET_FILE.name} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

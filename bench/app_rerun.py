"""Time of one Compare-page rerun after the budget slider moves (target: <= 0.3 s on the demo).

Runs the real app with ``streamlit.testing.v1.AppTest`` on the bundled demo with default
settings: a warm-up run computes (or loads) fingerprints, embeddings, rankings and maps;
then the budget slider is moved to several values and each rerun is timed. A rerun must
recompute nothing heavy: every method's ranking is cached once and only sliced.

    python bench/app_rerun.py            # uses $MADS_CACHE_DIR or the user cache
    python bench/app_rerun.py --moves 9

Prints ``app_rerun: slider_rerun_s=<median seconds>`` (plus min/max) on the last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's ``select`` module.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

ROOT = HERE.parent
TARGET_S = 0.3


def navigation_mode() -> None:
    """Run AppTest as the server does after ``st.navigation`` (``app.py`` around every page)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=7, help="timed slider moves (default 7)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    navigation_mode()
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    start = time.perf_counter()
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    if at.exception or at.error:
        print("app_rerun: the Compare page failed:", [e.value for e in (*at.exception, *at.error)])
        return 1
    print(f"warm-up (fingerprints, embeddings, rankings, maps as needed): {time.perf_counter() - start:.1f} s")
    values = [12.0, 5.0, 20.0, 8.5, 15.0, 3.0, 25.0, 10.0, 30.0, 6.0]
    at.slider(key="compare_budget_pct").set_value(values[-1]).run()  # first move also warms small caches
    times = []
    for i in range(args.moves):
        slider = at.slider(key="compare_budget_pct")
        slider.set_value(values[i % len(values)])
        t0 = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - t0)
        if at.exception:
            print("app_rerun: rerun failed:", [e.value for e in at.exception])
            return 1
    median = statistics.median(times)
    verdict = "meets" if median <= TARGET_S else "misses"
    print(f"reruns: min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} moves of the budget slider "
          f"(default methods, demo 'default'); median {verdict} the {TARGET_S} s target")
    print(f"app_rerun: slider_rerun_s={median:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time of one Compare-page rerun after the budget slider moves (target: <= 0.3 s on the demo).

Runs the real app with ``streamlit.testing.v1.AppTest`` on the bundled demo with default
settings: a warm-up run computes (or loads) fingerprints, embeddings, rankings and maps;
then the budget slider is moved to several values and each rerun is timed. A rerun must
recompute nothing heavy: every method's ranking is cached once and only sliced.

    python bench/app_rerun.py            # uses $MADS_CACHE_DIR or the user cache
    python bench/app_rerun.py --moves 9

Also prints what a move sends: the protobuf bytes of the budget fragment's elements (what a
browser receives per move: only the fragment reruns there), and of its charts.

Prints ``app_rerun: slider_rerun_s=<median seconds> payload_kib=<median>`` on the last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's ``select`` module.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import os  # noqa: E402
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
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue
    from streamlit.testing.v1 import AppTest

    sent = {"fragment": 0, "charts": 0}
    enqueue = ForwardMsgQueue.enqueue

    def measuring(self, msg):  # protobuf bytes the server sends for each element
        if msg.HasField("delta") and msg.delta.fragment_id:
            sent["fragment"] += msg.ByteSize()
            if msg.delta.HasField("new_element") and msg.delta.new_element.WhichOneof("type") == "plotly_chart":
                sent["charts"] += msg.ByteSize()
        return enqueue(self, msg)

    ForwardMsgQueue.enqueue = measuring
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    start = time.perf_counter()
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    if at.exception or at.error:
        print("app_rerun: the Compare page failed:", [e.value for e in (*at.exception, *at.error)])
        return 1
    print(f"warm-up (fingerprints, embeddings, rankings, maps as needed): {time.perf_counter() - start:.1f} s")
    values = [12.0, 5.0, 20.0, 8.5, 15.0, 3.0, 25.0, 10.0, 30.0, 6.0]
    slider_key = "w:budget.share:compare_pct"
    at.slider(key=slider_key).set_value(values[-1]).run()  # first move also warms small caches
    times, cpu, payload, charts = [], [], [], []
    for i in range(args.moves):
        slider = at.slider(key=slider_key)
        slider.set_value(values[i % len(values)])
        sent.update(fragment=0, charts=0)
        t0, c0 = time.perf_counter(), time.process_time()
        at.run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        payload.append(sent["fragment"])
        charts.append(sent["charts"])
        if at.exception:
            print("app_rerun: rerun failed:", [e.value for e in at.exception])
            return 1
    median = statistics.median(times)
    verdict = "meets" if median <= TARGET_S else "misses"
    load = os.getloadavg()[0]
    print(f"reruns: min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} moves of the budget slider "
          f"(default methods, demo 'default'); median {verdict} the {TARGET_S} s target; CPU median "
          f"{statistics.median(cpu):.3f} s; load average {load:.1f}")
    kib = statistics.median(payload) / 1024
    print(f"payload per move (the budget fragment, protobuf): {kib:.0f} KiB, of which charts "
          f"{statistics.median(charts) / 1024:.0f} KiB")
    print(f"app_rerun: slider_rerun_s={median:.3f} payload_kib={kib:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

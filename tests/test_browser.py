"""The app in a real headless Chromium: ``streamlit run app.py``, then a first-time user's path.

Opens the app on the bundled demo with default settings, goes to Compare (which
computes whatever is missing, with progress), moves the budget slider with the
keyboard, lassoes samples in the fingerprint map (linked views), checks that the
plotly charts render and that no exception is shown, and saves the screenshot the
README uses (``assets/compare.png``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "assets" / "compare.png"
FIRST_COMPARE_S = 1500  # from scratch it fingerprints, embeds and projects the demo: ~11 min seen on 2 cores at load 6

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"Chromium not installed at {CHROMIUM} "
                       "(CI installs it with `apt-get install -y chromium`)"),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(isolated_cache):
    """A headless ``streamlit run app.py`` on a free loopback port, sharing the test session's cache."""
    port = free_port()
    env = {**os.environ, "MADS_CACHE_DIR": str(isolated_cache), "PYTHONUNBUFFERED": "1"}
    log = open(isolated_cache / f"streamlit-{port}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextlib.contextmanager
def app_page(url: str, width: int, height: int):
    """A Chromium page on the app's first page (Data & model), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url, timeout=60_000)
            page.get_by_role("heading", name="Data & model").wait_for(timeout=120_000)
            yield page
        finally:
            browser.close()


def wait_until(check, timeout: float, what: str, poll: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    body = page.inner_text("body")
    assert "Traceback" not in body and "Unexpected error" not in body


def budget_caption(page) -> str:
    return page.get_by_text(re.compile(r"^k = [\d,]+ of N = ")).first.inner_text()


def settled(page, before: str, quiet_s: float = 3.0, timeout: float = 120) -> str:
    """The budget caption once it has changed from ``before`` and then stayed the same for ``quiet_s``."""
    wait_until(lambda: budget_caption(page) != before, timeout, "the budget to change")
    last, since = budget_caption(page), time.time()
    deadline = time.time() + timeout
    while time.time() - since < quiet_s and time.time() < deadline:
        time.sleep(0.3)
        now = budget_caption(page)
        if now != last:
            last, since = now, time.time()
    return last


def mads_points(page) -> int:
    return page.evaluate(
        "() => { const gd = document.querySelectorAll('.js-plotly-plot')[0];"
        " const tr = gd && gd._fullData && gd._fullData.find(t => (t.name || '').startsWith('MADS'));"
        " return tr ? tr.x.length : -1; }")


def test_first_time_user_reaches_compare_moves_the_budget_and_links_the_maps(app_url):
    with app_page(app_url, 1440, 1500) as page:
        wait_until(lambda: "Bundled demo default" in page.inner_text("body"), 120, "the demo preview")
        no_exception(page)

        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Compare").click()
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 6, FIRST_COMPARE_S,
                   "the Compare charts (maps, coverage, gains, metrics, categories)")
        no_exception(page)
        body = page.inner_text("body")
        for label in ("MADS", "random", "k-center TF-IDF", "k-center embeddings", "Neuron coverage vs budget"):
            assert label in body
        before = budget_caption(page)
        assert "(10.0%)" in before

        slider = page.get_by_role("slider").first
        slider.focus()
        for _ in range(50):  # +0.1% per key press
            slider.press("ArrowRight")
        after = settled(page, before)
        k_before = int(re.search(r"k = ([\d,]+)", before).group(1).replace(",", ""))
        k_after = int(re.search(r"k = ([\d,]+)", after).group(1).replace(",", ""))
        assert k_after > k_before
        # the map shows exactly the current budget's picks
        wait_until(lambda: mads_points(page) == k_after, 60, f"the map to show {k_after} MADS picks")
        no_exception(page)

        # lasso around a MADS point of the fingerprint map: the same samples get ringed in the text map
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        time.sleep(1)
        xy = page.evaluate("""() => {
            const gd = document.querySelectorAll('.js-plotly-plot')[0];
            const tr = gd._fullData.find(t => (t.name || '').startsWith('MADS'));
            const fl = gd._fullLayout, r = gd.getBoundingClientRect();
            return {x: r.left + fl._size.l + fl.xaxis.l2p(tr.x[0]), y: r.top + fl._size.t + fl.yaxis.l2p(tr.y[0])};
        }""")
        r = 25
        page.mouse.move(xy["x"] - r, xy["y"] - r)
        page.mouse.down()
        for dx, dy in ((r, -r), (r, r), (-r, r), (-r, -r)):
            page.mouse.move(xy["x"] + dx, xy["y"] + dy, steps=8)
        page.mouse.up()
        wait_until(lambda: "Linked selection:" in page.inner_text("body"), 60, "the linked selection")
        wait_until(lambda: page.evaluate(
            "() => { const gd = document.querySelectorAll('.js-plotly-plot')[1];"
            " return !!(gd && gd._fullData && gd._fullData.some(t => (t.name || '').startsWith('linked'))); }"),
            60, "the linked samples to be ringed in the text map")
        no_exception(page)

        page.locator(".main, [data-testid='stMain']").first.evaluate("el => el.scrollTo(0, 0)")
        page.get_by_role("heading", name="Compare selections").scroll_into_view_if_needed()
        time.sleep(1)
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 20_000



TEACH_SCREENSHOT = ROOT / "assets" / "teach.png"


def test_teaching_page_mid_walk_at_presenter_size(app_url):
    """'How MADS chooses' at 1280x720: step twice with the buttons, screenshot mid-walk."""
    with app_page(app_url, 1280, 720) as page:
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="How MADS chooses").click()
        page.get_by_role("heading", name="How MADS chooses").wait_for(timeout=120_000)
        step = page.get_by_role("button", name=re.compile("Step"))
        step.wait_for(timeout=600_000)
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 1, 600, "the fingerprint grid")
        for expected in (1, 2):
            step.click()
            wait_until(lambda e=expected: f"Pick {e}:" in page.inner_text("body"), 60, f"pick {expected}")
        no_exception(page)
        page.mouse.move(2, 700)  # no tooltip over the title in the screenshot
        time.sleep(1.5)
        TEACH_SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(TEACH_SCREENSHOT))
        assert TEACH_SCREENSHOT.stat().st_size > 20_000


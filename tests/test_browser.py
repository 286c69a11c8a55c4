"""The app in a real headless Chromium: ``streamlit run app.py``, then a first-time user's path.

The server gets an empty cache of its own (a fresh clone after ``make``: the bundled
model converted, nothing computed), so the first visit is served by the bundled demo
asset; the test logs how long the first chart and the full Compare page take
(``first_chart_s``, ``full_compare_s`` with the load average). Then, as a user would:
an error in the sidebar that passes (switch to "Upload a file" and back; a bad layer
spec, then fixed) must leave Compare's controls and computed methods as they were; the
budget slider moves with the keyboard; a lasso links the two maps; a click on a map
point opens that sample on Inspect; switching to another dataset and back keeps the
budget as a share. Saves the screenshots the README uses (``assets/*.png``).
"""

from __future__ import annotations

import contextlib
import json
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
def app_url(isolated_cache, tmp_path_factory):
    """A headless ``streamlit run app.py`` on a free loopback port with an empty cache of its own
    (converted models stay shared, as after ``make``)."""
    port = free_port()
    empty = tmp_path_factory.mktemp("browser-cache")
    env = {**os.environ, "MADS_CACHE_DIR": str(empty), "PYTHONUNBUFFERED": "1"}
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
            received: list[int] = []  # sizes of the websocket frames the server sent (payload per rerun)
            page.on("websocket", lambda ws: ws.on("framereceived", lambda data: received.append(len(data))))
            page.received = received
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


def log(line: str) -> None:
    """A line in the test's log (``pytest -s`` shows it live; pytest shows captured output on failure)."""
    print(line, flush=True)


def settle(page, quiet_s: float = 3.0, timeout: float = 300) -> None:
    """Wait until Streamlit is not running and the page's text has not changed for ``quiet_s``."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        now = page.inner_text("body")
        if running or now != last:
            last, since = now, time.time()
        elif time.time() - since >= quiet_s:
            return
        time.sleep(0.3)
    raise AssertionError(f"the page did not settle within {timeout:.0f} s")


def compare_state(page) -> dict:
    """Compare's controls as drawn, and the methods it computed (the coverage chart's curves)."""
    page.get_by_text("Map settings (UMAP)").first.scroll_into_view_if_needed()
    expander = page.locator('[data-testid="stExpander"]', has_text="Map settings (UMAP)").first
    if expander.locator('input').count() == 0 or not expander.locator('input').first.is_visible():
        page.get_by_text("Map settings (UMAP)").first.click()
    methods = page.locator('[data-testid="stMultiSelectTagsContainer"]').first.locator("[data-tag]")
    curves = page.evaluate("""() => {
        const gd = [...document.querySelectorAll('.js-plotly-plot')].find(
            g => ((g.layout && g.layout.title && g.layout.title.text) || '').includes('Neuron coverage'));
        return gd ? gd.data.filter(t => t.mode === 'lines').map(t => t.name) : null; }""")
    return {
        "methods": [methods.nth(i).get_attribute("aria-label") for i in range(methods.count())],
        "neighbours": number_input(page, "Neighbours"),
        "min_dist": number_input(page, "Minimum distance"),
        "svd": number_input(page, "SVD dims before UMAP"),
        "budget": budget_caption(page),
        "computed": curves,
    }


def steer_budget(page, slider, pct: float, tries: int = 200, settle_after: bool = True) -> None:
    """Press the slider's arrow keys until the budget caption reads ``pct`` and stays there."""
    for _ in range(tries):
        shown = float(re.search(r"\(([\d.]+)%\)", budget_caption(page)).group(1))
        if abs(shown - pct) < 0.05:
            if not settle_after:
                return
            settle(page)
            shown = float(re.search(r"\(([\d.]+)%\)", budget_caption(page)).group(1))
            if abs(shown - pct) < 0.05:
                return
        before = budget_caption(page)
        slider.focus()
        slider.press("ArrowRight" if shown < pct else "ArrowLeft")
        # one press at a time: wait for its rerun to show (a press landing mid-rerun may be dropped;
        # pressing on before the caption moves overshoots and oscillates on a busy machine)
        changed_by = time.time() + 10
        while time.time() < changed_by and budget_caption(page) == before:
            time.sleep(0.1)
    raise AssertionError(f"could not bring the budget slider to {pct}%")


def number_input(page, label: str) -> str:
    return page.locator('[data-testid="stNumberInput"]', has_text=label).first.locator("input").input_value()


def text_box(page, label: str):
    """The input of the sidebar text field labelled ``label``."""
    return page.get_by_test_id("stSidebar").locator('[data-testid="stTextInput"]', has_text=label).first \
        .locator("input")


def sidebar_radio(page, label: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(label, exact=True).click()


def test_first_time_user_reaches_compare_moves_the_budget_and_links_the_maps(app_url, tmp_path):
    with app_page(app_url, 1440, 1500) as page:
        opened = time.time()
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 1, 300, "the first chart")
        first_chart = time.time() - opened
        wait_until(lambda: "Bundled demo default" in page.inner_text("body"), 120, "the demo preview")
        assert "From the bundled demo asset" in page.inner_text("body")
        no_exception(page)

        clicked = time.time()
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Compare").click()
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 6, FIRST_COMPARE_S,
                   "the Compare charts (maps, coverage, gains, metrics, categories)")
        full_compare = time.time() - clicked
        load = os.getloadavg()
        log(f"browser timings (empty cache, demo asset): first_chart_s={first_chart:.1f} "
            f"full_compare_s={full_compare:.1f} load_avg_1m={load[0]:.1f} load_avg_5m={load[1]:.1f} "
            f"cores={os.cpu_count()}")
        no_exception(page)
        body = page.inner_text("body")
        for label in ("MADS", "random", "k-center TF-IDF", "k-center embeddings", "Neuron coverage vs budget"):
            assert label in body
        before = budget_caption(page)
        assert "(10.0%)" in before

        # issue 13 item 2: a passing sidebar error must reset nothing
        box = page.locator('[data-testid="stMultiSelect"]').first.locator("input")
        box.click()
        box.press("Backspace")  # removes the last chosen method, k-center embeddings
        box.press("Escape")
        settle(page)
        controls = compare_state(page)
        assert controls["methods"] == ["MADS", "random", "k-center TF-IDF"], controls
        assert controls["computed"] == ["MADS", "random", "k-center TF-IDF"], controls
        sidebar_radio(page, "Upload a file")
        wait_until(lambda: "Settings problem" in page.inner_text("body"), 60, "the settings problem")
        sidebar_radio(page, "Bundled demo")
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 6, 300, "Compare again")
        settle(page)
        assert compare_state(page) == controls
        page.get_by_test_id("stSidebar").get_by_text("Fingerprint settings").click()
        layers = text_box(page, "Layers")
        layers.fill("0-x")
        layers.press("Enter")
        wait_until(lambda: "Settings problem" in page.inner_text("body"), 60, "the layer problem")
        layers.fill("all")
        layers.press("Enter")
        wait_until(lambda: page.locator(".js-plotly-plot").count() >= 6, 300, "Compare again")
        settle(page)
        assert compare_state(page) == controls
        no_exception(page)

        slider = page.get_by_role("slider").first
        slider.focus()
        for _ in range(20):  # +0.1% per key press; a press that lands during a rerun may be dropped
            slider.press("ArrowRight")
        settled(page, before)
        steer_budget(page, slider, 15.0)
        after = budget_caption(page)
        k_before = int(re.search(r"k = ([\d,]+)", before).group(1).replace(",", ""))
        k_after = int(re.search(r"k = ([\d,]+)", after).group(1).replace(",", ""))
        assert k_after > k_before and "(15.0%)" in after
        wait_until(lambda: mads_points(page) == k_after, 60, f"the map to show {k_after} MADS picks")
        no_exception(page)
        # one more step: what a single slider move costs end to end, and what it re-sends (a fragment rerun)
        settle(page)
        sent_before, moved = len(page.received), time.time()
        steer_budget(page, slider, 14.9, settle_after=False)  # one step: 14.9% of 718 = 107 picks
        # polled every 20 ms (the default 0.5 s poll would add up to half a second to the measurement)
        wait_until(lambda: mads_points(page) == k_after - 1, 120, "the slider step to reach the map", poll=0.02)
        move_s = time.time() - moved
        settle(page)
        log(f"browser slider move: end_to_end_s={move_s:.2f} payload_bytes={sum(page.received[sent_before:])} "
            f"load_avg_1m={os.getloadavg()[0]:.1f}")
        steer_budget(page, slider, 15.0)
        wait_until(lambda: mads_points(page) == k_after, 120, "the slider back at 15%")

        # lasso (from the map's toolbar) around a MADS point of the fingerprint map: ringed in the text map
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        time.sleep(1)
        plot.hover()
        plot.locator('[data-title="Lasso Select"]').click()
        xy = point_xy(page)
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

        # issue 13 item 1: a click on a map point opens that sample (on Inspect)
        page.get_by_role("button", name="Clear linked selection").first.click()  # no rings over the points
        wait_until(lambda: "Linked selection:" not in page.inner_text("body"), 60, "the linked selection cleared")
        settle(page)
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        plot.hover()
        plot.locator('[data-title="Pan"]').click()  # leave the lasso: clicks select points again
        time.sleep(1)
        xy = point_xy(page, index=loneliest_mads_point(page))  # no other point near it: the click is unambiguous
        page.mouse.move(xy["x"], xy["y"])
        time.sleep(0.5)
        page.mouse.click(xy["x"], xy["y"])
        wait_until(lambda: "Inspect the picks" in page.inner_text("body"), 120, "the click to open Inspect")
        wait_until(lambda: "Sample row" in page.inner_text("body"), 120, "the clicked sample to open")
        opened = int(re.search(r"Sample row ([\d,]+)", page.inner_text("body")).group(1).replace(",", ""))
        assert opened == xy["row"], (opened, xy)
        assert page.get_by_role("heading", name="Inspect the picks").count() == 1
        no_exception(page)
        settle(page)
        page.screenshot(path=str(INSPECT_SCREENSHOT))

        # issue 13 item 3: the budget is a share across datasets (15% of 12 samples, then 15% of the demo again)
        sidebar_radio(page, "Local path")
        path = tmp_path / "tiny.jsonl"
        path.write_text("".join(json.dumps({"instruction": q, "input": "", "output": a}) + "\n" for q, a in TINY),
                        encoding="utf-8")
        box = text_box(page, "Path to a records file")
        box.fill(str(path))
        box.press("Enter")
        wait_until(lambda: "of N = 12 samples" in page.inner_text("body"), 600, "the 12-sample file's budget")
        assert "k = 2 of N = 12 samples (16.7%)" in budget_caption(page)
        sidebar_radio(page, "Bundled demo")
        wait_until(lambda: "of N = 718 samples" in page.inner_text("body"), 300, "the demo's budget")
        assert budget_caption(page).startswith(f"k = {k_after} of N = 718 samples (15.0%)")
        no_exception(page)


TINY = [("Name three primary colors.", "Red, yellow and blue."), ("What is 7 times 8?", "56."),
        ("Translate 'cat' to French.", "Chat."), ("Write a haiku about rain.", "Soft rain taps the roof"),
        ("Who wrote Hamlet?", "William Shakespeare."), ("Give a synonym for fast.", "Quick."),
        ("What is the capital of Peru?", "Lima."), ("Define photosynthesis.", "Plants turning light into food."),
        ("Convert 3 km to meters.", "3000 meters."), ("Suggest a name for a dog.", "Biscuit."),
        ("Why is the sea salty?", "Rivers carry dissolved minerals into it."),
        ("Spell 'necessary'.", "N-E-C-E-S-S-A-R-Y.")]
INSPECT_SCREENSHOT = ROOT / "assets" / "inspect.png"


def loneliest_mads_point(page) -> int:
    """Index of the MADS point of the fingerprint map farthest from every other drawn point."""
    return page.evaluate("""() => {
        const gd = document.querySelectorAll('.js-plotly-plot')[0];
        const all = [];
        gd._fullData.forEach(t => {
            for (let i = 0; i < t.x.length; i++) all.push([t.x[i], t.y[i], t.customdata[i]]); });
        const tr = gd._fullData.find(t => (t.name || '').startsWith('MADS'));
        let best = 0, bestGap = -1;
        for (let i = 0; i < tr.x.length; i++) {
            let gap = Infinity;
            for (const [x, y, row] of all) {
                if (row === tr.customdata[i]) continue;
                gap = Math.min(gap, Math.hypot(gd._fullLayout.xaxis.l2p(x) - gd._fullLayout.xaxis.l2p(tr.x[i]),
                                               gd._fullLayout.yaxis.l2p(y) - gd._fullLayout.yaxis.l2p(tr.y[i])));
            }
            if (gap > bestGap) { bestGap = gap; best = i; }
        }
        return best; }""")


def point_xy(page, index: int = 0) -> dict:
    """Screen position and row id of the ``index``-th MADS point of the fingerprint map."""
    return page.evaluate("""(i) => {
        const gd = document.querySelectorAll('.js-plotly-plot')[0];
        const tr = gd._fullData.find(t => (t.name || '').startsWith('MADS'));
        const fl = gd._fullLayout, r = gd.getBoundingClientRect();
        return {x: r.left + fl._size.l + fl.xaxis.l2p(tr.x[i]), y: r.top + fl._size.t + fl.yaxis.l2p(tr.y[i]),
                row: Number(tr.customdata[i])};
    }""", index)


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


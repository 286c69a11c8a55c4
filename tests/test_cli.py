"""The command line, run as a user runs it: a real subprocess, the real model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mads_core.cli import main, parse_layers

ROOT = Path(__file__).resolve().parents[1]

QUESTIONS = [
    "Name three primary colors.",
    "What is the capital of Japan?",
    "Give me a synonym for happy.",
    "How many legs does a spider have?",
    "Write a short greeting for a birthday card.",
    "What does CPU stand for?",
    "Convert 10 kilometres to miles.",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water at sea level?",
    "Suggest a name for a pet goldfish.",
    "What is the square root of 144?",
    "List two renewable energy sources.",
    "Describe the color blue to someone who cannot see.",
    "Why is the sky blue?",
    "Give an example of a mammal that can fly.",
    "Summarise the plot of Cinderella in one sentence.",
]


def write_alpaca_jsonl(path: Path, n: int = 16) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i, q in enumerate(QUESTIONS[:n]):
            fh.write(json.dumps({"instruction": q, "input": "", "output": f"Answer number {i}: " + q[::-1]}) + "\n")
    return path


def run_cli(*args: str, cache: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "MADS_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "mads_core", *args], capture_output=True, text=True, env=env, cwd=ROOT, **kw
    )


def test_parse_layers():
    assert parse_layers("all") is None
    assert parse_layers("0-3,7") == (0, 1, 2, 3, 7)
    assert parse_layers("-1") == (-1,)


def test_bad_input_exits_2_with_one_line_reason(tmp_path, capsys):
    assert main(["fingerprint", "--data", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.jsonl" in err and "\n" not in err

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "ok", "output": "fine"}\n{"instruction": 5, "output": "x"}\n')
    assert main(["fingerprint", "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jsonl" in err and "2" in err and "instruction" in err

    good = write_alpaca_jsonl(tmp_path / "good.jsonl", 2)
    assert main(["fingerprint", "--data", str(good), "--layers", "0,99"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["fingerprint", "--data", str(good), "--model", "./no/such/model"]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.model
def test_killed_run_resumes_with_only_missing_chunks(tmp_path):
    """Kill -9 mid-run, run again: cached chunks are reused, the result equals an uninterrupted run."""
    data = write_alpaca_jsonl(tmp_path / "sixteen.jsonl")
    common = ["fingerprint", "--data", str(data), "--chunk-size", "2", "--batch-size", "1", "--json"]
    cache = tmp_path / "cache"
    env = {**os.environ, "MADS_CACHE_DIR": str(cache)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mads_core", *common],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            done = list(cache.glob("fingerprints/*/chunks/c2-*/meta.json"))
            if len(done) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed; use a slower setting")
            time.sleep(0.05)
        else:
            pytest.fail("no chunk was committed in time")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    n_before = len(list(cache.glob("fingerprints/*/chunks/c2-*/meta.json")))
    assert 2 <= n_before < 8, n_before
    assert not list(cache.glob("fingerprints/*/result/meta.json"))

    resumed = run_cli(*common, cache=cache, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["chunks_cached"] == n_before
    assert report["chunks_computed"] == 8 - n_before
    assert not report["cache_hit"]

    fresh = run_cli(*common, cache=tmp_path / "fresh", timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    a = np.load(Path(report["cache_path"]) / "planes.npy")
    b = np.load(Path(json.loads(fresh.stdout.strip().splitlines()[-1])["cache_path"]) / "planes.npy")
    assert np.array_equal(a, b)

    again = run_cli(*common, cache=cache, timeout=600)
    hit = json.loads(again.stdout.strip().splitlines()[-1])
    assert hit["cache_hit"] and hit["chunks_computed"] == 0 and hit["samples_computed"] == 0


@pytest.mark.model
def test_text_report_names_n_d_rates_cache(tmp_path):
    data = write_alpaca_jsonl(tmp_path / "four.jsonl", 4)
    args = ["fingerprint", "--data", str(data), "--layers", "0-3"]
    first = run_cli(*args, cache=tmp_path / "c", timeout=600)
    assert first.returncode == 0, first.stderr
    assert "N=4 samples" in first.stdout and "D=6144 neurons" in first.stdout
    assert "firing per sample" in first.stdout and "cache: miss" in first.stdout
    second = run_cli(*args, cache=tmp_path / "c", timeout=600)
    assert "cache: hit (no forward pass)" in second.stdout

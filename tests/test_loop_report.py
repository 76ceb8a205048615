"""DishBrain's metrics on a loop's ticks (rallies, T1 / T2) and `prclab report` on a loop recording."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prclab.cli import main
from prclab.experiments.loop_report import is_loop_recording
from prclab.protocols.loop import rally_lengths, rally_stats, t1_t2_stats

HIT, MISS = 1, 2


def events(ticks: int, at: dict) -> np.ndarray:
    e = np.zeros(ticks, int)
    for k, v in at.items():
        e[k] = v
    return e


def test_rallies_and_the_unfinished_last_one():
    e = events(1000, {10: HIT, 20: HIT, 30: MISS, 40: MISS, 50: HIT, 60: HIT, 70: HIT, 80: HIT, 90: MISS})
    hits, end_s, unfinished = rally_lengths(e, 0.01)
    assert hits.tolist() == [2, 0, 4] and end_s.tolist() == pytest.approx([0.31, 0.41, 0.91]) and not unfinished
    s = rally_stats(e, 0.01)
    assert s["rallies"] == 3 and s["mean_rally_length"] == 2.0 and s["aces_fraction"] == pytest.approx(1 / 3)
    assert s["long_rally_fraction"] == pytest.approx(1 / 3) and (s["hits"], s["misses"]) == (6, 3)
    # a player that never misses: one rally of all its hits, still going at the end (a lower bound)
    never = events(1000, {100: HIT, 500: HIT, 900: HIT})
    s = rally_stats(never, 0.01)
    assert s["rallies"] == 1 and s["mean_rally_length"] == 3 and s["unfinished_rally"]
    assert s["mean_rally_length_last_5min"] == 3
    # an approach still going with no hit yet is no rally (it may yet be an ace)
    assert rally_stats(events(1000, {10: HIT, 20: MISS}), 0.01)["rallies"] == 1
    assert math.isnan(rally_stats(np.zeros(100, int), 0.01)["mean_rally_length"])


def test_t1_is_the_first_five_minutes_t2_the_rest():
    tick = 0.01
    at = {int(60 / tick): HIT, int(100 / tick): MISS,  # ends in minute 2: T1
          int(400 / tick): HIT, int(410 / tick): HIT, int(420 / tick): HIT, int(430 / tick): HIT,
          int(500 / tick): MISS, int(600 / tick): MISS}  # end after minute 5: T2
    s = t1_t2_stats(events(int(1200 / tick), at), tick)
    assert s["T1"]["hits_per_rally"] == [1] and s["T2"]["hits_per_rally"] == [4, 0]
    assert s["T2"]["mean_rally_length"] == 2.0 and s["T2"]["aces_fraction"] == 0.5
    assert s["T2"]["long_rally_fraction"] == 0.5 and s["T1"]["aces_fraction"] == 0.0
    assert t1_t2_stats(events(int(1200 / tick), at), tick, split_s=30.0)["T1"]["rallies"] == 0


LOOP = """
[protocol]
name = "loop-report"
sample_rate_hz = 1000.0
seed = 1
[device]
spec = "sim:esn"
[substrate.params]
units = 16
[stimulus]
electrodes = 8
low_V = -0.5
high_V = 0.5
[loop]
duration_s = 12.0
flush_ticks = 200
decoder = "random"
[environment]
name = "pong"
[feedback]
mode = "stimulus"
"""


def test_report_on_a_loop_recording_draws_rallies_latency_t1_t2_and_activity(tmp_path, capsys):
    (tmp_path / "p.toml").write_text(LOOP)
    rec = tmp_path / "loop.h5"
    assert main(["loop", str(tmp_path / "p.toml"), "--out", str(rec), "--json"]) == 0
    capsys.readouterr()
    assert is_loop_recording(rec) and not is_loop_recording(tmp_path / "p.toml")
    assert main(["report", str(rec), "--out", str(tmp_path / "rep")]) == 0
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"rally_length.png", "t1_t2.png", "latency.png", "activity.png", "summary.md"} <= files
    summary = (tmp_path / "rep" / "summary.md").read_text()
    assert "| ticks | 1200 |" in summary and "condition ([feedback] mode) | stimulus" in summary
    assert "latency p50 / p99 / max (ms)" in summary and "random paddle, hits per rally" in summary
    for name in ("rally_length.png", "latency.png", "activity.png"):
        assert f"({name})" in summary and (tmp_path / "rep" / name).stat().st_size > 1000

"""bench.report: a stage's comparison against the physical limit plus the S3 floor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bedrock_assets_tests.helpers import ROOT
from bench.daemon_path import RunRow
from bench.report import Comparison, StageRun


def run(stage: str, seconds: float) -> StageRun:
    return StageRun(stage, 1000, seconds, 1000, 0, 100.0, seconds, 0.0, {})


def test_a_comparison_is_ours_over_limit_plus_floor_and_says_by_how_much():
    met = Comparison("merge", 1000, 1.3, run("merge", 2.6), run("merge_limit", 1.5), run("merge_floor", 0.5))
    assert (met.bound_s, met.ratio, met.met) == (2.0, 1.3, True)
    assert met.verdict() == "met (0.00 s to spare)"
    missed = Comparison("prep", 1000, 1.3, run("prep", 3.0), run("prep_limit", 1.5), run("prep_floor", 0.5))
    assert missed.verdict() == "missed by 0.40 s (15% over)"
    assert missed.json()["met"] is False and missed.json()["ratio"] == 1.5


def test_a_comparison_with_a_failed_stage_says_so_and_computes_nothing():
    failed = Comparison("merge", 1000, 1.3, run("merge", 2.6), None, run("merge_floor", 0.5))
    assert not failed.complete
    assert "FAILED" in failed.line() and failed.json() == {
        "stage": "merge",
        "size": 1000,
        "target": 1.3,
        "failed": True,
    }
    with pytest.raises(ValueError, match="merge at 1,000 rows: a stage failed"):
        failed.ratio  # noqa: B018


def test_a_run_has_a_span_only_once_it_started_and_ended():
    row = RunRow("r", "j", "p", "merge", "s00000", "SUCCESS", 1.0, 2.0, 3.0, 5.0)
    assert row.span == (3.0, 5.0)
    assert RunRow("r", "j", "p", "merge", "s00000", "STARTED", 1.0, 2.0, 3.0, None).span is None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_a_childs_peak_rss_is_its_own_not_what_its_parent_held_at_the_fork():
    held = bytearray(256 * 2**20)  # the parent holds 256 MiB, every page touched
    held[::4096] = b"\1" * len(range(0, len(held), 4096))
    child = "import resource; from bench.report import peak_rss_kb; print(peak_rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    own, maxrss = (int(v) / 1024 for v in out.split())
    assert maxrss >= 256 > 128 > own  # ru_maxrss carries the parent's 256 MiB; the child's own peak is far below
    del held

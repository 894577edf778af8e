"""bench.before_after's own decisions: which side runs first, and the medians it reports."""

from __future__ import annotations

from bench.before_after import Timing, order, parse_args, summary


def test_the_sides_alternate_which_runs_first():
    assert [order(p) for p in range(4)] == [("before", "after"), ("after", "before")] * 2


def test_the_summary_gives_each_sides_median_fastest_and_median_cpu():
    timings = [Timing("before", 6.0, 7.0), Timing("after", 5.0, 6.5), Timing("before", 6.4, 7.4)]
    timings += [Timing("after", 5.2, 6.1), Timing("before", 9.0, 7.2), Timing("after", 4.9, 6.0)]
    assert summary(timings) == [
        "before median 6.40 s (fastest 6.00 s), median CPU 7.20 s",
        "after  median 5.00 s (fastest 4.90 s), median CPU 6.10 s",
    ]


def test_the_stage_and_revision_are_required_and_merge_stages_are_known():
    args = parse_args(["--before", "HEAD~1", "--stage", "merge", "--pairs", "3"])
    assert (args.before, args.stage, args.pairs, args.rows) == ("HEAD~1", "merge", 3, 220_000)

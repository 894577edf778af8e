"""bench.run's arguments: the side by side at each of several row counts, with its pairs."""

import pytest

from bench.run import parse_args


def test_one_pair_count_serves_every_side_by_side() -> None:
    args = parse_args(["--aws-sample-rows", "220000,2_200_000", "--aws-sample-pairs", "3"])
    assert args.aws_sample_rows == [220_000, 2_200_000]
    assert args.aws_sample_pairs == [3, 3]


def test_pairs_per_row_count() -> None:
    args = parse_args(["--aws-sample-rows", "220000,2200000", "--aws-sample-pairs", "4,2"])
    assert list(zip(args.aws_sample_rows, args.aws_sample_pairs)) == [(220_000, 4), (2_200_000, 2)]


def test_defaults_are_one_side_by_side_at_220k() -> None:
    args = parse_args([])
    assert (args.aws_sample_rows, args.aws_sample_pairs) == ([220_000], [4])
    assert args.sizes == [220_000, 2_200_000]


def test_pair_counts_that_do_not_match_the_row_counts_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--aws-sample-rows", "220000,2200000", "--aws-sample-pairs", "4,2,1"])
    assert "one per --aws-sample-rows" in capsys.readouterr().err

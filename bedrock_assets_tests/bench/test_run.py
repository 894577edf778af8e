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


@pytest.mark.parametrize("argv", [["--aws-sample-pairs", "0"], ["--aws-sample-rows", "220000,-5"], ["--sizes", "0"]])
def test_counts_below_one_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "counts must be 1 or more" in capsys.readouterr().err


def test_a_side_by_side_needs_a_row_count(capsys: pytest.CaptureFixture[str]) -> None:
    sample = ["--aws-sample-dir", "lambda", "--aws-sample-python", "python"]
    with pytest.raises(SystemExit):
        parse_args([*sample, "--aws-sample-rows", ""])
    assert "need at least one count each" in capsys.readouterr().err
    assert parse_args(["--sizes", ""]).sizes == []  # only the end-to-end run

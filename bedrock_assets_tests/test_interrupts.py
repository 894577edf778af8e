"""SIGINT and SIGTERM reach the headless run's work as a stop request; a second one ends the wait at once."""

from __future__ import annotations

import os
import signal

import pytest

from bedrock_assets.interrupts import StoppedAtOnce, StopRequest, run_until_signalled


def test_a_signal_asks_the_work_to_stop_and_the_work_says_where_it_stopped():
    def work(stop: StopRequest) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        return stop.signal

    assert run_until_signalled(work) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not None  # the handlers are put back


def test_a_second_signal_stops_waiting_at_once():
    def work(stop: StopRequest) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        stop.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        stop.wait(30)  # never over: the main thread gave up waiting

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(StoppedAtOnce) as stopped:
        run_until_signalled(work)
    assert (stopped.value.signal, stopped.value.number) == ("SIGINT", signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_errors_of_the_work_reach_the_caller():
    def work(_: StopRequest) -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_until_signalled(work)

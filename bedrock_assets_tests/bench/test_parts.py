"""bench.parts: each part's CPU is its own calls' less the wrapped calls inside them, per thread."""

from __future__ import annotations

import threading

from bench.parts import PartClock, table


class FakeClock:
    """A CPU clock per thread that the test advances."""

    def __init__(self) -> None:
        self.now: dict[int, float] = {}

    def __call__(self) -> float:
        return self.now.get(threading.get_ident(), 0.0)

    def burn(self, seconds: float) -> None:
        me = threading.get_ident()
        self.now[me] = self.now.get(me, 0.0) + seconds


def test_a_part_counts_its_own_cpu_not_that_of_the_wrapped_calls_inside_it():
    fake = FakeClock()
    clock = PartClock(fake)
    inner = clock.wrap(lambda: fake.burn(2.0), "inner")
    outer = clock.wrap(lambda: (fake.burn(1.0), inner(), fake.burn(0.5)), "outer")
    outer()
    outer()
    assert clock.spent == {"outer": 3.0, "inner": 4.0}
    assert clock.calls == {"outer": 2, "inner": 2}


def test_a_generator_is_counted_item_by_item_and_threads_apart():
    fake = FakeClock()
    clock = PartClock(fake)

    def batches():
        for _ in range(3):
            fake.burn(1.0)
            yield "batch"
        fake.burn(0.25)  # the last step, up to StopIteration

    wrapped = clock.wrap(batches, "source")
    consumer = clock.wrap(lambda: [fake.burn(10.0) for _ in wrapped()], "consumer")
    worker = threading.Thread(target=consumer)
    worker.start()
    worker.join()
    labelled = clock.wrap(lambda *a: fake.burn(0.5), lambda args: f"call {args[0]}")
    labelled("PutObject")
    assert clock.spent == {"source": 3.25, "consumer": 30.0, "call PutObject": 0.5}
    assert clock.calls["source"] == 4  # three items and the end


def test_the_table_puts_what_no_part_holds_in_the_rest():
    result = {"client_cpu_s": 2.0, "seconds": 1.5, "parts": {"a": 1.2, "b": 0.3}, "calls": {"a": 5, "b": 1}}
    lines = table(result)
    assert lines[2] == "| a | 5 | 1.200 | 60% |" and lines[3] == "| b | 1 | 0.300 | 15% |"
    assert lines[4] == "| rest (Arrow's thread pools, code not wrapped) | | 0.500 | 25% |"


def test_threads_inside_wrapped_calls_at_once_count_apart():
    fake = FakeClock()
    clock = PartClock(fake)
    inside, done = threading.Event(), threading.Event()

    def waits_for_worker():
        fake.burn(1.0)
        inside.set()
        done.wait(5)  # the worker's call runs while this one is open
        fake.burn(1.0)

    def worker_call():
        inside.wait(5)
        fake.burn(7.0)
        done.set()

    worker = threading.Thread(target=clock.wrap(worker_call, "worker"))
    worker.start()
    clock.wrap(waits_for_worker, "main")()
    worker.join()
    assert clock.spent == {"main": 2.0, "worker": 7.0}  # neither is the other's inner call


def test_a_wrapped_generator_keeps_its_return_value():
    clock = PartClock(FakeClock())

    def counted():
        yield 1
        return "done"

    def outer():
        result = yield from clock.wrap(counted, "gen")()
        yield result

    assert list(outer()) == [1, "done"]

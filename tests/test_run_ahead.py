"""run_ahead: a generator making its next items in a thread of its own, a bounded number ahead."""
import threading
import time

import pytest

from nbcore.worker import run_ahead


class Recorder:
    """A generator's log of what it made, and in which thread; ``finished`` is set when it ends or is closed."""

    def __init__(self):
        self.made = []
        self.threads = set()
        self.finished = threading.Event()

    def generate(self, count, fail_at=None):
        try:
            for item in range(count):
                self.threads.add(threading.get_ident())
                if item == fail_at:
                    raise KeyError(item)
                self.made.append(item)
                yield item
        finally:
            self.finished.set()

    def settled(self, count):
        """Wait until ``count`` items were made, and a little longer; return how many were made."""
        deadline = time.monotonic() + 5
        while len(self.made) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        return len(self.made)


def test_items_come_in_order_made_in_one_other_thread():
    recorder = Recorder()
    assert list(run_ahead(recorder.generate(20), 3)) == list(range(20))
    assert len(recorder.threads) == 1 and threading.get_ident() not in recorder.threads


def test_nothing_is_made_before_the_first_next_and_at_most_items_ahead_after_it():
    recorder = Recorder()
    frames = run_ahead(recorder.generate(100), 2)
    assert recorder.settled(0) == 0
    assert next(frames) == 0
    assert recorder.settled(3) == 3, "taken 1, made up to 2 ahead"
    assert next(frames) == 1 and next(frames) == 2
    assert recorder.settled(5) == 5


def test_an_error_is_raised_at_its_item_and_ends_the_iteration():
    recorder = Recorder()
    frames = run_ahead(recorder.generate(10, fail_at=2), 4)
    assert next(frames) == 0 and next(frames) == 1
    with pytest.raises(KeyError):
        next(frames)
    assert list(frames) == []
    assert recorder.finished.is_set()


def test_dropping_it_closes_the_generator():
    recorder = Recorder()
    frames = run_ahead(recorder.generate(1000), 1)
    next(frames)
    del frames
    assert recorder.finished.wait(5), "the generator's finally did not run"
    assert recorder.settled(0) <= 3


@pytest.mark.parametrize("items", [0, -1, 1.5, None])
def test_items_must_be_a_positive_whole_number(items):
    with pytest.raises(ValueError, match="items >= 1"):
        run_ahead([], items)

"""Iterators that make their next items while the current one is being used.

A generator returned to the host makes one item per ``next()``: while the item
crosses to the host the generator waits, and while the generator makes the
next item the host waits.  :func:`run_ahead` overlaps the two: the generator
runs in a thread of its own and may be up to ``items`` items ahead of the
``next()`` calls.  What that changes:

- Side effects of an item (files written, counters moved) happen up to
  ``items`` items before the host asks for it; when the host stops early, the
  items made ahead are dropped.
- Cancellation: a cancelled ``next()`` cancels the whole iteration, as
  without run-ahead; the generator sees :func:`is_cancelled` turn true in the
  item it is making, which may be one the host has not asked for yet.
- The generator runs in one thread of its own (the same thread for every
  item): state bound to a thread (a current OpenGL context, a
  ``torch.no_grad()`` block entered outside the generator) must be set up
  inside it.  Host callables may be called only while the host waits in a
  ``next()``, as for any code in the worker.
- Dropping the iterator (the host dropping its proxy) stops the thread after
  the item in progress and closes the generator there.

This module is worker-side code: standard library only.
"""
import collections
import threading

from . import cancel

#: What the queue holds: ``(_ITEM, item)``, ``(_FAILED, exception)``, then ``(_END, None)`` for good.
_ITEM, _FAILED, _END = "item", "failed", "end"


class RunAhead:
    """An iterator over ``iterable`` that makes up to ``items`` items before they are asked for.

    Nothing runs before the first ``next()``.  An exception of the iterable is
    raised by the ``next()`` that would have returned the item it failed to
    make; the iteration ends there.
    """

    _producer = _source = None

    def __init__(self, iterable, items=1):
        if not isinstance(items, int) or items < 1:
            raise ValueError("run_ahead needs items >= 1 (the number of items made before they are asked for), "
                             "got %r" % (items,))
        self._source = iter(iterable)
        self._items = items

    def __iter__(self):
        return self

    def __next__(self):
        producer = self._producer
        if producer is None:
            if self._source is None:
                raise StopIteration
            # the thread answers to the cancellation of the iteration this next() belongs to
            producer = self._producer = _Producer(self._source, self._items, cancel._current())
            self._source = None
        return producer.take()

    def close(self):
        """Stop making items and close the iterable (after the item in progress)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stop()
        self._source = None

    def __del__(self):
        self.close()


def run_ahead(iterable, items=1):
    """Iterate over ``iterable`` in a thread of its own, up to ``items`` items ahead (see :class:`RunAhead`)."""
    return RunAhead(iterable, items)


class _Producer:
    """The thread making the items, and the queue between it and ``next()``."""

    def __init__(self, source, items, call):
        self._source = source
        self._items = items
        self._call = call
        self._queue = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._stopped = False
        threading.Thread(target=self._run, name="nbcore-run-ahead", daemon=True).start()

    def take(self):
        with self._ready:
            while not self._queue:
                self._ready.wait()
            kind, value = self._queue[0]
            if kind is _ITEM:
                self._queue.popleft()
                self._ready.notify()
                return value
            self._queue[0] = (_END, None)  # every later next() ends
        if kind is _END:
            raise StopIteration
        try:
            raise value
        finally:
            value = None

    def stop(self):
        with self._ready:
            self._stopped = True
            self._queue.clear()
            self._ready.notify_all()

    def _run(self):
        cancel._adopt(self._call)
        source, ready, queue = self._source, self._ready, self._queue
        self._source = None
        try:
            while True:
                with ready:
                    while len(queue) >= self._items and not self._stopped:
                        ready.wait()
                    if self._stopped:
                        return
                try:
                    item = (_ITEM, next(source))
                except StopIteration:
                    item = (_END, None)
                except BaseException as exc:  # the host sees every failure, as from a plain generator
                    item = (_FAILED, exc)
                with ready:
                    if self._stopped:
                        return
                    queue.append(item)
                    ready.notify()
                    if item[0] is not _ITEM:
                        return
                item = None
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

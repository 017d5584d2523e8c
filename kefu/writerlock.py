"""The in-process lock of SQLite's write transactions, which says who holds it.

Under gevent's patching ``threading.RLock`` is the pure-Python ``_PyRLock``, whose
owner is gevent's ``get_ident()`` (a Python call on each acquire and release), and
asking it whether the caller holds it is a private method and two Python calls. The
group commit asks on every message (a caller already in a transaction holds this lock,
which the batcher would wait for, so its job runs in that transaction instead): here
that is one attribute read, ``lock.holder is getcurrent()``.
"""

import threading

from greenlet import getcurrent


class WriterLock:
    """Reentrant, as ``threading.RLock``, for greenlets and threads alike: each thread
    is its own ``getcurrent()`` (its main greenlet) wherever it runs no other."""

    __slots__ = ("_depth", "_lock", "holder")

    def __init__(self):
        self._lock = threading.Lock()  # gevent's, once gevent has patched threading
        self._depth = 0
        self.holder = None  # the greenlet that holds it

    def __enter__(self):
        me = getcurrent()
        if self.holder is not me:  # only the holder itself could have made it ``me``
            self._lock.acquire()
            self.holder = me
        self._depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self._depth -= 1
        if not self._depth:
            self.holder = None
            self._lock.release()

"""kefu.writerlock: reentrant, says who holds it, and keeps other threads out."""

import threading

from greenlet import getcurrent

from kefu.writerlock import WriterLock


def test_the_holder_reenters_and_holds_it_until_the_outermost_exit():
    lock = WriterLock()
    assert lock.holder is None
    with lock:
        assert lock.holder is getcurrent()
        with lock:
            assert lock.holder is getcurrent()
        assert lock.holder is getcurrent()
    assert lock.holder is None


def test_another_thread_waits_for_it_and_is_not_its_holder():
    lock = WriterLock()
    seen = {}
    entered = threading.Event()

    def other():
        seen["holder_before"] = lock.holder is getcurrent()
        with lock:
            entered.set()
            seen["holder_inside"] = lock.holder is getcurrent()

    with lock:
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.2)  # kept out while this thread holds it
    thread.join(5)
    assert entered.is_set()
    assert seen == {"holder_before": False, "holder_inside": True}
    assert lock.holder is None


def test_an_exception_inside_releases_it():
    lock = WriterLock()
    try:
        with lock, lock:
            raise ValueError
    except ValueError:
        pass
    assert lock.holder is None
    assert lock._lock.acquire(blocking=False)

"""Rows as the group commit's own connection last wrote them, kept between its batches.

Every message sent reads its conversation's row (who is in it, open or not, the
counters) before it writes the next one, and on SQLite that read costs about as much
as the UPDATE it precedes. Yet the row read is almost always the one the previous
message of that conversation just wrote on the same connection. So the batcher keeps
what its jobs wrote and read, and a job reads the database only for a row it does not
hold. (A send keeps its conversation's ``Target``, the row with its people, and brings
it up to date when it writes: kefu/services/targets.py.)

What is kept is exactly what the database holds, because it is dropped whenever
anything else could have changed a row:

- another connection committed (another pooled connection of this worker, the CLI,
  any other process): SQLite's ``PRAGMA data_version``, read once at the start of each
  batch under the writer lock, changes then (and only then, or after a WAL reset);
- the batcher's connection changed;
- a batch was rolled back, a job failed, or a job ran that does not keep the rows it
  writes up to date (only jobs marked with ``keeps_rows`` do; every other one empties
  the memo when it returns).

Only the batcher's jobs see a memo (``current()``): everything else reads the database.
"""

from greenlet import getcurrent

_active = {"greenlet": None, "memo": None}  # the batch job running now, and its memo


class RowMemo:
    MAX = 10_000  # rows; emptied when full

    def __init__(self):
        self._rows: dict = {}  # emptied in place, never replaced: ``get`` is its method
        # The dict's own get, not a method that calls it: every message's send reads.
        self.get = self._rows.get
        self._connection = None
        self._version = None

    def begin(self, connection) -> None:
        """At the start of a batch, holding the writer lock: keep the rows only if no
        other connection has committed since this one last looked."""
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        if connection is not self._connection or version != self._version:
            self._rows.clear()
            self._connection, self._version = connection, version

    def forget(self) -> None:
        self._rows.clear()

    def put(self, key, row) -> None:
        if len(self._rows) >= self.MAX:
            self._rows.clear()
        self._rows[key] = row


def keeps_rows(job):
    """Mark a group-commit job that puts every row it changes into the memo (or changes
    none that anyone keeps there); after any other job the memo is emptied."""
    job.keeps_rows = True
    return job


def current() -> RowMemo | None:
    """The memo, inside a batch job (in the batcher's greenlet); None anywhere else."""
    if _active["greenlet"] is getcurrent():
        return _active["memo"]
    return None


def activate(memo: RowMemo | None) -> None:
    """The batcher, around its jobs: ``memo`` is theirs (None: no memo any more)."""
    _active["greenlet"] = getcurrent() if memo is not None else None
    _active["memo"] = memo

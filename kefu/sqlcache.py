"""SQL generated once and reused: peewee's query building costs more CPU than SQLite
needs to run the hot statements of the message path, and the text is the same every
time for one kind of database. Keyed by (name, database class)."""

from collections import defaultdict
from datetime import datetime
from operator import itemgetter

from greenlet import getcurrent
from peewee import SqliteDatabase, __exception_wrapper__

from kefu import db

_SQL: dict = {}
# The plans of cached writes by database class, then by name: two lookups cost less
# than building and hashing a (name, class) key, twice a message.
_WRITES: defaultdict = defaultdict(dict)
# Stand-ins for the datetime arguments of a ``cached_write`` (probes must differ from
# each other and from any constant of the SQL; a write may take two datetimes).
PROBE_TIMES = (datetime(1901, 2, 3, 4, 5, 6, 789), datetime(1901, 2, 3, 4, 5, 6, 790))


def cached_select(name: str, build, *args, decode=None) -> list:
    """The rows of ``build(*args)``, a SELECT whose SQL text is generated once.

    Generating the SQL of ``with_people``'s four-way join costs peewee about a
    millisecond of CPU, several times what SQLite needs to run it, and it is the same
    text every time for one kind of database. So it is built once per dialect and run
    again with new parameters. Rows are decoded by the first run's cursor wrapper,
    whose column-to-model mapping (another large share of the cost) depends only on
    the SQL. ``build``'s parameters must be ``args`` followed by constants; that is
    checked the first time, and a query that does not fit is simply built every time.
    ``decode(cursor)`` may offer a faster row decoder for this SQL's columns instead
    (or return None to keep peewee's).
    """
    database = db.configured
    key = (name, type(database))
    entry = _SQL.get(key)
    if entry is None:
        query = build(*args)
        sql, params = query.sql()
        if list(params[: len(args)]) != list(args):
            return list(query)
        entry = _SQL[key] = [query, sql, tuple(params[len(args) :]), None]
    query, sql, constants, decoder = entry
    cursor = _execute(database, sql, (*args, *constants))
    if decoder is None:
        fast = decode(cursor) if decode is not None else None
        if fast is not None:
            decoder = entry[3] = fast
        else:
            wrapper = query._get_cursor_wrapper(cursor)
            rows = list(wrapper)
            if wrapper.initialized:  # only a cursor that returned a row has the mapping
                entry[3] = wrapper.process_row
            return rows
    try:
        return [decoder(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def cached_first(name: str, build, *args):
    """The first row of ``build(*args)`` (see ``cached_select``), or None: the lookups
    every arrival makes (its account, its open conversation, the queue's head)."""
    rows = cached_select(name, build, *args)
    return rows[0] if rows else None


def cached_write(name: str, build, args: tuple, probes: tuple):
    """Execute the write ``build(*args)`` with its SQL generated only once (SQLite).

    peewee spends more CPU generating an INSERT or UPDATE than SQLite spends running
    it. The first call builds the query from ``probes`` and maps each parameter to the
    argument it came from (or keeps it as a constant); later calls reuse the text.
    Arguments must be values the fields store unchanged (ints, text, datetimes). The
    cursor returned is good until the next statement (read its ``lastrowid`` or
    ``rowcount`` at once): a group-commit job's writes share one."""
    plans = _WRITES[type(db.configured)]
    entry = plans.get(name)
    if entry is None:
        sqlite = isinstance(db.configured, SqliteDatabase)
        entry = plans[name] = _plan(build, probes, sqlite)
    if entry is _BUILD_EACH_TIME:
        return db.database.execute(build(*args))
    sql, constants, pick = entry
    params = args + constants if pick is None else pick(args + constants)
    if _batch["greenlet"] is getcurrent():  # a group-commit job (every message's two writes):
        try:  # the batch's cursor, as ``_execute`` takes it, without its call
            return _batch["cursor"].execute(sql, params)
        except Exception:
            with __exception_wrapper__:
                raise
    return _execute(db.configured, sql, params, write=True)


_BUILD_EACH_TIME = object()


def _plan(build, probes: tuple, sqlite: bool):
    """(sql, constants, pick) for ``cached_write``, or ``_BUILD_EACH_TIME`` for a query
    that cannot be reused: an argument that does not land in one parameter of its own,
    or a parameter that differs between two builds (a default computed per row, such as
    a uuid or the time, which must not be frozen at its first value). On SQLite the
    parameters are numbered (see ``_numbered``), and ``pick`` is None."""
    sql, params = build(*probes).sql()
    if build(*probes).sql()[1] != params:
        return _BUILD_EACH_TIME
    slots = []
    for value in params:
        hits = [i for i, p in enumerate(probes) if type(value) is type(p) and value == p]
        slots.append(hits[0] if len(hits) == 1 else (value,))
    if any(i not in slots for i in range(len(probes))):
        return _BUILD_EACH_TIME
    numbered = _numbered(sql, slots, len(probes)) if sqlite else None
    return numbered or (sql, *_picker(slots, len(probes)))


def _numbered(sql: str, slots: list, arity: int) -> tuple | None:
    """SQLite: (sql, constants, None), ``sql`` with each ``?`` numbered by what it
    binds, so that ``args + constants`` are the parameters as they are given: an
    argument is ``?N`` for the Nth argument wherever it stands (and bound once if it
    stands in two places), a constant other than an integer is bound after the
    arguments. Integer constants are written into the text. Binding a text costs
    sqlite3 a copy and the previous value's release (about 780 instructions), an
    integer about 170: a message's INSERT and UPDATE each bind their time twice and
    carry constants (``is_read``, the counters' increments); and putting the arguments
    in the SQL's order cost an ``itemgetter`` call per statement. None unless every
    ``?`` of the text is a parameter."""
    pieces = sql.split("?")
    if len(pieces) != len(slots) + 1:
        return None
    text, constants = [pieces[0]], []
    for slot, piece in zip(slots, pieces[1:], strict=True):
        if type(slot) is int:  # an argument
            text.append(f"?{slot + 1}")
        elif type(slot[0]) in (int, bool):
            text.append(str(int(slot[0])))
        else:
            constants.append(slot[0])
            text.append(f"?{arity + len(constants)}")
        text.append(piece)
    return "".join(text), tuple(constants), None


def _picker(slots: list, arity: int) -> tuple:
    """(constants, pick): ``pick(args + constants)`` is the parameters in SQL order, one
    C call instead of a Python loop over them per statement."""
    constants = tuple(slot[0] for slot in slots if type(slot) is not int)
    extra = iter(range(arity, arity + len(constants)))
    order = [slot if type(slot) is int else next(extra) for slot in slots]
    if len(order) == 1:
        return constants, lambda values: (values[order[0]],)
    return constants, itemgetter(*order) if order else lambda values: ()


# The group commit's connection while its jobs run, the cursor their writes share, and
# the greenlet they run in.
_batch = {"greenlet": None, "connection": None, "cursor": None}


def in_batch(connection) -> None:
    """The group-commit batcher, around its jobs: their statements run on ``connection``
    (None: the jobs are done). It is the one peewee's state gives the batcher's
    greenlet, taken from here instead: each read of that state (is the connection
    closed, which is it) is a lookup in gevent's greenlet-local storage, two per
    statement, each about as costly as a Python call."""
    _batch["greenlet"] = getcurrent() if connection is not None else None
    _batch["connection"] = connection
    _batch["cursor"] = connection.cursor() if connection is not None else None


def _execute(database, sql: str, params, write: bool = False):
    """A cursor of ``sql`` run with ``params``. On SQLite straight on the connection:
    peewee's ``execute_sql`` adds a debug-log check, query hooks and a cursor object per
    call, a few µs each time on the message path; errors are still peewee's classes
    (its wrapper is entered only for a failed statement). A group-commit job's
    ``write`` runs on the batch's one cursor: ``connection.execute`` makes a cursor per
    statement, which costs about a seventh of running a message's UPDATE."""
    if not isinstance(database, SqliteDatabase):
        return database.execute_sql(sql, params)
    if _batch["greenlet"] is getcurrent():  # a group-commit job: the batch's connection
        runner = _batch["cursor"] if write else _batch["connection"]
    else:
        # peewee's per-greenlet state, read once: ``is_closed()`` and ``connection()``
        # read it three times, each a lookup in gevent's greenlet-local storage.
        state = database._state
        if state.closed:  # as execute_sql: no connection taken outside a block
            return database.execute_sql(sql, params)
        runner = state.conn
    try:
        return runner.execute(sql, params)
    except Exception:
        with __exception_wrapper__:
            raise

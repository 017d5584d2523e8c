"""SQL generated once and reused (kefu/sqlcache.py) on a real SQLite file: a cached
write binds each call's arguments where the first call's probes landed, keeps the
query's own constants, never freezes a default computed per row, and a failing
statement raises peewee's error classes without spoiling the transaction."""

import uuid

import pytest
from peewee import SQL, CharField, IntegerField, IntegrityError, Model

from kefu import create_app, db
from kefu.sqlcache import cached_write

pytestmark = pytest.mark.ignores_test_database


class Note(Model):
    name = CharField(unique=True)
    body = CharField()
    flag = IntegerField(default=7)  # a constant the INSERT carries
    token = CharField(default=lambda: uuid.uuid4().hex)  # a new value for every row

    class Meta:
        database = db.database
        table_name = "test_sqlcache_note"


@pytest.fixture
def app(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/kefu.db", "JWT_SECRET": "x"})
    with app.app_context():
        with db.write():
            Note.create_table()
        yield app
    app.extensions["kefu.db"].close_all()


def _add(name, body):
    return Note.insert(name=name, body=body)


def _add_flagged(name, body, flag):
    return Note.insert(name=name, body=body, flag=flag, token=name)


def _rewrite(body, note_id):
    return Note.update(body=body, name=Note.name.concat("!")).where(Note.id == note_id)


def _clear(note_id):
    return Note.update(flag=0).where(Note.id == note_id)


def _both(text, note_id):  # one argument in two places
    return Note.update(name=text, body=text).where(Note.id == note_id)


def _asked(flag, note_id):  # a "?" of the SQL's own text, not a parameter
    return Note.update(body=SQL("'why?'"), flag=flag).where(Note.id == note_id)


FLAGGED = ("\x00n", "\x00b", -1)


def test_cached_writes_bind_each_calls_arguments_and_keep_constants(app):
    with db.write():
        a = cached_write("t_flagged", _add_flagged, ("a", "A", 1), FLAGGED).lastrowid
        b = cached_write("t_flagged", _add_flagged, ("b", "B", 2), FLAGGED).lastrowid
        cached_write("t_rewrite", _rewrite, ("B2", b), ("\x00r", -5))  # "!" stays
        cached_write("t_clear", _clear, (a,), (-6,))  # one argument and one constant
    with db.read():
        rows = [(n.name, n.body, n.flag, n.token) for n in Note.select().order_by(Note.id)]
    assert rows == [("a", "A", 0, "a"), ("b!", "B2", 2, "b")]


def test_an_argument_in_two_places_and_a_question_mark_in_the_text(app):
    with db.write():
        a = cached_write("t_flagged", _add_flagged, ("a", "A", 1), FLAGGED).lastrowid
        b = cached_write("t_flagged", _add_flagged, ("b", "B", 2), FLAGGED).lastrowid
        cached_write("t_both", _both, ("same", a), ("\x00t", -7))
        cached_write("t_asked", _asked, (5, b), (-8, -9))
        cached_write("t_asked", _asked, (6, a), (-8, -9))
    with db.read():
        rows = [(n.name, n.body, n.flag) for n in Note.select().order_by(Note.id)]
    assert rows == [("same", "why?", 6), ("b", "why?", 5)]


def test_a_default_computed_per_row_is_not_frozen(app):
    with db.write():
        for name in ("x", "y", "z"):
            cached_write("t_add", _add, (name, name.upper()), ("\x00n", "\x00b"))
    with db.read():
        notes = list(Note.select().order_by(Note.id))
    assert [(n.name, n.flag) for n in notes] == [("x", 7), ("y", 7), ("z", 7)]
    assert len({n.token for n in notes}) == 3


def test_a_refused_cached_write_raises_peewees_error_and_keeps_the_transaction(app):
    with db.write():
        cached_write("t_flagged", _add_flagged, ("c", "C", 3), FLAGGED)
        with pytest.raises(IntegrityError):  # name is unique
            cached_write("t_flagged", _add_flagged, ("c", "other", 4), FLAGGED)
        cached_write("t_flagged", _add_flagged, ("d", "D", 5), FLAGGED)
    with db.read():
        stored = [(n.name, n.body) for n in Note.select().order_by(Note.id)]
    assert stored == [("c", "C"), ("d", "D")]

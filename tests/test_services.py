"""Services without sockets, on a real SQLite file: rules, counters, idempotency."""

import threading
import time

import pytest
from peewee import DatabaseError, InterfaceError

from kefu import create_app, db, groupcommit
from kefu.db_errors import rolled_back_by_deadlock
from kefu.errors import Busy, Conflict, Invalid, NotFound
from kefu.migrate import upgrade
from kefu.models import ENDED, Agent, Conversation, User
from kefu.principal import principal_for
from kefu.realtime.events import ConversationAssigned, MessageCreated, QueueMoved
from kefu.services import (
    accounts,
    conversations,
    message_pages,
    messages,
    presence,
    routing,
    targets,
    visitors,
)
from kefu.services.message_rules import OpIdReused
from tests.support import drop_database, fresh_database_url


@pytest.fixture
def app(tmp_path):
    url = fresh_database_url(tmp_path)
    upgrade(url)
    app = create_app({"DATABASE_URL": url, "JWT_SECRET": "x"})
    online = set()
    presence.use(lambda: frozenset(online))
    app.online = online
    with app.app_context():
        yield app
    app.extensions["kefu.db"].close_all()
    drop_database(url)


def agent(app, name, limit=5, online=True):
    user, profile, _ = accounts.create_agent(name, max_concurrent=limit)
    if online:
        app.online.add(profile.id)
    return principal_for(user)


def customer(name):
    user, _ = accounts.create_user(name)
    return principal_for(user)


def load_agent(kefu_id):
    with db.read():
        return Agent.get_by_id(kefu_id)


def test_open_assigns_least_busy_or_queues(app):
    a1, a2 = agent(app, "a1", limit=1), agent(app, "a2", limit=1)
    u1, u2, u3 = customer("u1"), customer("u2"), customer("u3")
    c1, ev1 = conversations.open_for_user(u1)
    c2, _ = conversations.open_for_user(u2)
    c3, ev3 = conversations.open_for_user(u3)
    assert {c1.agent_id, c2.agent_id} == {a1.kefu_id, a2.kefu_id}
    assert c3.agent_id is None
    assert isinstance(ev1[0], ConversationAssigned)
    assert any(isinstance(e, QueueMoved) for e in ev3)  # places are read when published
    assert routing.queue_snapshot().position_of(c3.id) == 1
    again, events = conversations.open_for_user(u3)
    assert (again.id, events) == (c3.id, [])

    ended = conversations.end(c1.id, u1)
    assigned = [e for e in ended if isinstance(e, ConversationAssigned)]
    assert [e.conversation.id for e in assigned] == [c3.id]
    assert conversations.end(c1.id, u1) == []  # quietly, and no double decrement
    for a in (a1, a2):
        assert load_agent(a.kefu_id).current_concurrent == 1


def test_offline_or_unready_agents_get_nothing(app):
    away = agent(app, "away", online=False)
    ready = agent(app, "ready")
    routing.set_accepting(ready.kefu_id, False)
    conv, _ = conversations.open_for_user(customer("c"))
    assert conv.agent_id is None
    events = routing.set_accepting(ready.kefu_id, True)
    assert [e.conversation.id for e in events if isinstance(e, ConversationAssigned)] == [conv.id]
    assert load_agent(away.kefu_id).current_concurrent == 0


def test_raised_limit_refills_from_queue(app):
    a = agent(app, "limited", limit=1)
    convs = [conversations.open_for_user(customer(f"r{n}"))[0] for n in range(3)]
    assert [c.agent_id for c in convs] == [a.kefu_id, None, None]
    events = routing.set_max_concurrent(a.kefu_id, 3)
    assigned = [e.conversation.id for e in events if isinstance(e, ConversationAssigned)]
    assert assigned == [convs[1].id, convs[2].id]
    with pytest.raises(Invalid):
        routing.set_max_concurrent(a.kefu_id, 0)


def test_a_switch_and_its_fill_are_stored_together_or_not_at_all(app, monkeypatch):
    """Ready and a new limit were committed on their own, then the fill from the queue
    failed (``Busy``: no connection free): the change was stored, yet its AgentChanged
    never went out. Now both are one transaction."""
    a = agent(app, "together", limit=2)
    routing.set_accepting(a.kefu_id, False)

    def busy():
        raise Busy("Server busy, try again shortly")

    monkeypatch.setattr(routing, "assign_waiting_locked", busy)
    with pytest.raises(Busy):
        routing.set_accepting(a.kefu_id, True)
    with pytest.raises(Busy):
        routing.set_max_concurrent(a.kefu_id, 3)
    stored = load_agent(a.kefu_id)
    assert (stored.accepting, stored.max_concurrent) == (False, 2)
    monkeypatch.undo()
    events = routing.set_accepting(a.kefu_id, True)
    assert [(e.accepting, e.max_concurrent) for e in events] == [(True, 2)]


def test_send_rules_and_idempotency(app):
    a = agent(app, "speaker")
    u, stranger = customer("speaker-user"), customer("stranger")
    conv, _ = conversations.open_for_user(u)
    view, events, dup = messages.send(u, conv.id, "hi", op_id="op-1")
    assert not dup and isinstance(events[0], MessageCreated)
    again, events, dup = messages.send(u, conv.id, "hi", op_id="op-1")
    assert dup and again.id == view.id and events == []
    with pytest.raises(NotFound):
        messages.send(stranger, conv.id, "intrude")
    # A NUL is refused on every database (PostgreSQL cannot store one), whatever sent it.
    for content, file_url in (("a\x00b", None), ("see", "/up/a\x00.png")):
        with pytest.raises(Invalid, match="must not contain NUL characters"):
            messages.send(u, conv.id, content, 1 if file_url is None else 2, file_url)
    with pytest.raises(Invalid, match="op_id must not contain NUL characters"):
        messages.send(u, conv.id, "hi", op_id="op\x00")
    with pytest.raises(Invalid, match="visitor_id must not contain NUL characters"):
        visitors.send("v\x00", a.kefu_id, "hi")
    assert accounts.verify_password("speaker\x00", "whatever") is None
    reply, _, _ = messages.send(a, conv.id, "hello", op_id="op-1")  # op ids are per sender
    assert reply.id != view.id and reply.seq == 2
    count, _ = conversations.mark_read(conv.id, u, [reply.id, view.id], 2)
    assert count == 1
    conversations.end(conv.id, a)
    with pytest.raises(Conflict):
        messages.send(u, conv.id, "late")
    resent, events, dup = messages.send(u, conv.id, "hi", op_id="op-1")  # answered, not refused
    assert dup and resent.id == view.id and events == []
    with pytest.raises(Conflict):
        messages.send(u, conv.id, "late", op_id="op-new")


def test_an_op_id_reused_for_another_message_is_refused_not_swallowed(app):
    kefu_id = agent(app, "reuse-agent").kefu_id
    u = customer("reuse-user")
    conv, _ = conversations.open_for_user(u)
    first, _, _ = messages.send(u, conv.id, "first", op_id="unique_op_id")
    for body in (("second",), ("first", 2, "https://example.com/a.png")):
        with pytest.raises(OpIdReused, match="op_id was already used for another message"):
            messages.send(u, conv.id, *body, op_id="unique_op_id")
    conversations.end(conv.id, u)
    later, _ = conversations.open_for_user(u)
    with pytest.raises(OpIdReused):  # the old message is not a new conversation's reply
        messages.send(u, later.id, "first", op_id="unique_op_id")
    again, _, dup = messages.send(u, conv.id, "first", op_id="unique_op_id")
    assert dup and again.id == first.id  # a true resend is still answered with the first
    visitors.send("v_reuse", kefu_id, "hello", op_id="v-1")
    with pytest.raises(OpIdReused):
        visitors.send("v_reuse", kefu_id, "goodbye", op_id="v-1")
    assert [m.content for m in message_pages.page(u, later.id)] == []


def _people(events) -> tuple:
    ref = events[0].conversation
    return ref.customer.nickname, ref.kefu_id, ref.agent.nickname if ref.agent else None


def test_sends_keep_the_people_and_follow_what_changes_elsewhere(app, monkeypatch):
    first, second = agent(app, "first"), agent(app, "second", online=False)
    u = customer("keeper")
    conv, _ = conversations.open_for_user(u)
    messages.send(u, conv.id, "one")
    assert targets.parties.fresh(conv.id) is not None
    view, events, _ = messages.send(u, conv.id, "two")  # the row by id, the people kept
    assert _people(events) == ("keeper", first.kefu_id, "first")
    assert (view.seq, events[0].conversation.kefu_unread_count) == (2, 2)

    # Another process gives the conversation to another agent: the row names it.
    with db.write():
        Conversation.update(agent=second.kefu_id).where(Conversation.id == conv.id).execute()
    _, events, _ = messages.send(u, conv.id, "three")
    assert _people(events) == ("keeper", second.kefu_id, "second")
    with pytest.raises(NotFound):
        messages.send(first, conv.id, "no longer mine")
    view, _, _ = messages.send(second, conv.id, "mine now")
    assert view.seq == 4

    # A profile edited by hand shows once the kept people expire.
    with db.write():
        User.update(nickname="renamed").where(User.id == u.user_id).execute()
    _, events, _ = messages.send(second, conv.id, "kept")
    assert _people(events)[0] == "keeper"
    later = time.monotonic() + targets.Parties.SECONDS + 1
    monkeypatch.setattr(targets, "monotonic", lambda: later)
    _, events, _ = messages.send(second, conv.id, "read again")
    assert _people(events)[0] == "renamed"

    # Another process ends it.
    with db.write():
        Conversation.update(status=ENDED).where(Conversation.id == conv.id).execute()
    with pytest.raises(Conflict):
        messages.send(u, conv.id, "late")


def test_kept_people_are_per_database(app, tmp_path):
    # No agents: both conversations wait in the queue, with the same ids in each database.
    u = customer("user-one")
    conv, _ = conversations.open_for_user(u)
    messages.send(u, conv.id, "hi")
    (tmp_path / "other").mkdir()
    url = fresh_database_url(tmp_path / "other")
    upgrade(url)
    other = create_app({"DATABASE_URL": url, "JWT_SECRET": "x"})
    try:
        with other.app_context():
            u2 = customer("user-two")
            conv2, _ = conversations.open_for_user(u2)
            assert (conv2.id, u2.user_id, conv2.agent_id) == (conv.id, u.user_id, None)
            _, events, _ = messages.send(u2, conv2.id, "hi")
            assert _people(events) == ("user-two", None, None)
    finally:
        other.extensions["kefu.db"].close_all()
        drop_database(url)


def test_a_deadlock_victim_runs_again(app):
    """Two jobs lock two conversations' rows in opposite orders: the database rolls one
    back to break the deadlock, and groupcommit.run runs that one again. The second
    lock is taken in a savepoint: on MySQL the error raised is then the savepoint's
    ("does not exist": the deadlock's rollback ended it), as the suite once met in
    test_concurrent_ends_and_opens_never_drift."""
    if db.is_sqlite():
        pytest.skip("SQLite serialises write transactions: there are no row locks")
    agent(app, "locks", limit=10)
    first, second = (conversations.open_for_user(customer(f"d{n}"))[0].id for n in range(2))
    both_hold_one = threading.Barrier(2)
    runs = {"a": 0, "b": 0}
    finished = {"a": threading.Event(), "b": threading.Event()}

    def lock(conversation_id):
        list(db.locked(Conversation.select().where(Conversation.id == conversation_id)))

    def job(name, mine, theirs):
        runs[name] += 1
        if runs[name] == 1:
            lock(mine)
            both_hold_one.wait(timeout=10)
        else:  # the victim again: after the other has committed, or it could retake its
            # first lock before the other's waiting lock is granted and deadlock again
            finished["b" if name == "a" else "a"].wait(timeout=10)
            lock(mine)
        with db.database.atomic():  # a savepoint, as get_or_create makes (see above)
            lock(theirs)
        return name

    results, errors = {}, []

    def call(name, mine, theirs):
        try:
            results[name] = groupcommit.run(job, name, mine, theirs)
        except Exception as exc:
            errors.append(exc)
        finished[name].set()

    pairs = [("a", first, second), ("b", second, first)]
    threads = [threading.Thread(target=call, args=pair) for pair in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert results == {"a": "a", "b": "b"}
    assert sorted(runs.values()) == [1, 2]  # the victim ran twice, the other once


def test_an_error_that_is_not_a_deadlock_is_not_run_again(app):
    runs = []

    def job():
        runs.append(1)
        db.database.execute_sql("SELECT * FROM no_such_table")

    with pytest.raises(DatabaseError):
        groupcommit.run(job)
    assert runs == [1]


def test_a_deadlock_is_recognised_behind_the_savepoint_it_ended():
    """MySQL: the deadlock rolls back the whole transaction, so leaving the job's
    savepoint fails too, and the error raised is that one, with the deadlock as its
    context. (PostgreSQL's deadlock is recognised by its SQLSTATE, which only the
    server sets: test_a_deadlock_victim_runs_again meets a real one.)"""
    import pymysql

    def raised_while_handling(first, then):
        try:
            try:
                raise first
            except Exception:
                raise then  # noqa: B904 - as peewee's savepoint exit raises it
        except Exception as exc:
            return exc

    deadlock = pymysql.err.OperationalError(1213, "Deadlock found")
    gone = pymysql.err.OperationalError(1305, "SAVEPOINT s1 does not exist")
    assert rolled_back_by_deadlock(deadlock)
    assert rolled_back_by_deadlock(raised_while_handling(deadlock, DatabaseError(gone)))
    assert not rolled_back_by_deadlock(gone)
    assert not rolled_back_by_deadlock(pymysql.err.OperationalError(1205, "Lock wait"))


def test_visitor_conversations_go_to_the_named_agent(app):
    a = agent(app, "named", limit=1, online=False)
    view, _, _ = visitors.send("vid-1", a.kefu_id, "hello")
    with db.read():
        conv = Conversation.get_by_id(view.conversation_id)
    assert conv.agent_id == a.kefu_id and conv.user_id is None
    assert load_agent(a.kefu_id).current_concurrent == 1
    visitors.send("vid-1", a.kefu_id, "more")
    assert [m.content for m in visitors.history("vid-1", a.kefu_id)] == ["hello", "more"]
    visitors.end("vid-1", a.kefu_id)
    assert load_agent(a.kefu_id).current_concurrent == 0
    with pytest.raises(NotFound):
        visitors.send("vid-1", 999, "nobody")


def test_concurrent_ends_and_opens_never_drift(app):
    a = agent(app, "busy", limit=1000)
    users = [customer(f"t{n}") for n in range(40)]
    convs = [conversations.open_for_user(u)[0] for u in users]
    errors = []

    def churn(user, conv):
        try:
            for _ in range(3):
                conversations.end(conv.id, user)
                conversations.end(conv.id, user)  # a duplicate end races the first
                conv, _ = conversations.open_for_user(user)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=pair) for pair in zip(users, convs, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read():
        open_count = Conversation.open_for_agent(a.kefu_id).count()
    assert open_count == 40
    assert load_agent(a.kefu_id).current_concurrent == open_count


def test_a_query_outside_read_or_write_is_refused(app):
    """Under gevent a connection taken outside ``db.read()``/``db.write()`` belongs to the
    greenlet and nothing returns it to the pool: such a query fails at once instead."""
    with pytest.raises(InterfaceError):
        User.select().count()
    with db.read():
        assert User.select().count() == 0


def test_accounts(app):
    user, token = accounts.create_user("dup")
    with pytest.raises(Conflict):
        accounts.create_user("dup")
    with db.read():
        assert User.get_by_id(user.id).tokens.count() == 1
        assert token not in {t.token_hash for t in User.get_by_id(user.id).tokens}
    accounts.create_agent("pw-agent", password="s3cret!!")
    assert accounts.verify_password("pw-agent", "s3cret!!") is not None
    assert accounts.verify_password("pw-agent", "wrong") is None


def test_a_short_password_is_refused_at_creation_as_when_changed(app):
    """One rule for every password: before, create-agent took "x" and set-password not."""
    for create in (accounts.create_agent, accounts.create_user):
        with pytest.raises(Invalid, match="at least 8 characters"):
            create("short-pw", password="seven77")
    with db.read():
        assert not User.select().where(User.username == "short-pw").exists()
    with pytest.raises(Invalid, match="at least 8 characters"):
        accounts.set_password("pw-agent", "")


def test_credential_changes_are_found_in_every_chunk(app, monkeypatch):
    """Chunks of one length (the last padded with a repeated id): a change in the first,
    a middle and the padded last chunk is found, and nobody else is reported."""
    monkeypatch.setattr(accounts, "CREDENTIAL_CHUNK", 3)
    users = [accounts.create_user(f"chunked-{n}")[0] for n in range(8)]
    accounts.set_password("chunked-0", "another-password")
    accounts.set_active("chunked-4", False)
    accounts.set_password("chunked-7", "another-password")
    turns = []
    changes = accounts.credential_changes([u.id for u in users], between=lambda: turns.append(1))
    assert set(changes) == {users[0].id, users[4].id, users[7].id}
    assert changes[users[4].id][0] is False  # disabled
    assert changes[users[0].id][0] is True and changes[users[0].id][1] is not None
    assert len(turns) == 2  # between the three chunks

"""A full disk under SQLite: each send that cannot be stored gets the usual error reply,
the log says why in a line (one traceback the first time, not ~80 lines per send), and
once there is room again every retried send is stored once.

A real server on a real filesystem too small for it: a 2 MB tmpfs, mounted here. It
needs root (``mount``): a developer machine without it skips the test, and under CI
(``CI=true``, where ``.ci/run`` runs as root) a failed mount fails it.
"""

import contextlib
import os
import subprocess

import pytest

from tests.support import Server, unavailable

pytestmark = pytest.mark.ignores_test_database  # a SQLite file of its own

FAILED = "ds/kefu kefu_message_send failed: sqlite3.OperationalError: database or disk is full"


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError as exc:
        unavailable(f"cannot mount a small filesystem (mount needs root): {exc}")
    if mounted.returncode != 0:
        unavailable(f"cannot mount a small filesystem (mount needs root): {mounted.stderr.strip()}")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(mnt)], check=False)  # a process still has it open


def fill(folder) -> str:
    """Take every byte left on ``folder``'s filesystem; the path of the file that holds them."""
    path = str(folder / "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            os.write(fd, b"\0" * 65536)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 512)
    os.close(fd)
    return path


def send(ws, cid, op_id: str) -> dict:
    content = f"{op_id} " + "x" * 3000  # a few pages of log each: the disk fills soon
    return ws.request(
        {
            "action": "kefu_message_send",
            "data": {"conversation_id": cid, "content": content},
            "op_id": op_id,
        }
    )


def test_a_full_disk_costs_one_line_per_send_and_no_message(small_disk, tmp_path):
    server = Server(tmp_path / "srv", f"sqlite:///{small_disk}/kefu.db").start()
    try:
        _, cid, ws, agent_ws = server.conversation("full-agent", "full-owner")
        assert send(ws, cid, "before")["success"]

        filler = fill(small_disk)
        logged_before = len(server.log().splitlines())
        op_ids, replies = [f"full-{i}" for i in range(20)], {}
        for op_id in op_ids:
            replies[op_id] = send(ws, cid, op_id)
        failed = [op_id for op_id, reply in replies.items() if not reply["success"]]
        # The first sends may still fit in the log's spare room; the rest cannot.
        assert len(failed) >= 10, replies
        for op_id in failed:
            assert replies[op_id] == {
                "success": False,
                "message": "Internal server error",
                "op_id": op_id,
            }
        lines = server.log().splitlines()[logged_before:]
        assert FAILED in lines, "\n".join(lines)
        # Further failures wait for the line that counts them (every 10 s).
        assert sum(line.startswith("ds/kefu") for line in lines) == 1, "\n".join(lines)
        # gevent's own copy of the COMMIT's error, and the failed ROLLBACK that hid it.
        assert "failed with OperationalError" not in server.log()
        assert "cannot rollback" not in server.log()
        assert len(lines) < 100, "\n".join(lines)  # ~80 a send (1,500 for these) before

        os.unlink(filler)
        for op_id in op_ids:  # the client retries: each is stored once, whatever it got
            reply = send(ws, cid, op_id)
            assert reply["success"], reply
            if replies[op_id]["success"]:
                assert reply["data"] == replies[op_id]["data"]
        assert send(ws, cid, "after")["success"]
        stored = server.sql(
            "SELECT seq, op_id FROM message WHERE conversation_id = ? ORDER BY seq", cid
        )
        assert sorted(op_id for _, op_id in stored) == sorted(["before", *op_ids, "after"])
        assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
        agent_ws.close()
        ws.close()
    finally:
        server.stop()  # here, not in the background: the mount is let go of next

"""``flask kefu prune-uploads``: uploads no message names (uploaded, never sent) are
deleted once older than the cutoff; those a message names, by path or as a link in its
text, and recent ones stay. On whichever database the suite runs on."""

import os
import time

import requests

from tests.test_pages_security import PNG, upload

DAY = 86400


def uploaded(server, token: str) -> str:
    photo = {"file": ("photo.png", PNG, "image/png")}
    reply = upload(server, photo, headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]["url"]  # /uploads/<name>


def age(server, url: str, seconds: float) -> None:
    path = server.workdir / "uploads" / url.rsplit("/", 1)[1]
    then = time.time() - seconds
    os.utime(path, (then, then))


def exists(server, url: str) -> bool:
    return (server.workdir / "uploads" / url.rsplit("/", 1)[1]).exists()


def test_prune_deletes_only_old_uploads_no_message_names(server):
    agent = server.create_agent("pruning-agent")
    token = server.host_jwt("pruning-customer")
    cid = server.get("/api/kefu/message/getConversation", token).json()["data"]["id"]
    as_file, as_link, unsent, recent = (uploaded(server, token) for _ in range(4))
    ws = server.ws()
    assert ws.request({"action": "login", "data": {"token": token}})["success"]
    sent = ws.request(
        {
            "action": "kefu_message_send",
            "op_id": "prune-1",
            "data": {"conversation_id": cid, "message_type": 2, "file_url": as_file},
        }
    )
    assert sent["success"], sent
    visitor_said = ws.request(
        {
            "action": "kefu_message_visitor_send",
            "op_id": "prune-2",
            "data": {
                "visitor_id": "prune-visitor",
                "kefu_id": agent["kefu_id"],
                "content": f"this one: {server.url(as_link)}",
            },
        }
    )
    assert visitor_said["success"], visitor_said
    ws.close()
    for url in (as_file, as_link, unsent):
        age(server, url, 2 * DAY)
    stray = server.workdir / "uploads" / "notes.txt"  # not a name the upload API gives
    stray.write_text("kept")
    os.utime(stray, (time.time() - 2 * DAY,) * 2)

    listed = server.cli("kefu", "prune-uploads", "--dry-run")
    assert listed == {"dry_run": True, "uploads": [unsent.rsplit("/", 1)[1]]}
    assert exists(server, unsent)

    pruned = server.cli("kefu", "prune-uploads")
    assert pruned == {"dry_run": False, "uploads": [unsent.rsplit("/", 1)[1]]}
    assert not exists(server, unsent)
    assert requests.get(server.url(unsent), timeout=10).status_code == 404
    for kept in (as_file, as_link, recent):
        assert requests.get(server.url(kept), timeout=10).status_code == 200
    assert stray.exists()

    # A shorter cutoff reaches the recent one, which no message names either.
    age(server, recent, 3 * 3600)
    assert server.cli("kefu", "prune-uploads", "--older-than-hours", "2")["uploads"] == [
        recent.rsplit("/", 1)[1]
    ]
    assert server.cli("kefu", "prune-uploads") == {"dry_run": False, "uploads": []}

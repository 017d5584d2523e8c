"""Upload files on disk: how they are named, and the sweep of those no message names.

Files uploaded and never sent (the sender changed their mind, or the send failed) stay
until ``flask kefu prune-uploads`` removes them. Only files older than a cutoff go: an
upload is sent moments after it is made, so a recent one may be on its way into a
message that is not stored yet.
"""

import contextlib
import os
import re
import secrets
import time

from kefu import db
from kefu.models import Message
from kefu.services.message_rules import UPLOAD_PATH

# 18 random bytes are 24 URL-safe characters; then our extension, never the client's.
NAME = re.compile(r"[A-Za-z0-9_-]{24}\.[a-z0-9]{1,8}")


def new_name(ext: str) -> str:
    """A fresh upload's file name: random, so never guessed nor reused."""
    return f"{secrets.token_urlsafe(18)}.{ext}"


def named() -> set[str]:
    """The upload file names any stored message refers to (by path or by full URL)."""
    names = set()
    with db.read():
        for file_url, content in Message.naming_uploads().tuples().iterator():
            for text in (file_url or "", content or ""):
                names.update(path.rsplit("/", 1)[1] for path in UPLOAD_PATH.findall(text))
    return names


def unnamed(folder: str, older_than: float) -> list[str]:
    """Uploads in ``folder`` made more than ``older_than`` seconds ago that no message
    names. Only names ``new_name`` gives count: nothing else in the folder is touched."""
    cutoff = time.time() - older_than
    try:
        with os.scandir(folder) as entries:
            old = [
                entry.name
                for entry in entries
                if NAME.fullmatch(entry.name)
                and entry.is_file(follow_symlinks=False)
                and entry.stat().st_mtime < cutoff
            ]
    except FileNotFoundError:  # nothing was ever uploaded
        return []
    if not old:
        return []
    keep = named()
    return sorted(name for name in old if name not in keep)


def prune(folder: str, older_than: float) -> list[str]:
    """Delete what ``unnamed`` finds; returns the names deleted."""
    removed = []
    for name in unnamed(folder, older_than):
        with contextlib.suppress(FileNotFoundError):  # another prune was quicker
            os.remove(os.path.join(folder, name))
            removed.append(name)
    return removed

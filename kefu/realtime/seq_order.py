"""Message pushes of a conversation in sequence order, held back a little when one is
published before its predecessor. Publishers order them only by when their own
transaction committed and they were scheduled again: two messages of one conversation
sent at the same moment can be published in the other order, between workers (the
PostgreSQL broker) or between two greenlets of one worker on a database with row locks
(the memory broker; on SQLite the group commit publishes a batch in order).
"""

from collections import OrderedDict

from kefu.realtime.events import MessageCreated


class SeqOrder:
    """Per-conversation order of message pushes, with a bounded hold-back."""

    def __init__(self, hold_seconds: float = 1.0, max_conversations: int = 100_000):
        self.hold_seconds = hold_seconds
        # The first message seen of a conversation that began earlier: its predecessor
        # is usually long delivered (before this worker started), so wait only a little.
        self.first_sight_seconds = min(0.1, hold_seconds)
        self.max_conversations = max_conversations
        self._last: OrderedDict[int, int] = OrderedDict()  # conversation → last seq out
        self._held: dict[int, dict[int, tuple]] = {}  # conversation → seq → (deadline, batch)

    def offer(self, batch, now: float) -> list:
        """Batches ready to deliver now, in order (``batch`` = (events, origin))."""
        key = _message_key(batch[0])
        if key is None:
            return [batch]
        conv, seq = key
        last = self._last.get(conv)
        if seq == 1 or (last is not None and seq <= last + 1):
            return [batch, *self._release(conv, seq)]
        # A gap, or a conversation not seen yet whose predecessor may be just behind
        # (or was delivered before this worker started): wait, briefly in that case.
        wait = self.hold_seconds if last is not None else self.first_sight_seconds
        self._held.setdefault(conv, {})[seq] = (now + wait, batch)
        return []

    def due(self, now: float) -> list:
        """Held batches whose predecessor never came in time: deliver them anyway."""
        out = []
        for conv in list(self._held):
            held = self._held[conv]
            first = min(held)
            deadline, batch = held[first]
            if deadline <= now:
                del held[first]
                out.append(batch)
                out += self._release(conv, first)
        return out

    def holding(self) -> bool:
        return bool(self._held)

    def _release(self, conv: int, seq: int) -> list:
        """Mark ``seq`` delivered and return the held successors it unblocks."""
        self._remember(conv, seq)
        out = []
        held = self._held.get(conv)
        while held and (seq + 1) in held:
            seq += 1
            out.append(held.pop(seq)[1])
            self._remember(conv, seq)
        if held is not None and not held:
            del self._held[conv]
        return out

    def _remember(self, conv: int, seq: int) -> None:
        self._last[conv] = max(seq, self._last.get(conv, 0))
        self._last.move_to_end(conv)
        if len(self._last) > self.max_conversations:
            self._last.popitem(last=False)


def _message_key(events):
    for event in events:
        if isinstance(event, MessageCreated):
            return event.conversation.id, event.message.seq
    return None

"""An agent's grace period on this worker.

When an agent's last socket here closes, its users stay assigned for
``KEFU_AGENT_GRACE_SECONDS``. Back within it (a reconnect), nothing moves. After it,
its users go back to the head of the queue. That timer is this worker's only with the
memory broker (one worker); with several, the presence registry (``presence_db``)
re-queues an agent once it has been away from every worker for the whole period.
"""

import logging

import gevent

from kefu.errors import Busy
from kefu.services import routing

log = logging.getLogger(__name__)

# A requeue that found every pooled connection busy runs again this much later (its own
# wait for the pool came first, so this adds a pause, not a busy loop).
BUSY_RETRY_SECONDS = 1.0


class Grace:
    def __init__(self, seconds: float, publish, online_agent_ids):
        self.seconds = seconds
        self._publish = publish
        self._online_agent_ids = online_agent_ids  # this worker's hub
        self._away: dict[int, gevent.Greenlet] = {}

    def went(self, kefu_id: int) -> None:
        """The agent's last socket here closed: its grace period starts."""
        stale = self._away.pop(kefu_id, None)  # a retry of an earlier absence
        if stale is not None:
            stale.kill(block=False)
        self._away[kefu_id] = gevent.spawn_later(self.seconds, self._requeue_if_away, kefu_id)

    def went_before_start(self, kefu_ids) -> None:
        """Agents holding customers when the worker started: no socket of theirs will
        close here to start their grace period, so it starts now."""
        for kefu_id in kefu_ids:
            if kefu_id not in self._away:
                self.went(kefu_id)

    def back(self, kefu_id: int) -> None:
        """The agent signed in: nothing moves (a requeue that has started moves nothing
        once the agent is online)."""
        timer = self._away.pop(kefu_id, None)
        if timer is not None:
            timer.kill(block=False)

    def cancel_all(self) -> None:
        """The worker is stopping: the next one decides, from the database."""
        for timer in self._away.values():
            timer.kill(block=False)
        self._away.clear()

    def _requeue_if_away(self, kefu_id: int) -> None:
        self._away.pop(kefu_id, None)
        try:
            self._publish(routing.requeue_agent(kefu_id))
        except Busy:  # kept in _away: the agent's return still cancels it
            if kefu_id in self._online_agent_ids() or kefu_id in self._away:
                return  # back meanwhile, or gone again with a grace period of its own
            log.warning("re-queueing agent %s postponed: no database connection free", kefu_id)
            retry = gevent.spawn_later(BUSY_RETRY_SECONDS, self._requeue_if_away, kefu_id)
            self._away[kefu_id] = retry
        except Exception:
            log.exception("re-queueing the users of agent %s failed", kefu_id)

"""Which agents are online is a live fact only the hub knows; services ask through here.

The hub installs itself with ``use()`` at start-up. A multi-worker deployment installs a
source backed by the database instead; services do not change.
"""

from collections.abc import Callable

_source: dict[str, Callable[[], frozenset[int]]] = {"online": frozenset}


def use(online_agent_ids: Callable[[], frozenset[int]]) -> None:
    _source["online"] = online_agent_ids


def online_agent_ids() -> frozenset[int]:
    return _source["online"]()

"""``@snapshot``, the class decorator every domain event (kefu/realtime/events.py) is
declared with: a frozen dataclass that is built faster.

Apart from events.py so that file reads as the list of what can happen, not how an
event object is made. It runs once per class, when events.py is imported; a message's
events are then built by the ``__init__`` made here, which calls nothing of this module.
tests/test_events.py holds every event class to a plain frozen twin.
"""

from dataclasses import MISSING, dataclass, fields


def snapshot(cls):
    """``@dataclass(frozen=True)``, with an ``__init__`` that fills the instance's dict
    in one step.

    The ``__init__`` a frozen dataclass gets assigns each field through
    ``object.__setattr__``, a call per field: building a message's three snapshots
    took several microseconds of the hub's time per message, about half of it that.
    Here the fields are set the way the generated code would, but at once; everything
    else (equality, hashing, refusing assignment, ``dataclasses.fields``) is the
    dataclass's own. A class with a ``default_factory`` keeps the generated one."""
    cls = dataclass(frozen=True)(cls)
    own = fields(cls)
    if any(f.default_factory is not MISSING or not f.init for f in own):
        return cls
    names = [f.name for f in own]
    defaults = {f"_default_{f.name}": f.default for f in own if f.default is not MISSING}
    params = [n if f"_default_{n}" not in defaults else f"{n}=_default_{n}" for n in names]
    body = ", ".join(f"{n!r}: {n}" for n in names)
    source = f"def __init__(self, {', '.join(params)}):\n    self.__dict__.update({{{body}}})\n"
    namespace = dict(defaults)
    exec(source, namespace)  # as dataclasses itself builds __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    return cls

"""``@snapshot``, the class decorator every domain event (kefu/realtime/events.py) is
declared with: a frozen dataclass that is built faster.

Apart from events.py so that file reads as the list of what can happen, not how an
event object is made. It runs once per class, when events.py is imported; a message's
events are then built by the ``__init__`` (or ``build``) made here, which calls nothing
of this module.
tests/test_events.py holds every event class to a plain frozen twin.
"""

from dataclasses import MISSING, dataclass, fields


def snapshot(cls=None, /, **derived):
    """``@dataclass(frozen=True)``, with an ``__init__`` that fills the instance's dict
    in one step, and ``cls.build(...)``, the same as ``cls(...)`` for a hot path.

    The ``__init__`` a frozen dataclass gets assigns each field through
    ``object.__setattr__``, a call per field: building a message's three snapshots
    took several microseconds of the hub's time per message, about half of it that.
    Here the fields are set the way the generated code would, but at once; everything
    else (equality, hashing, refusing assignment, ``dataclasses.fields``) is the
    dataclass's own. A class with a ``default_factory`` keeps the generated one.

    ``@snapshot(name=(function, field))``: the instance also gets ``name``, outside the
    fields (equality, hashing and the broker's wire see only those), set to
    ``function(field's value)`` in the same step. Unlike a ``cached_property`` it is a
    plain attribute: CPython 3.11 cannot specialize reading an attribute the class
    also names (a descriptor), and such a read cost about 190 instructions more."""
    if cls is None:
        return lambda cls: snapshot(cls, **derived)
    cls = dataclass(frozen=True)(cls)
    own = fields(cls)
    if any(f.default_factory is not MISSING or not f.init for f in own):
        if derived:
            raise TypeError("derived attributes need the fast __init__")
        return cls
    names = [f.name for f in own]
    defaults = {f"_default_{f.name}": f.default for f in own if f.default is not MISSING}
    params = [n if f"_default_{n}" not in defaults else f"{n}=_default_{n}" for n in names]
    entries = [f"{n!r}: {n}" for n in names]
    entries += [f"{name!r}: _derive_{name}({of})" for name, (_, of) in derived.items()]
    fill = f"    self.__dict__.update({{{', '.join(entries)}}})\n"
    source = f"def __init__(self, {', '.join(params)}):\n{fill}"
    # ``build``: ``cls(...)`` without the class call, whose arguments CPython 3.11 packs
    # into a tuple and, past five, copies into a block it allocates (a Python function
    # called from Python takes them as they are): about 270 instructions less for a
    # message's MessageView or ConversationRef.
    source += f"def build({', '.join(params)}):\n    self = _new(_cls)\n{fill}    return self\n"
    namespace = {**defaults, "_new": object.__new__, "_cls": cls}
    namespace.update({f"_derive_{name}": function for name, (function, _) in derived.items()})
    exec(source, namespace)  # as dataclasses itself builds __init__
    for name in ("__init__", "build"):
        namespace[name].__qualname__ = f"{cls.__qualname__}.{name}"
    cls.__init__ = namespace["__init__"]
    cls.build = staticmethod(namespace["build"])
    return cls

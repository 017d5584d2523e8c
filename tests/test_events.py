"""Domain events (kefu/realtime/events.py): ``@snapshot`` classes behave exactly as the
``@dataclass(frozen=True)`` classes they replace, only built faster."""

import dataclasses
import inspect

import pytest

from kefu.realtime import events

pytestmark = pytest.mark.ignores_test_database

SNAPSHOTS = [
    cls
    for cls in vars(events).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == events.__name__
]


def plain_twin(cls):
    """The same fields as a plain frozen dataclass."""
    specs = [(f.name, f.type, f) for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(f"Plain{cls.__name__}", specs, frozen=True)


def parameters(cls) -> list:
    """(name, kind, default) of each parameter of ``cls.__init__``."""
    found = inspect.signature(cls.__init__).parameters.values()
    return [(p.name, p.kind, p.default) for p in found]


def test_every_event_class_is_a_snapshot():
    assert len(SNAPSHOTS) >= 10
    fast = [cls for cls in SNAPSHOTS if "__dict__" in cls.__init__.__code__.co_names]
    assert all("__dict__" in cls.build.__code__.co_names for cls in fast)
    # Only a class with a default_factory keeps the generated __init__.
    assert {cls.__name__ for cls in SNAPSHOTS} - {cls.__name__ for cls in fast} == {"QueueChanged"}


@pytest.mark.parametrize("cls", SNAPSHOTS, ids=lambda cls: cls.__name__)
def test_a_snapshot_takes_and_keeps_what_a_frozen_dataclass_would(cls):
    twin = plain_twin(cls)
    assert parameters(cls) == parameters(twin)
    if hasattr(cls, "build"):  # the same parameters, without self
        found = inspect.signature(cls.build).parameters.values()
        assert [(p.name, p.kind, p.default) for p in found] == parameters(twin)[1:]
    names = [f.name for f in dataclasses.fields(cls)]
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    values = {name: f"value of {name}" for name in names}
    positional = [values[name] for name in names]
    built = [cls.build(**values), cls.build(*positional)] if hasattr(cls, "build") else []
    for instance in (cls(**values), cls(*positional), *built):
        assert type(instance) is cls and vars(instance) == vars(cls(**values))
        assert dataclasses.asdict(instance) == dataclasses.asdict(twin(**values))
        assert instance == cls(**values) and hash(instance) == hash(cls(**values))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(instance, names[0] if names else "anything", "changed")
    # Defaults apply when left out, as in the twin.
    only_required = {name: values[name] for name in required}
    if cls.__name__ != "QueueChanged":
        assert dataclasses.asdict(cls(**only_required)) == dataclasses.asdict(twin(**only_required))
        assert cls.build(**only_required) == cls(**only_required)
    with pytest.raises(TypeError):
        cls(*positional, "one too many")
    if required:
        with pytest.raises(TypeError):
            cls()


def test_a_persons_key_is_kept_outside_its_fields():
    person = events.Person(7, "u7", "c", "", "")
    assert person.key == "u:7" and "key" not in {f.name for f in dataclasses.fields(person)}
    assert dataclasses.replace(person, user_id=9).key == "u:9"

"""Settings the server cannot work with stop it at start, with one line that names them.

Only values below 0 were refused: many a 0, an empty or a huge value started a server
that was useless (nobody could sign in, it listened nowhere) or harmful (an idle worker
at 97% CPU, writes that hung). A 0 the README gives a meaning ("off", "never") stays.
"""

import os
import re
import runpy

import pytest

from kefu import config
from kefu.config import SettingsError, from_environment
from tests.support import ROOT

pytestmark = pytest.mark.ignores_test_database

WHOLE = "must be a whole number"
NUMBER = "must be a number"

# Where 0 lets nothing through: sizes, counts and limits from 1 (at 0 nobody could sign
# in, every message was "too long", the transport's memory limit was off) ...
WHOLE_FROM_1 = [
    "KEFU_WORKERS",
    "KEFU_MAX_FRAME_BYTES",
    "KEFU_MAX_WS_MESSAGE_BYTES",
    "KEFU_MAX_CONTENT_CHARS",
    "KEFU_WS_OUTBOX_LIMIT",
    "KEFU_DEFAULT_MAX_CONCURRENT",
    "KEFU_PAGE_SIZE_MAX",
    "KEFU_WS_RATE_BURST",
    "KEFU_MAX_CONNECTIONS_PER_IDENTITY",
    "KEFU_UPLOAD_MAX_BYTES",
    "KEFU_UPLOAD_VISITOR_MAX_BYTES",
    "KEFU_SESSION_SECONDS",
]
# ... and rates and times from 1 per second or minute, or 1 s.
NUMBER_FROM_1 = [
    "KEFU_PRESENCE_TTL_SECONDS",
    "KEFU_USER_IDLE_SECONDS",
    "KEFU_WS_RATE_PER_SECOND",
    "KEFU_VISITOR_MESSAGES_PER_MINUTE",
    "KEFU_WS_LOGIN_TIMEOUT_SECONDS",
    "KEFU_SIGN_IN_ATTEMPTS_PER_USERNAME",
    "KEFU_SIGN_IN_ATTEMPTS_PER_IP",
]

# Where a huge value broke the server or made it useless: (variable, what it says, its
# least and most, a step past the most). A huge value ...
CEILINGS = [
    # ... took an expired host JWT for ever;
    ("KEFU_JWT_LEEWAY_SECONDS", WHOLE, "0", "300", "301"),
    # ... opened more connections than PostgreSQL takes (100 by default): errors, not waits;
    # (and below 2 every request waited for every other: its range says 2, as README)
    ("KEFU_DB_POOL_SIZE", WHOLE, "2", "100", "101"),
    # ... let a sustained load grow SQLite's log until the disk was full;
    ("KEFU_SQLITE_WAL_REWIND_PAGES", WHOLE, "0", "262144", "262145"),
    # ... had every create-agent refused (an agent takes 1 to 1000);
    ("KEFU_DEFAULT_MAX_CONCURRENT", WHOLE, "1", "1000", "1001"),
    # ... failed every sign-in (a cookie expiring after year 9999; browsers keep 400 days);
    ("KEFU_SESSION_SECONDS", WHOLE, "1", "34560000", "34560001"),
    # ... counted a dead worker's agents online and its customers present for good;
    ("KEFU_PRESENCE_TTL_SECONDS", NUMBER, "1", "300", "300.5"),
    # ... held every push after a lost one back for good;
    ("KEFU_BROKER_HOLD_SECONDS", NUMBER, "0", "10", "10.5"),
    # ... left an absent agent's customers waiting for good;
    ("KEFU_AGENT_GRACE_SECONDS", NUMBER, "0", "3600", "3600.5"),
    # ... failed every sweep for conversations left behind (OverflowError);
    ("KEFU_INACTIVE_END_SECONDS", NUMBER, "0", "2592000", "2592000.5"),
    # ... kept a disabled account's sockets open for good;
    ("KEFU_REVALIDATE_SECONDS", NUMBER, "0.1", "3600", "3600.5"),
    # ... never told anyone waiting their place.
    ("KEFU_QUEUE_UPDATE_SECONDS", NUMBER, "0", "10", "10.5"),
    # ... (the stall monitor's sleep) measured nothing; a diagnostic, checked all the same.
    ("KEFU_STALL_TICK_MS", NUMBER, "0.1", "1000", "1000.5"),
]
MOST = {var: most for var, _, _, most, _ in CEILINGS}


def allowed(var: str, least: str) -> str:
    return f"from {least} to {MOST[var]}" if var in MOST else f"{least} or more"


# (variable, a value it refuses, what the refusal says)
REFUSED = [
    *[(var, "0", f"{var}='0': {WHOLE}, {allowed(var, '1')}") for var in WHOLE_FROM_1],
    *[(var, "0", f"{var}='0': {NUMBER}, {allowed(var, '1')}") for var in NUMBER_FROM_1],
    *[
        (var, "1000000000", f"{var}='1000000000': {says}, from {least} to {most}")
        for var, says, least, most, _ in CEILINGS
    ],
    # 0 was a loop: an idle worker at 97% CPU.
    (
        "KEFU_REVALIDATE_SECONDS",
        "0",
        f"KEFU_REVALIDATE_SECONDS='0': {NUMBER}, {allowed('KEFU_REVALIDATE_SECONDS', '0.1')}",
    ),
    # Every write under load waits up to the gap: 1e9 ms hung them.
    ("KEFU_GROUP_COMMIT_GAP_MS", "1e9", f"KEFU_GROUP_COMMIT_GAP_MS='1e9': {NUMBER}, from 0 to 100"),
    # A blank line in an environment file: gunicorn listened nowhere and said nothing.
    ("KEFU_BIND", "", "KEFU_BIND='': must be an address"),
    ("KEFU_BIND", " ", "KEFU_BIND=' ': must be an address"),
    # gunicorn took an unknown level for info, silently.
    ("KEFU_LOG_LEVEL", "loud", "KEFU_LOG_LEVEL='loud': must be one of debug, info, warning"),
    ("KEFU_LOG_LEVEL", "", "KEFU_LOG_LEVEL='': must be one of"),
]

# (variable, the least or most value it takes, one a little past it)
BOUNDS = [
    *[(var, "1", "0") for var in WHOLE_FROM_1],
    *[(var, "1", "0.9") for var in NUMBER_FROM_1],
    ("KEFU_REVALIDATE_SECONDS", "0.1", "0.09"),
    ("KEFU_DB_POOL_SIZE", "2", "1"),
    ("KEFU_STALL_TICK_MS", "0.1", "0.09"),
    ("KEFU_GROUP_COMMIT_GAP_MS", "100", "100.1"),
    *[(var, most, past) for var, _, _, most, past in CEILINGS],
]
CONFIG_KEY = {"KEFU_SESSION_SECONDS": "PERMANENT_SESSION_LIFETIME"}
# gunicorn's settings and the stall monitor's: from_environment checks them (the CLI
# stops on a bad one too) and keeps none; gunicorn.conf.py and stall.py read them.
SERVER = {
    "KEFU_BIND": config.bind,
    "KEFU_LOG_LEVEL": config.log_level,
    "KEFU_WORKERS": config.workers,
    "KEFU_STALL_TICK_MS": config.stall_tick_ms,
}


def key(var: str) -> str:
    return CONFIG_KEY.get(var, var.removeprefix("KEFU_"))


def value(var: str):
    """The setting as the server uses it, once from_environment has checked them all."""
    settings = from_environment()
    return SERVER[var]() if var in SERVER else settings[key(var)]


# Where 0 means something (README, or the code), so it stays allowed.
ZERO_MEANS = {
    "KEFU_DB_POOL_WAIT_SECONDS": "wait without limit",
    "KEFU_GROUP_COMMIT_GAP_MS": "commit at once",
    "KEFU_SQLITE_WAL_REWIND_PAGES": "rewind at every checkpoint",
    "KEFU_BROKER_HOLD_SECONDS": "do not wait for a predecessor",
    "KEFU_JWT_LEEWAY_SECONDS": "no clock skew",
    "KEFU_WS_PING_SECONDS": "no pings",
    "KEFU_AGENT_GRACE_SECONDS": "requeue at once",
    "KEFU_USER_IDLE_GRACE_SECONDS": "disconnect an idle user at once",
    "KEFU_INACTIVE_END_SECONDS": "never",
    "KEFU_NEW_VISITORS_PER_ADDRESS_PER_MINUTE": "no limit",
    "KEFU_QUEUE_UPDATE_SECONDS": "send each change at once",
    "KEFU_PROXY_COUNT": "no proxy",
    "KEFU_VISITOR_UPLOADS_PER_ADDRESS_PER_MINUTE": "no limit",
}


def numeric_settings() -> list[str]:
    """Every number from_environment reads, from its source: a new one must be sorted
    into REFUSED or ZERO_MEANS here."""
    source = (ROOT / "kefu" / "config.py").read_text()
    return sorted(set(re.findall(r'env_(?:int|float)\(\s*"(KEFU_\w+)"', source)))


@pytest.fixture
def environ(monkeypatch):
    """A clean environment, so that a developer's KEFU_* cannot change the outcome."""
    for name in [n for n in os.environ if n.startswith("KEFU_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("var, value, says", REFUSED)
def test_a_value_the_server_cannot_work_with_is_refused(environ, var, value, says):
    environ.setenv(var, value)
    with pytest.raises(SettingsError, match=re.escape(says)):
        from_environment()


@pytest.mark.parametrize("var", numeric_settings())
def test_zero_is_refused_only_where_it_means_nothing(environ, var):
    environ.setenv(var, "0")
    if var in ZERO_MEANS:
        assert value(var) == 0
    else:
        with pytest.raises(SettingsError, match=f"{var}='0'"):
            from_environment()


def test_every_default_passes_written_out_too(environ):
    defaults = from_environment()
    server_defaults = {var: read() for var, read in SERVER.items()}
    assert server_defaults == {
        "KEFU_BIND": "127.0.0.1:8000",
        "KEFU_LOG_LEVEL": "info",
        "KEFU_WORKERS": 1,
        "KEFU_STALL_TICK_MS": 5.0,
    }
    for var in [*numeric_settings(), *SERVER]:
        environ.setenv(var, str(server_defaults[var] if var in SERVER else defaults[key(var)]))
    written = from_environment()
    assert {k: v for k, v in written.items() if k != "SECRET_KEY"} == {
        k: v for k, v in defaults.items() if k != "SECRET_KEY"
    }
    assert {var: read() for var, read in SERVER.items()} == server_defaults


def test_gunicorns_settings_are_checked_but_not_kept_in_the_apps_config(environ):
    """One definition each: nothing in the app read them from its config."""
    assert not {key(var) for var in SERVER} & from_environment().keys()


def test_gunicorn_takes_its_settings_from_the_same_definitions(environ):
    environ.setenv("KEFU_BIND", "127.0.0.1:18123")
    environ.setenv("KEFU_WORKERS", "3")
    environ.setenv("KEFU_LOG_LEVEL", "warning")
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert (settings["bind"], settings["workers"], settings["loglevel"]) == (
        "127.0.0.1:18123",
        3,
        "warning",
    )
    assert "config" not in settings  # gunicorn would take it for its -c setting
    environ.setenv("KEFU_BIND", "")  # one line, before any worker (or the master) starts
    with pytest.raises(SystemExit, match=re.escape("kefu: KEFU_BIND='': must be an address")):
        runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("var, bound, past", BOUNDS)
def test_each_bound_is_allowed_and_a_step_past_it_is_not(environ, var, bound, past):
    environ.setenv(var, bound)
    assert value(var) == float(bound)
    environ.setenv(var, past)
    with pytest.raises(SettingsError, match=f"{var}='{past}'"):
        from_environment()


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "error", "critical"])
def test_gunicorn_log_levels_pass_in_any_case(environ, level):
    environ.setenv("KEFU_LOG_LEVEL", level)
    assert value("KEFU_LOG_LEVEL") == level

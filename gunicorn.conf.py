"""gunicorn settings: one gevent worker holding many sockets; migrations once, in the master."""

import os
import resource
import subprocess
import sys

# Not "config": gunicorn would take that name for its -c setting.
from kefu import config as kefu_config  # plain os/secrets: no peewee in the master

worker_class = "gevent"
try:
    bind = kefu_config.bind()  # not empty
    # One worker by default (the memory broker). More workers need KEFU_BROKER=postgres
    # on PostgreSQL; on_starting refuses other combinations (docs/deployment.md).
    workers = kefu_config.workers()
    worker_connections = kefu_config.env_int("KEFU_WORKER_CONNECTIONS", 20000, least=1)  # 0: none
    graceful_timeout = kefu_config.env_int("KEFU_GRACEFUL_TIMEOUT", 10)
    loglevel = kefu_config.log_level()  # one of gunicorn's: it took any other word for info
except ValueError as exc:
    raise SystemExit(f"kefu: {exc}") from None
timeout = 30
keepalive = 5
# gunicorn 25+ opens a control socket for gunicornc at one path per user
# (~/.gunicorn/gunicorn.ctl): every kefu on the machine would take it over from the
# last. kefu does not use it.
control_socket_disable = True
accesslog = os.environ.get("KEFU_ACCESS_LOG") or None


def on_starting(server):
    """Before any worker forks: refuse a broker / worker / database combination that
    cannot work, raise the open-files limit and apply migrations once."""
    problem = _settings_problem(server) or _migrate(server)
    if problem:
        raise SystemExit(problem)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
        )


def on_reload(server):
    """SIGHUP (``systemctl reload``, after a deploy): the new workers run the files as
    they are now, so their migrations are applied first. The running master cannot
    refuse to go on as at start; it says what is wrong, loudly."""
    problem = _settings_problem(server) or _migrate(server)
    if problem:
        server.log.error("kefu: reload: %s", problem)


def _settings_problem(server) -> str | None:
    from kefu.config import from_environment
    from kefu.deployment import deployment_problem, upload_dir_problem, weak_secrets

    try:
        settings = from_environment()
    except ValueError as exc:  # a setting that is not a number, or out of its range
        return f"kefu: {exc}"
    finally:
        _forget_kefu()
    problem = deployment_problem(
        settings["BROKER"], server.cfg.workers, settings["DATABASE_URL"], settings["DB_POOL_SIZE"]
    ) or upload_dir_problem(settings["UPLOAD_DIR"])
    for warning in weak_secrets(settings):
        server.log.warning("kefu: %s", warning)
    return f"kefu: {problem}" if problem else None


def _migrate(server) -> str | None:
    # A child process, so that this master never imports peewee (see kefu/migrate.py).
    done = subprocess.run(
        [sys.executable, "-m", "kefu.migrate"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:  # its last line says why (one line if it could not connect)
        return done.stderr.strip() or f"migrations failed (exit {done.returncode})"
    server.log.info("migrations applied: %s", done.stdout.strip())
    return None


def _forget_kefu() -> None:
    """The master reads settings through kefu.config, and workers are forked from it: a
    worker started by a reload after a deploy ran the master's old kefu modules beside
    the new files (a new worker failed to boot, and the server went down). Forgotten,
    every worker imports kefu from the files as they are."""
    for name in [n for n in sys.modules if n == "kefu" or n.startswith("kefu.")]:
        del sys.modules[name]


def post_worker_init(worker):
    """On SIGTERM gunicorn stops accepting and waits for handlers; close every socket with
    1001 (going away) right away so clients reconnect elsewhere and resync."""
    import gevent

    live = worker.wsgi.extensions["kefu.live"]

    def close_sockets_when_stopping():
        while worker.alive:
            gevent.sleep(0.2)
        live.shutdown()

    gevent.spawn(close_sockets_when_stopping)
    live.start()  # absent agents' grace periods, counted from now

    # Opt-in (KEFU_STALL_MONITOR=1): measure the gevent hub's stalls for benchmarks.
    from kefu.realtime import stall

    stall.install(worker)

    # What is loaded by now (modules, models, routes, templates) lives as long as the
    # worker: keep it out of the full garbage collections, which otherwise walk all of
    # it each time while every socket waits (a third of the pause at 1,000 sockets).
    import gc
    import sys

    # A native thread (a commit, a checkpoint) that SQLite hands back needs the GIL from
    # the hub to finish; by default the hub keeps it up to 5 ms before it must let go,
    # and every send of the batch waits that long. 0.5 ms: the hub lets go sooner, and
    # nothing changes while no other thread wants the GIL.
    sys.setswitchinterval(0.0005)
    gc.collect()
    gc.freeze()
    # gevent keeps, per greenlet, the stack it was spawned from (for debugging): a dozen
    # objects per socket, in memory and in every collection. Not worth it here.
    gevent.config.track_greenlet_tree = False

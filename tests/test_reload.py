"""``systemctl reload`` (SIGHUP) after a deploy: the new workers run the new release, on
a schema migrated first.

Found by an operations tester: the master had imported kefu to read its settings, and a
worker forked on reload ran those old modules beside the new files. In the tester's
deploy the new worker failed to boot and the server went down; nor were the new
release's migrations applied. The test deploys a copy of kefu, starts it, writes a next
release over it and reloads.
"""

import shutil
import signal
import time

import pytest
import requests

from tests.support import ROOT, Server

PROBE_MIGRATION = """
import peewee as pw


def migrate(migrator, database, *, fake=False):
    @migrator.create_model
    class ReloadProbe(pw.Model):
        class Meta:
            table_name = "reload_probe"


def rollback(migrator, database, *, fake=False):
    migrator.remove_model("reload_probe")
"""


def _deploy_next_release(release) -> None:
    """A release whose package needs a function its config module did not have, and
    answers on a route of its own."""
    config = release / "kefu" / "config.py"
    config.write_text(config.read_text() + '\n\ndef release_name() -> str:\n    return "next"\n')
    package = release / "kefu" / "__init__.py"
    end = "\n    return app\n"
    assert package.read_text().count(end) == 1
    route = (
        "\n    from kefu.config import release_name\n\n"
        '    app.add_url_rule("/release", "release", lambda: {"release": release_name()})\n'
    )
    package.write_text(package.read_text().replace(end, route + end))
    (release / "migrations" / "999_reload_probe.py").write_text(PROBE_MIGRATION)


@pytest.mark.ignores_test_database  # the release, not the storage, is under test
def test_a_reload_after_a_deploy_runs_the_new_release_on_a_migrated_schema(tmp_path):
    release = tmp_path / "release"
    ignored = shutil.ignore_patterns(".*", "__pycache__", "tests", "bench", "docs", "uploads")
    shutil.copytree(ROOT, release, ignore=ignored)
    server = Server(tmp_path / "srv")
    server.root = release
    server.start()
    try:
        assert requests.get(server.url("/release"), timeout=5).status_code == 404
        _deploy_next_release(release)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = requests.get(server.url("/release"), timeout=2)
            except requests.RequestException:
                answer = None
            if answer is not None and answer.ok and answer.json() == {"release": "next"}:
                break
            assert server.proc.poll() is None, server.log()[-2000:]
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.2)
        assert server.sql("SELECT COUNT(*) FROM reload_probe") == [(0,)]
        assert "Worker failed to boot" not in server.log()
    finally:
        server.destroy()

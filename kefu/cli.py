"""``flask --app app kefu …`` and ``flask --app app db upgrade``."""

import json

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from peewee import PeeweeException

from kefu.db_errors import error_text
from kefu.errors import KefuError
from kefu.migrate import shown, upgrade
from kefu.services import accounts, upload_files


@with_appcontext
def _migrate_first() -> None:
    """Accounts can be made before the server ever ran: a fresh database gets its
    tables first, as ``make serve`` and gunicorn's start give it (nothing if current)."""
    _upgrade()


def _upgrade() -> list[str]:
    """Pending migrations applied. A database that cannot be opened or migrated is one
    line, as from ``python -m kefu.migrate`` (it was a page of chained tracebacks)."""
    url = current_app.config["DATABASE_URL"]
    try:
        return upgrade(url)
    except (PeeweeException, OSError, TypeError) as exc:
        problem = f"cannot open or migrate KEFU_DATABASE_URL ({shown(url)}): {error_text(exc)}"
        raise click.ClickException(problem) from None


kefu_cli = AppGroup("kefu", help="Manage kefu users and agents.", callback=_migrate_first)
db_cli = AppGroup("db", help="Database schema.")


def _emit(as_json: bool, payload: dict, text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


def user_json(user, token: str) -> dict:
    """What ``create-user --json`` prints."""
    return {"id": user.id, "uuid": user.uuid, "username": user.username, "token": token}


def agent_json(user, agent, token: str) -> dict:
    """What ``create-agent --json`` prints."""
    return {"id": user.id, "kefu_id": agent.id, **user_json(user, token)}


@kefu_cli.command("create-user")
@click.argument("username")
@click.option("--nickname", default="")
@click.option("--password", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def create_user(username, nickname, password, as_json):
    """Create a user and print its bearer token."""
    try:
        user, token = accounts.create_user(username, nickname, password)
    except KefuError as exc:
        raise click.ClickException(exc.message) from None
    _emit(as_json, user_json(user, token), f"user {user.username} id={user.id} token={token}")


@kefu_cli.command("create-agent")
@click.argument("username")
@click.option("--nickname", default="")
@click.option("--max-concurrent", type=int, default=None)
@click.option("--password", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def create_agent(username, nickname, max_concurrent, password, as_json):
    """Create an agent (account + kefu profile) and print its bearer token."""
    if max_concurrent is None:  # 0 is refused below, not taken for "the default"
        max_concurrent = current_app.config["DEFAULT_MAX_CONCURRENT"]
    try:
        user, agent, token = accounts.create_agent(username, nickname, max_concurrent, password)
    except KefuError as exc:
        raise click.ClickException(exc.message) from None
    _emit(
        as_json,
        agent_json(user, agent, token),
        f"agent {user.username} kefu_id={agent.id} token={token}",
    )


@kefu_cli.command("set-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def set_password(username, password, as_json):
    """Set a password; the person's open sockets and sessions are closed."""
    _change(lambda: accounts.set_password(username, password), as_json, "password set")


@kefu_cli.command("disable")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def disable(username, as_json):
    """Disable an account: tokens stop working, sockets and sessions are closed."""
    _change(lambda: accounts.set_active(username, False), as_json, "disabled")


@kefu_cli.command("enable")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def enable(username, as_json):
    """Enable a disabled account again."""
    _change(lambda: accounts.set_active(username, True), as_json, "enabled")


@kefu_cli.command("prune-uploads")
@click.option(
    "--older-than-hours",
    type=click.FloatRange(min=1),
    default=24.0,
    show_default=True,
    help="Keep uploads younger than this: they may be on their way into a message.",
)
@click.option("--dry-run", is_flag=True, help="List them; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def prune_uploads(older_than_hours, dry_run, as_json):
    """Delete uploads no message refers to (uploaded, never sent)."""
    folder, age = current_app.config["UPLOAD_DIR"], older_than_hours * 3600
    names = upload_files.unnamed(folder, age) if dry_run else upload_files.prune(folder, age)
    verb = "would delete" if dry_run else "deleted"
    text = "\n".join([f"{verb} {len(names)} upload(s) in {folder}", *names])
    _emit(as_json, {"dry_run": dry_run, "uploads": names}, text)


def _change(action, as_json: bool, what: str) -> None:
    try:
        user = action()
    except KefuError as exc:
        raise click.ClickException(exc.message) from None
    payload = {"id": user.id, "username": user.username, "is_active": user.is_active}
    _emit(as_json, payload, f"{user.username}: {what}")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply pending migrations."""
    applied = _upgrade()
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


def init_app(app) -> None:
    app.cli.add_command(kefu_cli)
    app.cli.add_command(db_cli)

"""``flask --app app kefu …`` and ``flask --app app db upgrade``."""

import json

import click
from flask import current_app
from flask.cli import AppGroup

from kefu.errors import KefuError
from kefu.migrate import upgrade
from kefu.services import accounts

kefu_cli = AppGroup("kefu", help="Manage kefu users and agents.")
db_cli = AppGroup("db", help="Database schema.")


def _emit(as_json: bool, payload: dict, text: str) -> None:
    click.echo(json.dumps(payload) if as_json else text)


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
    payload = {"id": user.id, "uuid": user.uuid, "username": user.username, "token": token}
    _emit(as_json, payload, f"user {user.username} id={user.id} token={token}")


@kefu_cli.command("create-agent")
@click.argument("username")
@click.option("--nickname", default="")
@click.option("--max-concurrent", type=int, default=None)
@click.option("--password", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object only.")
def create_agent(username, nickname, max_concurrent, password, as_json):
    """Create an agent (account + kefu profile) and print its bearer token."""
    limit = max_concurrent or current_app.config["DEFAULT_MAX_CONCURRENT"]
    try:
        user, agent, token = accounts.create_agent(username, nickname, limit, password)
    except KefuError as exc:
        raise click.ClickException(exc.message) from None
    payload = {
        "id": user.id,
        "kefu_id": agent.id,
        "uuid": user.uuid,
        "username": user.username,
        "token": token,
    }
    _emit(as_json, payload, f"agent {user.username} kefu_id={agent.id} token={token}")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply pending migrations."""
    applied = upgrade(current_app.config["DATABASE_URL"])
    click.echo(
        f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else "")
    )


def init_app(app) -> None:
    app.cli.add_command(kefu_cli)
    app.cli.add_command(db_cli)

"""Entry point for gunicorn (``app:app``) and the flask CLI (``flask --app app …``)."""

from kefu import create_app
from kefu.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:  # one line, as gunicorn's master says it, not a traceback
    raise SystemExit(f"kefu: {exc}") from None

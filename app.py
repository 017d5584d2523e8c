"""Entry point for gunicorn (``app:app``) and the flask CLI (``flask --app app …``)."""

from kefu import create_app

app = create_app()

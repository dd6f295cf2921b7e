"""gunicorn entry point: `gunicorn gateway.wsgi:app` (settings from SAMQ_* parsed once, here)."""

from gateway.app import create_app
from shared.settings import Settings

app = create_app(Settings())

"""gunicorn entry point: `gunicorn gateway.wsgi:app` (settings from SAMQ_* parsed once, here)."""

from gateway.app import create_app
from shared import logs
from shared.settings import Settings

settings = Settings()
logs.setup(settings.log_format)
app = create_app(settings)

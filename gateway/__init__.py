"""The thin HTTP gateway: auth, validation, credits, enqueue. No torch, no worker imports.

Nothing is imported here: gunicorn loads gateway.gunicorn_conf before prometheus-client may be imported.
"""

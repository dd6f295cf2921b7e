"""The thin HTTP gateway: auth, validation, credits, enqueue. No torch, no worker imports."""

from gateway.app import create_app

__all__ = ["create_app"]

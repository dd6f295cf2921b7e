"""Model builders and loaders (loaded once per worker process, never at import)."""

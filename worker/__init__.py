"""The GPU worker: Celery tasks, the inference pipeline and the models."""

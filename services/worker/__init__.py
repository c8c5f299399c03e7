"""The Celery worker deployable: page tasks that call the model workers."""

"""Celery on Redis: the app (celery_app) and the dispatch port's implementation (dispatch)."""

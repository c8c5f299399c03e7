"""The REST API deployable (FastAPI): `docvl api`."""

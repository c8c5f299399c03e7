"""The job record in Postgres: models, migrations, and the repositories that change it."""

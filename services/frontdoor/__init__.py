"""What the REST API and the gRPC gateway share: the JobService wired to Celery and Prefect."""

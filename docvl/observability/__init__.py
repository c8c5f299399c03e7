"""Observability shared by every deployable: Prometheus metrics, OpenTelemetry traces, structured logs."""

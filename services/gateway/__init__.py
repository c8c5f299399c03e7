"""The gRPC job gateway: docvl.v1.JobService over the shared JobService, with health and reflection."""

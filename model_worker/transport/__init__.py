"""gRPC transport of the model worker: its servicer and server. The protobuf mapping belongs to the
inference contract (docvl/inference/mapping.py), which the callers share."""

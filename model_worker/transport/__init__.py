"""gRPC transport of the model worker: the only place that knows the protobuf types."""

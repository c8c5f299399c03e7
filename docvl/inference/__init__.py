"""The inference contract, shared by the model worker and its callers: request and response types, their
protobuf mapping, and the gRPC client."""

"""The GPU model worker: one DeepSeek-VL model behind gRPC, with dynamic batching."""

"""docvl: document understanding with DeepSeek-VL."""

__version__ = "0.1.0"

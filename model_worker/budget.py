"""The continuous scheduler's token budget: how many key/value cache tokens the running rows may hold.

Set explicitly (`DOCVL_MODEL_WORKER_MAX_BATCH_TOTAL_TOKENS`), or 0 to size it from the device: on CUDA,
after the weights are loaded and warmed up, the memory the worker may use
(`DOCVL_MODEL_WORKER_GPU_MEMORY_FRACTION` of the card) less what is allocated, with a fifth of that kept
back for activations (the prefill of `max_prefill_tokens`, the vision encoders), divided by the cache's
bytes per token: 2 (keys and values) × layers × key/value heads × head dim × bytes per value. On the CPU
the budget is `CPU_DEFAULT_TOKENS`. A misestimate costs no request: running out of memory while decoding
preempts a row and recomputes it later (see `model_worker.scheduler`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig

log = logging.getLogger(__name__)

CPU_DEFAULT_TOKENS = 65_536
ACTIVATION_SHARE = 0.2  # of the free memory, kept back for activations and fragmentation


@dataclass(frozen=True)
class Memory:
    """A device's memory, in bytes, as the budget needs it."""

    total: int
    allocated: int


def cache_bytes_per_token(config: PretrainedConfig, dtype: torch.dtype) -> int:
    """Bytes one token's keys and values take in the language model's cache."""
    text = config.get_text_config()
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    element = torch.empty((), dtype=dtype).element_size()
    return 2 * int(text.num_hidden_layers) * kv_heads * head_dim * element


def sized_budget(memory: Memory, fraction: float, bytes_per_token: int) -> int:
    """Cache tokens that fit in `fraction` of the device once the weights are in (at least 1)."""
    free = memory.total * fraction - memory.allocated
    return max(1, int(free * (1 - ACTIVATION_SHARE) // bytes_per_token))


def token_budget(
    configured: int, fraction: float, config: PretrainedConfig, dtype: torch.dtype, device: torch.device
) -> int:
    """The budget to run with: the configured one, else sized from the device (see the module's text)."""
    if configured:
        return configured
    if device.type != "cuda":
        return CPU_DEFAULT_TOKENS
    memory = Memory(
        total=torch.cuda.get_device_properties(device).total_memory,
        allocated=torch.cuda.memory_allocated(device),
    )
    per_token = cache_bytes_per_token(config, dtype)
    budget = sized_budget(memory, fraction, per_token)
    log.info(
        "token budget sized from %s: %d cache tokens (%.1f GiB of %.1f GiB at fraction %.2f, "
        "%.2f GiB allocated, %d bytes per token)",
        torch.cuda.get_device_name(device),
        budget,
        budget * per_token / 2**30,
        memory.total / 2**30,
        fraction,
        memory.allocated / 2**30,
        per_token,
    )
    return budget

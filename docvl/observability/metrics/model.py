"""The model worker's metrics: its queue, batches, the time each stage takes, tokens, errors by code, the
continuous scheduler's running rows, tokens per step, cache use and preemptions, and (on CUDA) the GPU
memory torch holds. torch is not imported here: the GPU gauges are registered by the engine once it
knows it runs on CUDA."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from docvl.errors import DocvlError
from docvl.observability.metrics import NAMESPACE, SECONDS_BUCKETS

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

queued = Gauge("model_requests_queued", "Requests waiting for a batch now.", namespace=NAMESPACE)
requests = Counter(
    "model_requests", "Requests that reached the batcher, by outcome (completed, failed, dropped: the "
    "caller went away or its deadline passed).", ["outcome"], namespace=NAMESPACE,
)  # fmt: skip
batch_size = Histogram(
    "model_batch_size", "Requests per generate call (continuous scheduler: per prefill of newcomers; the "
    "sum: requests batched).", namespace=NAMESPACE,
    buckets=BATCH_BUCKETS,
)  # fmt: skip
queue_wait = Histogram(
    "model_queue_wait_seconds", "Time a request waited for its batch.", namespace=NAMESPACE,
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
preprocessing = Histogram(
    "model_preprocessing_seconds", "Decoding, checking and processing one request's images and prompt.",
    namespace=NAMESPACE, buckets=SECONDS_BUCKETS,
)  # fmt: skip
vision = Histogram(
    "model_vision_seconds", "Encoding a batch's images (the vision tower).", namespace=NAMESPACE,
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
generation = Histogram(
    "model_generation_seconds", "Generating a batch's text (the language model; continuous scheduler: the "
    "prefill of newcomers, decoding steps are model_decode_step_seconds).", namespace=NAMESPACE,
    buckets=SECONDS_BUCKETS,
)  # fmt: skip
generated_tokens = Counter("model_generated_tokens", "Tokens generated.", namespace=NAMESPACE)
image_tokens = Counter("model_image_tokens", "Image tokens the model read.", namespace=NAMESPACE)
tokens_per_second = Gauge(
    "model_tokens_per_second", "Generation throughput of the last batch (its tokens over its time).",
    namespace=NAMESPACE,
)  # fmt: skip
running_rows = Gauge(
    "model_running_rows", "Continuous scheduler: rows in the running batch after its last step.",
    namespace=NAMESPACE,
)  # fmt: skip
decode_step = Histogram(
    "model_decode_step_seconds", "Continuous scheduler: one decoding step of the running batch (one token "
    "for every row).", namespace=NAMESPACE, buckets=SECONDS_BUCKETS,
)  # fmt: skip
tokens_per_step = Histogram(
    "model_tokens_per_step", "Continuous scheduler: tokens decoded per decoding step (one per running row).",
    namespace=NAMESPACE, buckets=BATCH_BUCKETS,
)  # fmt: skip
cache_tokens = Gauge(
    "model_cache_tokens", "Continuous scheduler: key/value cache positions the running batch holds (rows × "
    "padded length, padding included).", namespace=NAMESPACE,
)  # fmt: skip
preemptions = Counter(
    "model_preemptions", "Continuous scheduler: rows preempted (out of memory) to be recomputed later.",
    namespace=NAMESPACE,
)  # fmt: skip
errors = Counter(
    "model_errors", "Requests answered with an error, by docvl error code.", ["code"], namespace=NAMESPACE
)


class GpuMemory(Collector):
    """GPU memory torch has allocated and reserved, read at scrape time (only registered on CUDA)."""

    def __init__(self, allocated: Callable[[], int], reserved: Callable[[], int]) -> None:
        self.allocated = allocated
        self.reserved = reserved

    FAMILIES = (
        ("allocated", "GPU memory held by tensors."),
        ("reserved", "GPU memory reserved by torch's caching allocator."),
    )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The families, without reading the GPU (registration calls this)."""
        for name, text in self.FAMILIES:
            yield GaugeMetricFamily(f"{NAMESPACE}_model_gpu_memory_{name}_bytes", text)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for (name, text), read in zip(self.FAMILIES, (self.allocated, self.reserved), strict=True):
            yield GaugeMetricFamily(f"{NAMESPACE}_model_gpu_memory_{name}_bytes", text, value=read())


_gpu: GpuMemory | None = None


def watch_gpu_memory(
    allocated: Callable[[], int], reserved: Callable[[], int], registry: CollectorRegistry = REGISTRY
) -> None:
    """Export the GPU memory gauges (once per process)."""
    global _gpu
    if _gpu is None:
        _gpu = GpuMemory(allocated, reserved)
        registry.register(_gpu)


@contextmanager
def errors_counted() -> Iterator[None]:
    """Count the error a request ends with by its docvl code (anything else: `internal`)."""
    try:
        yield
    except DocvlError as exc:
        errors.labels(exc.code).inc()
        raise
    except Exception:
        errors.labels("internal").inc()
        raise


def watch_queue(depth: Callable[[], int]) -> None:
    queued.set_function(depth)


def record_generate(vision_s: float, generation_s: float, tokens: int) -> None:
    """One generate call: its stages' times and its throughput."""
    vision.observe(vision_s)
    generation.observe(generation_s)
    if generation_s > 0:
        tokens_per_second.set(tokens / generation_s)

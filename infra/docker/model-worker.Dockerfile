# The model worker: DeepSeek-VL on one NVIDIA GPU (bf16). The checkpoint is mounted read-only at /models/model.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# PyPI's torch wheel for Linux x86_64 is the CUDA build; its CUDA libraries come as wheels.
RUN pip install torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY docvl ./docvl
COPY model_worker ./model_worker
COPY services ./services
COPY workflows ./workflows
RUN pip install . && pip uninstall -y torchvision || true

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 docvl && useradd --system --uid 10001 --gid docvl --home /home/docvl --create-home docvl
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    DOCVL_MODEL_WORKER_MODEL_DIR=/models/model DOCVL_MODEL_WORKER_HOST=0.0.0.0 DOCVL_MODEL_WORKER_DEVICE=cuda
USER 10001:10001
WORKDIR /home/docvl
EXPOSE 50061
ENTRYPOINT ["docvl"]
CMD ["model-worker"]

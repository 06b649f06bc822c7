# The two commands of the README: `make run` and `make test`. Both set up what
# they need first (apt packages, .venv, pip install), idempotently.
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv ca-certificates runc containernetworking-plugins busybox-static iproute2 util-linux iptables docker-registry zstd
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: setup
	./scripts/run-example

lint: setup
	$(VENV)/bin/ruff check nanokube tests bench tools
	$(VENV)/bin/ruff format --check nanokube tests bench tools
	$(VENV)/bin/mypy nanokube

test: setup lint
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info

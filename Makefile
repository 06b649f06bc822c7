# The two commands of the README: `make run` and `make test`. Both set up what
# they need first (apt packages, .venv, pip install), idempotently.
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv ca-certificates runc containernetworking-plugins busybox-static iproute2 util-linux iptables docker-registry zstd etcd-server
# Only the benchmarks compare with podman.
BENCH_PACKAGES := podman
STAMP := $(VENV)/.installed

# Install those of the Debian packages $(1) that are missing; `apt-get update`
# only then (a fresh machine has no package lists), so repeated runs stay fast.
define apt_install
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
endef

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(call apt_install,$(APT_PACKAGES))
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
	$(call apt_install,$(BENCH_PACKAGES))
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info

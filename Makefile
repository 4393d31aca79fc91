# Flotilla — build, test, lint, generate, run.
#
# Everything this file needs is built from versions pinned in go.mod files:
# the Go tools (buf, protoc plugins, grpcurl) from tools/go.mod into bin/.

SHELL       := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO          ?= go
BIN         := $(CURDIR)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -s -w -X main.version=$(VERSION)
# grpcnotrace drops grpc-go's golang.org/x/net/trace, whose html/template
# makes the linker keep every exported method of every type: 3.9 MB of the
# agent's binary. (The tests build without it; tracing is never enabled.)
BUILD_TAGS  := grpcnotrace
MODULES     := gen pkg controlplane agent e2e bench cli
PACKAGES    := $(addprefix ./,$(addsuffix /...,$(MODULES)))
# go test starts packages in the order given, at most -p (the cores) at a
# time: the end-to-end suites, the longest (about 9 and 6 minutes in CI),
# go first so that the rest runs beside them instead of after them.
TEST_MODULES  := e2e controlplane cli agent bench pkg gen
TEST_PACKAGES := $(addprefix ./,$(addsuffix /...,$(TEST_MODULES)))
ifneq ($(sort $(MODULES)),$(sort $(TEST_MODULES)))
$(error TEST_MODULES must list the modules of MODULES, in the order their tests start)
endif
TOOLS_STAMP := $(BIN)/.tools-$(shell cat tools/go.sum tools/go.mod | sha256sum | cut -c1-12)
IMAGE_TAG   ?= $(VERSION)

.PHONY: all build tools deps rules-test compose-check test test-postgres test-images test-short fuzz lint fmt vet buf-lint generate generate-check run images demo-images bench clean

all: lint build test

## build: static binaries (CGO off) in bin/
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/flotilla-controlplane ./controlplane/cmd/flotilla-controlplane
	CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/flotilla-agent ./agent/cmd/flotilla-agent
	CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/flotilla-sim ./agent/cmd/flotilla-sim
	CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/flotilla ./cli/cmd/flotilla

## tools: buf, protoc-gen-go, protoc-gen-go-grpc, grpcurl, the registry and
## versitygw (the S3 server the backup tests store into), pinned in tools/go.mod
tools: $(TOOLS_STAMP)
$(TOOLS_STAMP): tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off CGO_ENABLED=0 $(GO) build -o $(BIN)/ \
		github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		github.com/fullstorydev/grpcurl/cmd/grpcurl \
		github.com/distribution/distribution/v3/cmd/registry \
		github.com/versity/versitygw/cmd/versitygw
	@rm -f $(BIN)/.tools-* && touch $@

## deps: the Debian packages the integration tests use (nginx; PostgreSQL 15
## client and server binaries; systemd-analyze and cloud-init for the deploy
## assets' checks; promtool from prometheus for the alert rules' tests;
## tmux, the terminal the flotilla command's live view is checked in;
## docker-compose for the compose demo's check and test),
## installed with apt-get when missing. apt-get waits up to
## APT_LOCK_TIMEOUT seconds for another install to release dpkg's lock; the
## package lists' lock (another apt-get update), which that option does not
## cover in apt 2.6, is retried every 10s for 5 minutes.
DEB_PACKAGES := nginx postgresql-15 postgresql-client-15 systemd cloud-init prometheus tmux docker-compose
APT_LOCK_TIMEOUT ?= 300
APT_GET := apt-get -o DPkg::Lock::Timeout=$(APT_LOCK_TIMEOUT)
deps:
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql-15"; \
	[ -x /usr/lib/postgresql/15/bin/pg_dump ] || missing="$$missing postgresql-client-15"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v cloud-init >/dev/null 2>&1 || missing="$$missing cloud-init"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v tmux >/dev/null 2>&1 || missing="$$missing tmux"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then \
		echo "not root: cannot apt-get install$$missing; the tests that need them will skip"; \
	elif [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		n=0; until out=$$($(APT_GET) update -qq 2>&1); do \
			case "$$out" in *"Could not get lock"*) ;; *) echo "$$out" >&2; exit 1 ;; esac; \
			n=$$((n+1)); [ $$n -lt 30 ] || { echo "$$out" >&2; exit 1; }; \
			echo "apt-get update: another apt-get update holds the package lists; retrying in 10s"; sleep 10; \
		done; \
		DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$missing || exit 1; \
		service nginx stop >/dev/null 2>&1 || true; service prometheus stop >/dev/null 2>&1 || true; \
	fi

## rules-test: promtool checks the alert rules and runs their unit tests
## (deploy/prometheus/tests); an alert without a test fails it
RULES       := deploy/prometheus/flotilla-alerts.yml
RULES_TESTS := $(wildcard deploy/prometheus/tests/*.yml)
rules-test: deps
	@command -v promtool >/dev/null 2>&1 || { echo "promtool not found: run make deps as root (Debian package prometheus)"; exit 1; }
	promtool check rules $(RULES)
	promtool test rules $(RULES_TESTS)
	@untested=""; \
	for a in $$(sed -n 's/^ *- alert: *//p' $(RULES)); do \
		grep -qE "alertname: *$$a *$$" $(RULES_TESTS) || untested="$$untested $$a"; \
	done; \
	if [ -n "$$untested" ]; then echo "alerts without a promtool test:$$untested"; exit 1; fi

# The suites that start control planes through servertest, whose store
# FLOTILLA_TEST_STORE selects (the store packages run both drivers anyway).
PG_SUITES   := ./controlplane/internal/server/... ./controlplane/internal/api/... ./controlplane/internal/rollout/...
PG_TEST     := FLOTILLA_TEST_STORE=postgres $(GO) test -race -count=1 -timeout 15m $(PG_SUITES)

## test: every test with the race detector (the end-to-end tests use bin/)
## and, at the same time, the control-plane suites again on PostgreSQL (a
## throwaway cluster per package; mandatory under FLOTILLA_E2E=1). That pass
## mostly waits on the rollout loops' timers (about 0.6 of a core), so it
## runs alongside the main one; its output follows the main pass's.
test: deps build tools test-images
	@pglog=$$(mktemp); trap 'rm -f "$$pglog"' EXIT; \
	echo "$(PG_TEST) (in the background)"; \
	$(PG_TEST) >"$$pglog" 2>&1 & pg=$$!; \
	trap 'kill $$pg 2>/dev/null; rm -f "$$pglog"' INT TERM; \
	main=0; FLOTILLA_BIN_DIR=$(BIN) $(GO) test -race -count=1 -timeout 15m $(TEST_PACKAGES) || main=$$?; \
	pgrc=0; wait $$pg || pgrc=$$?; \
	echo "== $(PG_TEST): exit status $$pgrc"; cat "$$pglog"; \
	[ $$main -eq 0 ] && [ $$pgrc -eq 0 ]

## test-postgres: the control-plane suites on PostgreSQL only
test-postgres:
	$(PG_TEST)

# The container tests use the real images; build them when Docker is here
# (the compose demo's Nginx image also needs this machine's nginx).
test-images:
	@if ! docker info >/dev/null 2>&1; then echo "no Docker engine: images not built; the container tests will skip"; \
	elif ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then \
		echo "no nginx: the compose demo's images not built; its test will skip"; $(MAKE) --no-print-directory images; \
	else $(MAKE) --no-print-directory images demo-images; fi

## test-short: unit tests only
test-short:
	$(GO) test -short -count=1 $(PACKAGES)

## fuzz: run each Go fuzz target for FUZZTIME (default 5s). Their seed
## corpora (testdata/fuzz/<FuzzName>/) also run with every `make test`.
FUZZTIME ?= 5s
# One <package directory>:<FuzzName> per line, grouped by module; add yours.
FUZZ_TARGETS := \
	agent/internal/commands:FuzzHandle \
	agent/internal/docker:FuzzValidate \
	agent/internal/backup:FuzzValidate \
	agent/internal/backup:FuzzValidateRestore \
	agent/internal/nginx:FuzzValidate \
	agent/internal/nginx:FuzzEditUpstream \
	agent/internal/config:FuzzParseLabels \
	controlplane/internal/api:FuzzValidateRegister \
	controlplane/internal/api:FuzzValidateHello \
	controlplane/internal/api:FuzzValidateHeartbeat \
	controlplane/internal/api:FuzzValidateCreateJoinToken \
	controlplane/internal/api:FuzzListAgentsQuery \
	controlplane/internal/api:FuzzValidateCreateAPIToken \
	controlplane/internal/api:FuzzValidateIssueOperatorCertificate \
	controlplane/internal/api:FuzzAuditQuery \
	controlplane/internal/api:FuzzValidateDeregister \
	controlplane/internal/api:FuzzValidateRenew \
	controlplane/internal/commands:FuzzValidateSpec \
	controlplane/internal/selector:FuzzParse \
	controlplane/internal/schedule:FuzzParse \
	controlplane/internal/audit:FuzzRedact
## On a loaded machine Go's fuzzing engine can fail a run with "context
## deadline exceeded" when its workers are slow to stop at the end, without
## any failing input; such a run is repeated once. A real failure (a
## failing input written to testdata) fails at once.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		for attempt in 1 2; do \
			echo "== $$name in ./$$pkg for $(FUZZTIME)"; \
			if out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) ./$$pkg 2>&1); then echo "$$out"; break; fi; \
			echo "$$out"; \
			if [ $$attempt = 1 ] && grep -q "context deadline exceeded" <<<"$$out" && ! grep -q "Failing input written" <<<"$$out"; then \
				echo "== $$name: the fuzzing engine timed out stopping its workers, no failing input; running it again"; continue; fi; \
			exit 1; \
		done; \
	done

## lint: gofmt, go vet, buf lint
lint: fmt vet buf-lint

fmt:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PACKAGES)

buf-lint: tools
	$(BIN)/buf lint

## generate: regenerate gen/ from proto/
generate: tools
	rm -rf gen/flotilla
	PATH=$(BIN):$$PATH $(BIN)/buf generate
	# The descriptors with their comments, for server reflection
	# (protoc-gen-go strips comments from the ones it compiles in).
	$(BIN)/buf build -o gen/descriptor/flotilla.binpb

## generate-check: fail when gen/ differs from what proto/ generates
generate-check: generate
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "gen/ is out of date with proto/; run 'make generate' and commit:"; git status --porcelain -- gen; exit 1; fi

## run: a control plane on SQLite plus one local agent (Ctrl-C stops both)
run: build tools
	deploy/dev/run.sh

## bench: every benchmark of bench/ in its quick version at BENCH_AGENTS
## agents (a control plane, simulators and a real agent under /dev/shm),
## once on SQLite and once on a throwaway PostgreSQL cluster (-store),
## appending the figures to bench/results.md; then connect and fanout on
## three control-plane replicas of one PostgreSQL at BENCH_REPLICA_AGENTS
## agents (about 50 s). One benchmark at full length:
## bin/flotilla-bench <name> -agents N (see bin/flotilla-bench -h).
BENCH_AGENTS ?= 500
BENCH_REPLICA_AGENTS ?= 300
bench: build
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/flotilla-bench ./bench/cmd/flotilla-bench
	rc=0; for store in sqlite postgres; do \
		$(BIN)/flotilla-bench all -agents $(BENCH_AGENTS) -quick -store $$store -repo $(CURDIR) -bin $(BIN) -go $(GO) || rc=1; \
	done; \
	for b in connect fanout; do \
		$(BIN)/flotilla-bench $$b -replicas 3 -store postgres -agents $(BENCH_REPLICA_AGENTS) -quick -repo $(CURDIR) -bin $(BIN) || rc=1; \
	done; exit $$rc

## images: the agent and control-plane images, FROM scratch (the control
## plane's data and bootstrap directories made here, owned by its user in
## the image)
images: build
	@mkdir -p $(BIN)/image-context
	cp $(BIN)/flotilla-controlplane $(BIN)/flotilla-agent $(BIN)/image-context/
	cp /etc/ssl/certs/ca-certificates.crt $(BIN)/image-context/ca-certificates.crt
	mkdir -p $(BIN)/image-context/rootfs/var/lib/flotilla $(BIN)/image-context/rootfs/var/lib/flotilla-bootstrap
	chmod 0700 $(BIN)/image-context/rootfs/var/lib/flotilla
	chmod 0755 $(BIN)/image-context/rootfs/var/lib/flotilla-bootstrap
	for c in controlplane agent; do \
		docker build -f Dockerfile.$$c -t flotilla-$$c:$(IMAGE_TAG) -t flotilla-$$c:latest \
			--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) $(BIN)/image-context; \
	done

## demo-images: the compose demo's other images, FROM scratch
## (deploy/compose/images): the demo application (e2e/testapp), the
## registry `make tools` builds, and Nginx from this machine's package
## (no base image can be pulled here)
DEMO_CONTEXT := $(BIN)/demo-context
demo-images: tools
	@rm -rf $(DEMO_CONTEXT) && mkdir -p $(DEMO_CONTEXT)/app $(DEMO_CONTEXT)/registry/rootfs/var/lib/registry
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(DEMO_CONTEXT)/app/testapp ./e2e/testapp
	docker build -f deploy/compose/images/Dockerfile.app -t flotilla-demo-app:latest $(DEMO_CONTEXT)/app
	cp $(BIN)/registry deploy/compose/images/registry.yml $(DEMO_CONTEXT)/registry/
	docker build -f deploy/compose/images/Dockerfile.registry -t flotilla-demo-registry:latest $(DEMO_CONTEXT)/registry
	deploy/compose/images/nginx-rootfs.sh $(DEMO_CONTEXT)/nginx/rootfs
	docker build -f deploy/compose/images/Dockerfile.nginx -t flotilla-demo-nginx:latest $(DEMO_CONTEXT)/nginx

## compose-check: docker-compose (or docker compose) validates the demo's
## compose file as a new user would run it: no variable set, nothing else
COMPOSE_FILE_DEMO := deploy/compose/docker-compose.yml
compose-check: deps
	@if command -v docker-compose >/dev/null 2>&1; then compose=docker-compose; \
	elif docker compose version >/dev/null 2>&1; then compose="docker compose"; \
	else echo "compose-check: neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)"; exit 1; fi; \
	echo "$$compose -f $(COMPOSE_FILE_DEMO) config -q"; \
	env -u FLOTILLA_DEMO_ID -u FLOTILLA_DEMO_GRPC_PORT -u FLOTILLA_DEMO_METRICS_PORT -u FLOTILLA_DEMO_HTTP_PORT -u FLOTILLA_DEMO_REGISTRY_PORT \
		$$compose -f $(COMPOSE_FILE_DEMO) config -q

clean:
	rm -rf $(BIN) .data

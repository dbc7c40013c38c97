# Sensorflow's entry points. `make test` is the one command CI runs.
SHELL := /bin/bash
GO ?= go
SERVICES := deploy/local/services.sh
export SENSORFLOW_REQUIRE_SERVICES ?= 1

.PHONY: browser build fuzz bench eval faults run test test-short lint services services-down services-status tools clean

build: ## build bin/sensorflow
	CGO_ENABLED=0 $(GO) build -o bin/sensorflow .

test: lint services browser tools ## start the local servers and build the peer tools if needed, run every test with -race, fuzz briefly, then the fault scenarios
	SENSORFLOW_REQUIRE_SERVICES=1 $(GO) test -race -count=1 -timeout 40m ./...
	$(MAKE) fuzz
	$(MAKE) faults

# Each target runs for a number of executions (about 8 s each on 2 cores), not a duration:
# a duration (-fuzztime 10s) can fail with a bare "context deadline exceeded" and no failing
# input, a race in Go's fuzz coordinator (go.dev/issue/75804, fixed in Go 1.27).
# FUZZTIME=2000000x applies one budget to every target (a duration works too, with that risk).
FUZZ_TARGETS := FuzzDecode:./internal/sensor/:100000x FuzzParseTelemetry:./internal/sensor/:150000x \
	FuzzParseReading:./internal/sensor/:200000x FuzzParseAlert:./internal/sensor/:60000x FuzzAlertLine:./processor/sink/:80000x \
	FuzzReadingLine:./processor/sink/:60000x FuzzLoadRules:./processor/detect/:20000x FuzzRestoreDevice:./processor/detect/:60000x \
	FuzzReplay:./cli/:100000x
fuzz: ## run each fuzz target briefly; failing inputs are kept in testdata/fuzz as regression tests
	@set -e; for t in $(FUZZ_TARGETS); do IFS=: read -r name pkg budget <<<"$$t"; \
	  echo "$(GO) test -run '^\$$' -fuzz '^$$name\$$' -fuzztime $${FUZZTIME:-$$budget} $$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime "$${FUZZTIME:-$$budget}" "$$pkg"; done
	@# Keep the corpus the fuzzers found as seeds of the package's tests (new inputs only).
	@cache=$$($(GO) env GOCACHE)/fuzz/github.com/sensorflow/sensorflow; \
	for d in $$cache/*/Fuzz* $$cache/*/*/Fuzz*; do [ -d "$$d" ] || continue; \
	  pkg=$${d#$$cache/}; pkg=$${pkg%/*}; mkdir -p $$pkg/testdata/fuzz/$${d##*/}; cp -n $$d/* $$pkg/testdata/fuzz/$${d##*/}/; done

test-short: ## hermetic tests only (no servers)
	$(GO) test -short -count=1 ./...

# staticcheck is pinned and installed with go install into bin/tools on first use.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := bin/tools/staticcheck-$(STATICCHECK_VERSION)
$(STATICCHECK):
	GOBIN=$(CURDIR)/bin/tools $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/tools/staticcheck $@

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

services: ## start Mosquitto, Kafka, Cassandra and InfluxDB on loopback (idempotent)
	$(SERVICES) up

tools: ## build the pinned Prometheus and promtool the tests run (deploy/local/tools.sh; cached in ~/.cache/sensorflow)
	deploy/local/tools.sh install prometheus promtool

services-down: ## stop them
	$(SERVICES) down

services-status: ## state, version, port, pid and log of each
	$(SERVICES) status

clean: services-down
	rm -rf .services bin

run: services ## start the local servers and run simulator, bridge and processor
	$(GO) run . -target=all -log.format=text

BENCHFLAGS ?=
bench: services build ## throughput, latency and cost against ceilings measured in the same run: out/bench.{txt,json,svg}
	@mkdir -p out
	deploy/local/tools.sh install telegraf
	set -o pipefail; $(GO) run ./bench -out out $(BENCHFLAGS) | tee out/bench.txt
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 5 ./processor/detect/ ./internal/sensor/ | tee out/bench-micro.txt
	set -o pipefail; $(GO) test -run '^$$' -bench 'SinkVsPlain' -benchtime 40000x -count 1 ./processor/sink/ | tee -a out/bench-micro.txt
	@echo "table: out/bench.txt · results: out/bench.json · plot: out/bench.svg · profiles: out/profiles/ · go test benchmarks (benchstat): out/bench-micro.txt"

SEED ?= 11
eval: services build ## detection quality: precision and recall of the live pipeline on the simulator's ground truth, NAB through `sensorflow replay`, simulated fleets offline; every figure in eval/RESULTS.md
	@mkdir -p out/eval
	rm -f out/eval/live.json
	set -o pipefail; SENSORFLOW_EVAL_SEED=$(SEED) SENSORFLOW_EVAL_OUT=$(CURDIR)/out/eval $(GO) test -count=1 -run '^TestDetectionQuality$$' -v ./e2e/ | grep -E 'live detection|^(ok|FAIL|---)'
	$(GO) run ./eval -nab ../shared/nab -scorer ../shared/tools/nabscore -out out/eval -report eval/RESULTS.md

browser: ## install Chromium for the dashboard's browser test (Debian package)
	deploy/local/browser.sh

FAULTSFLAGS ?=
faults: services build ## fault scenarios against the real servers (kill -9, restarts, outages, scale out and in, backpressure): out/faults/faults.txt
	$(GO) run ./faults -out out/faults $(FAULTSFLAGS)

# Converge: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
PORT ?= 8080
DATA ?= ./data
BIN := $(BUILD)/src/app/converge

.PHONY: all deps deps-test build web run test unit bench bench-smoke cluster clean format

all: build

deps:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD)

# The web client (web/dist), served by the node at /.
web: deps
	@scripts/build-web.sh

run: build web
	$(BIN) serve --listen 127.0.0.1:$(PORT) --data-dir $(DATA) --web-root web/dist

test: deps-test build web
	@scripts/run-tests.sh

unit: build
	cd $(BUILD) && ctest --output-on-failure -j2

# Benchmarks side by side with peers; rewrites docs/benchmarks.md (about 31 minutes on 2 cores).
bench: deps-test build
	node bench/run.mjs

# Every scenario against every peer, tiny and short: keeps the harness working (part of make test).
bench-smoke: deps-test build
	node bench/run.mjs --smoke

# Three nodes on a private PostgreSQL and RabbitMQ, on loopback; Ctrl-C stops all of them.
cluster: deps-test build web
	WEB_ROOT=web/dist scripts/cluster.sh 3

clean:
	rm -rf $(BUILD) web/dist

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

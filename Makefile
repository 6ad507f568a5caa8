# Thin wrappers over npm scripts, the CLI and docker compose. `make help` lists them.
SHELL := /bin/bash
NODE  ?= node
MAIN  := dist/main.js
KAFKA ?= $(shell [ -f .kafka/state.json ] && $(NODE) -e 'console.log(require("./.kafka/state.json").bootstrap)' 2>/dev/null || echo localhost:9092)
ARGS  ?=

.PHONY: help build cold-start up down kafka-up kafka-down producer consumer api online-up online-down backfill bi-build verify-bi lint test

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## bundle src/ into dist/main.js (esbuild, scripts/build.mjs; no type-check: that is `make lint`)
	npm run build

cold-start: ## bench: spawn to the first 200 on /health/live, bundled vs unbundled vs node -e 0 (bench/RESULTS.md)
	npm run bench:cold-start

up: ## Kafka mode with Docker: Kafka 4.1 (KRaft), producer, consumer and api (http://localhost:8000)
	docker compose up -d --build

down: ## stop the docker compose stack
	docker compose down

kafka-up: ## a local Kafka 4.1 broker without Docker (Java 17 + Maven), bootstrap printed
	$(NODE) scripts/kafka.mjs start

kafka-down: ## stop the local Kafka broker
	$(NODE) scripts/kafka.mjs stop

producer: build ## the producer role against Kafka (KAFKA=host:port)
	BROKER_MODE=kafka KAFKA_BOOTSTRAP_SERVERS=$(KAFKA) HEALTH_PORT=$${HEALTH_PORT:-8001} $(NODE) $(MAIN) --role=producer

consumer: build ## the consumer role against Kafka (KAFKA=host:port)
	BROKER_MODE=kafka KAFKA_BOOTSTRAP_SERVERS=$(KAFKA) HEALTH_PORT=$${HEALTH_PORT:-8002} $(NODE) $(MAIN) --role=consumer

api: build ## the API role over the SQLite file
	$(NODE) $(MAIN) --role=api

online-up: build ## the single-process platform (direct mode) in the background; logs in data/online.log
	@mkdir -p data
	@if [ -f data/online.pid ] && kill -0 $$(cat data/online.pid) 2>/dev/null; then echo "already running (pid $$(cat data/online.pid))"; \
	else nohup $(NODE) $(MAIN) --role=all >> data/online.log 2>&1 & echo $$! > data/online.pid; echo "started (pid $$(cat data/online.pid)), http://localhost:$${PORT:-8000}/docs"; fi

online-down: ## stop the background single-process platform
	@if [ -f data/online.pid ]; then kill $$(cat data/online.pid) 2>/dev/null || true; rm -f data/online.pid; echo stopped; else echo "not running"; fi

backfill: build ## klines into the history: make backfill ARGS="--symbols BTCUSDT --days 90 --interval 1d"
	$(NODE) $(MAIN) backfill $(ARGS)

bi-build: build ## the BI CSV contracts as files in bi/
	$(NODE) $(MAIN) bi-build $(ARGS)

verify-bi: build ## check bi/ (or ARGS="--url http://localhost:8000") against the CSV contracts
	$(NODE) $(MAIN) verify-bi $(ARGS)

lint: ## typecheck + eslint
	npm run lint

test: ## the whole test suite (starts its own Kafka)
	npm test

# keyward: see README.md. Every target works on a fresh machine: what a
# target needs (DynamoDB Local, staticcheck) it fetches itself.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
STATICCHECK_VERSION := v0.8.2
# the OpenAPI linter make lint runs, from npm
REDOCLY_VERSION := 2.77.0
FUNCTIONS := $(filter-out internal,$(notdir $(wildcard functions/*)))
PACKAGES := ./...
FUZZTIME ?= 30s
# jsii warns about any Node.js release it has not been tested with.
JSII_QUIET := JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20

.PHONY: build test lint bench bench-local fuzz dev invoke dynamodb-local clean synth deploy

## build: every function in functions/* as dist/<function>/bootstrap for provided.al2023 on arm64
build:
	@for fn in $(FUNCTIONS); do \
		echo "build $$fn"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' \
			-o dist/$$fn/bootstrap ./functions/$$fn; \
	done

## dev: the whole system on 127.0.0.1:8080 with no AWS account (KEYWARD_ADDR, KEYWARD_DATA_DIR, UPSTREAM, KEYWARD_OPERATOR_TOKEN)
dev:
	@echo "make dev: compiling keyward first: about two minutes the first time on a 2-core machine, seconds after that" >&2
	@$(GO) run ./cmd/keyward dev

## invoke: one function's handler on one event against the local data: make invoke FN=authorizer EVENT=events/authorizer-bearer.json TOKEN=sk_...
invoke:
	@test -n "$(FN)" -a -n "$(EVENT)" || { echo "usage: make invoke FN=authorizer|admin|jobs|publisher|usage EVENT=events/<file>.json [TOKEN=...]"; exit 2; }
	@$(GO) run ./cmd/keyward invoke -fn $(FN) -event $(EVENT)

## test: lint, then every test, with DynamoDB Local fetched (once) and one instance shared by every test binary, and Chromium installed when missing (the console's browser tests)
test: lint
	./scripts/ensure-chromium.sh >/dev/null
	KEYWARD_DYNAMODB_LOCAL="$$(./scripts/dynamodb-local.sh | tail -n 1)" \
	KEYWARD_CHROMIUM="$$(./scripts/ensure-chromium.sh 2>/dev/null | tail -n 1)" \
		$(GO) run ./scripts/with-dynamodb-local -- $(GO) test -race -count=1 -timeout 15m $(PACKAGES)
	./scripts/ensure-node.sh
	cd infra && $(JSII_QUIET) $(GO) test -count=1 -timeout 10m ./...

## lint: gofmt, go vet and staticcheck; docs/admin-api.md lists every route of the OpenAPI spec, which Redocly lints with no error
lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PACKAGES)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PACKAGES)
	cd infra && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) test -count=1 -run '^TestAdminDocListsEveryRoute$$' ./internal/openapitest
	./scripts/ensure-node.sh 2>/dev/null
	npx --yes @redocly/cli@$(REDOCLY_VERSION) lint --format summary docs/openapi.yaml

## bench: the benchmarks recorded in BENCHMARKS.md, each of issue 17's figures beside its target (decision, local gateway, cold start, local store at scale), and the authorizer's bootstrap size
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./pkg/apikey ./pkg/pepper ./pkg/authorizer
	KEYWARD_DYNAMODB_LOCAL="$$(./scripts/dynamodb-local.sh | tail -n 1)" \
		$(GO) run ./scripts/with-dynamodb-local -- $(GO) run ./scripts/benchreport
	KEYWARD_SCALE=10000,100000,1000000 $(GO) test -run '^TestScale$$' -v -timeout 30m ./pkg/store/embedded | grep '^|'
	@ls -l dist/authorizer/bootstrap | awk '{printf "authorizer bootstrap: %.1f MB\n", $$5/1e6}'

## bench-local: authorized vs unauthorized requests through the local stack to the echo, cache off and on (BENCHMARKS.md)
bench-local:
	./scripts/bench-local.sh

## fuzz: each fuzz target for FUZZTIME (default 30s); seed corpora live in testdata/
FUZZ_TARGETS := ./pkg/apikey:FuzzParse ./pkg/authorizer:FuzzAuthorize ./pkg/usage:FuzzLogLines
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## dynamodb-local: fetch DynamoDB Local into the cache and print its directory
dynamodb-local:
	@./scripts/dynamodb-local.sh

## synth: the CDK stack as CloudFormation in cdk.out/, offline; functions not built yet become placeholders that cdk deploy refuses (docs/deploy.md)
synth:
	./scripts/ensure-node.sh
	cd infra && $(JSII_QUIET) $(GO) run ./cmd/keyward-cdk

## deploy: build the functions, then deploy with the CDK CLI from npm (AWS credentials; PREFIX=<your token prefix>; context as CDK_ARGS='-c upstreamUrl=https://api.example.com -c stage=prod')
deploy:
	@test -n "$(PREFIX)" || { \
		echo "make deploy needs PREFIX, the prefix of your API keys (2 to 8 lowercase letters, such as your product's name)."; \
		echo "Secret scanners and GitHub's partner program tell issuers apart by it: pick your own, or confirm keyward's"; \
		echo "default with PREFIX=keyward (README, Tokens). Keys keep the prefix they were made with."; \
		exit 2; }
	$(MAKE) build
	$(JSII_QUIET) npx --yes aws-cdk@2 deploy -c prefix=$(PREFIX) $(CDK_ARGS)

clean:
	rm -rf dist cdk.out

GO ?= go
BIN := bin/lifeline

.PHONY: build run test generate lint bench fuzz e2e clean

build: generate
	$(GO) build -o $(BIN) .

# A local cluster on loopback with demo data.
run: build
	$(BIN) dev

# Everything CI runs: generated code up to date, lint, unit and e2e tests.
test: lint
	$(GO) test -race -count=1 -timeout 15m ./...

generate:
	$(GO) tool templ generate

lint: generate
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...
	@git diff --quiet -- '*_templ.go' 2>/dev/null || (echo "generated templ files differ from the committed ones: commit them" && git --no-pager diff --stat -- '*_templ.go' && exit 1)

# Short fuzzing runs of every network parser.
fuzz:
	$(GO) test ./smtp/ -run '^$$' -fuzz '^FuzzSession$$' -fuzztime 60s
	$(GO) test ./smtp/ -run '^$$' -fuzz '^FuzzParseRecipient$$' -fuzztime 60s

bench: build
	@test -x /usr/sbin/postfix || echo "Postfix is not installed; for the comparison run: apt-get install postfix"
	$(GO) run ./e2e/bench -binary $(BIN) -messages 5000 -sessions 20 -size 4096 -postfix=true -timeout 10m

clean:
	rm -rf bin

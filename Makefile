GO ?= go
BIN := bin/lifeline

.PHONY: build run test generate lint bench scale fuzz e2e clean

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
	$(GO) test ./smtp/mailbox/ -run '^$$' -fuzz '^FuzzMailbox$$' -fuzztime 60s
	# The reading view's MIME parser, seeded with the mail corpus of
	# Debian's libpython3.11-testsuite and spamassassin where installed.
	$(GO) test ./node/mailparse/ -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 60s

bench: build
	@test -x /usr/sbin/postfix || echo "Postfix is not installed; for the comparison run: apt-get install postfix"
	# Accept rate and latency (one node, three nodes), drain rate and
	# failover, each beside a private Postfix instance.
	$(GO) run ./e2e/bench -binary $(BIN) -messages 5000 -sessions 20 -size 4096 -postfix=true -drain-messages 10000 -failover-runs 3 -timeout 20m
	# The Emergency Inbox: first page for a user with 50,000 spooled messages.
	$(GO) test ./webui/inbox -run '^TestInboxFirstPageIsFast$$' -bench '^BenchmarkInboxFirstPageHTTP$$' -benchtime 100x -count=1 -v
	# The message log: a million transactions, time per page and disk use.
	$(GO) run ./e2e/logbench

# A spool of 100,000 messages on three nodes: RSS, snapshots, and a fourth
# node joining and catching up.
scale: build
	$(GO) run ./e2e/scale -binary $(BIN) -messages 100000 -size 4096 -sessions 20 -timeout 45m

clean:
	rm -rf bin

# --- Appliance image, local VM cluster, operations (packer/, vagrant/) ---
# Needs root and Debian's packer, debootstrap, extlinux, qemu-utils,
# qemu-system-x86, cloud-image-utils (see packer/README.md). Artifacts go
# to build/ (git-ignored).
IMAGE_DIR ?= build/image
IMAGE_VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: image image-test image-test-cluster validate-images test-ops box-test

# The qcow2 appliance and the libvirt Vagrant box, offline from Debian's
# packages; a static binary so the image's libc does not matter.
image:
	CGO_ENABLED=0 $(MAKE) build
	packer build -var binary=$(BIN) -var output_dir=$(IMAGE_DIR) -var version=$(IMAGE_VERSION) packer/

# Boots the image under QEMU (KVM if usable, else TCG) with a NoCloud seed
# and checks SMTP 220, /healthz 200, a queued message and the firewall from
# the host; then boots it unconfigured and checks that it says so.
image-test:
	packer/scripts/image-test.sh $(IMAGE_DIR)/lifeline.qcow2 $(BIN)

# Three VMs of the image form a cluster from cloud-init data alone (QEMU,
# a private segment carried over loopback multicast); slow under TCG.
image-test-cluster:
	packer/scripts/image-cluster-test.sh $(IMAGE_DIR)/lifeline.qcow2 $(BIN)

# Syntax and configuration checks of the Packer template and Vagrantfile.
validate-images:
	packer validate packer/
	@tmp=$$(mktemp -d) && cd vagrant && \
	VAGRANT_DOTFILE_PATH=$$tmp/.vagrant LIFELINE_VAGRANT_SECRETS=$$tmp/secrets vagrant validate; \
	rc=$$?; rm -rf $$tmp; exit $$rc

# Rolling upgrade across two builds (with the gate on new command types),
# and backup save/restore; both are also part of `make test`, which runs
# every e2e test.
test-ops:
	$(GO) test -race -count=1 -timeout 10m -run 'TestRollingUpgrade|TestBackupSaveRestoreIntoFreshNode' ./e2e/

# Boots the Vagrant box's disk under QEMU, logs in as vagrant, runs the
# Vagrantfile's provisioner for one node and waits for /healthz 200.
box-test:
	vagrant/box-test.sh $(IMAGE_DIR)/lifeline-libvirt.box $(BIN)

# The fault campaign (e2e/chaos_test.go): randomized, combined
# faults against a real three-node cluster in network namespaces under
# load, and a checker of every reply and every delivery. Needs root and
# iproute2 (CI has both). SEED=n replays a campaign (scenario i uses seed
# n+i); SCENARIOS and DURATION size it. `make test` runs the
# 3-scenario short form (`go test ./e2e -run TestChaos`).
SCENARIOS ?= 20
DURATION ?= 60s
.PHONY: chaos
chaos:
	LIFELINE_CHAOS=1 LIFELINE_CHAOS_SEED=$(SEED) LIFELINE_CHAOS_SCENARIOS=$(SCENARIOS) LIFELINE_CHAOS_DURATION=$(DURATION) \
		$(GO) test ./e2e -run '^TestChaos$$' -count=1 -v -timeout 150m

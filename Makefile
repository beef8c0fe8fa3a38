# writecap: make generate | build | test | bench
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

.PHONY: generate build test fuzz bench

# Rebuilds the BPF objects and their Go bindings (needs clang, llvm,
# libbpf-dev and bpftool). The results are committed.
generate:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h
	$(GO) generate ./bpf

build:
	$(GO) build -o writecap ./cmd/writecap

# Privileged tests need root; with WRITECAP_REQUIRE_BPF=1 they fail rather
# than skip on a machine that cannot load BPF.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...
	$(MAKE) fuzz

FUZZTIME ?= 15s
# Shrinking a new input may otherwise take the whole FUZZTIME (its default
# is 60 s), and the target then runs almost nothing new.
FUZZMINIMIZE ?= 2s
FUZZFLAGS = -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE)
fuzz:
	$(GO) test ./journal $(FUZZFLAGS) -fuzz '^FuzzDecodeBatch$$'
	$(GO) test ./journal $(FUZZFLAGS) -fuzz '^FuzzReader$$'
	$(GO) test ./journal $(FUZZFLAGS) -fuzz '^FuzzSegment$$'
	$(GO) test ./journal $(FUZZFLAGS) -fuzz '^FuzzDecodeChanges$$'
	$(GO) test ./master $(FUZZFLAGS) -fuzz '^FuzzReadActivity$$'
	$(GO) test ./capture $(FUZZFLAGS) -fuzz '^FuzzCheckEvent$$'
	$(GO) test ./stream $(FUZZFLAGS) -fuzz '^FuzzFrameReader$$'
	$(GO) test ./resync $(FUZZFLAGS) -fuzz '^FuzzReadManifest$$'
	$(GO) test ./resync $(FUZZFLAGS) -fuzz '^FuzzParseCheckpoint$$'

# One run, one process: the 4 KiB pwrite loop without and with capture,
# sequential 1 MiB writes without and with replication to a replica over
# loopback TLS (WRITECAP_BENCH_BYTES sets the size, default 2 GiB), pgbench
# with and without replication, and sync against rsync and cp
# (WRITECAP_SYNC_BYTES, WRITECAP_SYNC_FILES).
bench:
	$(GO) test ./bench -run '^$$' -bench . -benchtime 1x -count 1 -v -timeout 60m

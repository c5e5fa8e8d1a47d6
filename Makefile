# imip-transport: developer targets. Run `make help` for the list.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
# make dist / make deb: output directory, architectures, the packager (nfpm,
# run as a Go tool: fetched through the Go module proxy on first use).
DIST    ?= dist
ARCHES  ?= amd64 arm64
NFPM    ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
# Flags for `make stack`, e.g. make stack STACK_FLAGS="-c2s-port 15222"
STACK_FLAGS ?=

.PHONY: help test stack deps build dist deb fmt vet lint clean stack-clean

help:
	@echo "make test         run the CI suite (.ci/run)"
	@echo "make stack        install the system packages if missing, then run the local demo stack"
	@echo "                  (Prosody + imipd + transport on 127.0.0.1; state in .stack/)"
	@echo "make deps         install the system packages (.ci/install-deps.sh, as root)"
	@echo "make build        build bin/imip-transport and bin/imipd"
	@echo "make dist         static release binaries (linux: $(ARCHES)) in $(DIST)/, with SHA256SUMS"
	@echo "make deb          make dist, then a Debian package per architecture in $(DIST)/ (nfpm)"
	@echo "make fmt          gofmt -w the tree"
	@echo "make vet          go vet ./..."
	@echo "make lint         fail if a file needs gofmt, then go vet, then staticcheck (.ci/staticcheck.sh)"
	@echo "make clean        remove bin/ and $(DIST)/;  make stack-clean  remove .stack/"

test:
	bash .ci/run

# Prosody (with prosody-modules) is the one system dependency of the stack.
stack:
	@if ! command -v prosody >/dev/null 2>&1 || ! ls /usr/lib/prosody/modules/mod_privilege* >/dev/null 2>&1; then \
		echo "Prosody or prosody-modules missing: running .ci/install-deps.sh"; \
		bash .ci/install-deps.sh; \
	fi
	@mkdir -p bin
	$(GO) build -o bin/imip-stack ./cmd/imip-stack
	@# exec: Ctrl-C reaches the stack, which stops cleanly and exits 0
	exec bin/imip-stack $(STACK_FLAGS)

deps:
	bash .ci/install-deps.sh

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/imip-transport ./cmd/imip-transport
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/imipd ./cmd/imipd

# Static (no cgo, no interpreter), reproducible paths (-trimpath), stripped
# of the symbol table and DWARF (-s -w; panics still name functions), the
# version stamped for -version.
dist:
	rm -rf $(DIST)
	@mkdir -p $(DIST)
	@set -e; for arch in $(ARCHES); do for cmd in imip-transport imipd; do \
		echo "build $(DIST)/$$cmd-linux-$$arch ($(VERSION))"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o $(DIST)/$$cmd-linux-$$arch ./cmd/$$cmd; \
	done; done
	cd $(DIST) && rm -f SHA256SUMS && files=$$(ls) && sha256sum -- $$files > SHA256SUMS

# One .deb per architecture, from the binaries of make dist; SHA256SUMS
# then covers the packages too. Every file in them is dated at the last
# commit (SOURCE_DATE_EPOCH), so a rebuild of a clean tree is identical.
deb: dist
	@mkdir -p $(DIST)/.build
	sh packaging/deb/config.sh config.toml > $(DIST)/.build/config.toml
	@set -e; debver=$$(sh packaging/deb-version.sh "$(VERSION)"); \
	epoch=$$(git log -1 --format=%ct 2>/dev/null || date +%s); for arch in $(ARCHES); do \
		ARCH=$$arch DEB_VERSION=$$debver DIST=$(DIST) BUILD=$(DIST)/.build SOURCE_DATE_EPOCH=$$epoch \
			$(NFPM) package --config packaging/deb/nfpm.yaml --packager deb --target $(DIST)/; \
	done
	rm -rf $(DIST)/.build
	cd $(DIST) && rm -f SHA256SUMS && files=$$(ls) && sha256sum -- $$files > SHA256SUMS

fmt:
	gofmt -w $$(git ls-files -co --exclude-standard '*.go')

vet:
	$(GO) vet ./...

lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	bash .ci/staticcheck.sh

clean:
	rm -rf bin $(DIST)

stack-clean:
	rm -rf .stack

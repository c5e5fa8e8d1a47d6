# imip-transport: developer targets. Run `make help` for the list.

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
# Flags for `make stack`, e.g. make stack STACK_FLAGS="-c2s-port 15222"
STACK_FLAGS ?=

.PHONY: help test stack deps build fmt vet lint clean stack-clean

help:
	@echo "make test         run the CI suite (.ci/run)"
	@echo "make stack        install the system packages if missing, then run the local demo stack"
	@echo "                  (Prosody + imipd + transport on 127.0.0.1; state in .stack/)"
	@echo "make deps         install the system packages (.ci/install-deps.sh, as root)"
	@echo "make build        build bin/imip-transport and bin/imipd"
	@echo "make fmt          gofmt -w the tree"
	@echo "make vet          go vet ./..."
	@echo "make lint         fail if a file needs gofmt, then go vet, then staticcheck (.ci/staticcheck.sh)"
	@echo "make clean        remove bin/;  make stack-clean  remove .stack/"

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
	rm -rf bin

stack-clean:
	rm -rf .stack

# Static linux binaries and FROM-scratch images for the docker-compose stack
# (docker-compose.yml, deploy/README.md) and the reliability suite
# (integration/).
#
#   make binaries   ./bin/{relay,nats-server,subscriber,demoapp}, CGO_ENABLED=0
#   make images     binaries, then fitiqcore/{relay,nats-server,subscriber,demoapp}:$(TAG)
#   make integration  images, then the reliability suite (integration/run.sh)
#   make clean

GO      ?= go
DOCKER  ?= docker
TAG     ?= dev
BIN     := bin
GOFLAGS_BUILD := -trimpath -ldflags "-s -w"
export CGO_ENABLED := 0
export GOOS := linux

IMAGES := relay nats-server subscriber demoapp

.PHONY: all binaries images integration clean $(addprefix $(BIN)/,$(IMAGES))

all: images

binaries: $(addprefix $(BIN)/,$(IMAGES))

# go build is incremental: these always run and cost little when nothing changed.
$(BIN)/relay:
	$(GO) build $(GOFLAGS_BUILD) -o $@ ./cmd/relay
$(BIN)/nats-server:
	$(GO) build $(GOFLAGS_BUILD) -o $@ github.com/nats-io/nats-server/v2
$(BIN)/subscriber:
	$(GO) build $(GOFLAGS_BUILD) -o $@ ./examples/subscriber
$(BIN)/demoapp:
	$(GO) build $(GOFLAGS_BUILD) -o $@ ./examples/demoapp

# The build context is ./bin alone (the binaries and an empty tmp/), so no
# .dockerignore is needed and nothing else of the tree is sent to the daemon.
# docker's output (the legacy builder's deprecation notice) is shown only
# when a build fails.
images: binaries
	mkdir -p $(BIN)/tmp
	@for img in $(IMAGES); do \
		echo "docker build fitiqcore/$$img:$(TAG)"; \
		out=$$($(DOCKER) build -q -f deploy/Dockerfile.$$img -t fitiqcore/$$img:$(TAG) $(BIN) 2>&1) || { echo "$$out"; exit 1; }; \
	done

integration: images
	./integration/run.sh

clean:
	rm -rf $(BIN)

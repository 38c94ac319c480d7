# Lockstep on Debian with Swift: a release build, mpirun as the entry point.
# Build: docker build -t lockstep .
# Run:   docker run --rm lockstep -np 1 lockstep-coordinator --config configs/shakespeare-char.yaml : -np 2 lockstep-worker
# (Sharded optimizer state shares memory between the workers through /dev/shm: give it room with --shm-size=2g.)
FROM swift:6.1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libopenblas-dev libopenmpi-dev openmpi-bin pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release

FROM swift:6.1-bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libopenblas0-pthread libopenmpi3 openmpi-bin \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/.build/release/lockstep /src/.build/release/lockstep-coordinator \
     /src/.build/release/lockstep-worker /usr/local/bin/
COPY configs /opt/lockstep/configs
WORKDIR /opt/lockstep
ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
ENTRYPOINT ["mpirun", "--allow-run-as-root", "--oversubscribe"]

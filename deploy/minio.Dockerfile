# MinIO, built from source at a pinned release: `docker compose build minio`
# (docker-compose.yml) or `docker compose -f docker-compose.scale.yml build`.
#
# MinIO's community edition is published as source only now; its last image,
# RELEASE.2025-09-07T16-13-09Z, lacks the fix for CVE-2025-62506 that
# RELEASE.2025-10-15T17-29-55Z carries. This builds that release the way its
# Makefile does (CGO off, -tags kqueue, version stamped by
# buildscripts/gen-ldflags.go), from the tag, and checks that the tag still names
# the commit it named when we pinned it. To move to a newer release, change both
# MINIO_RELEASE and MINIO_COMMIT (and the Go image to what its go.mod asks for).
ARG MINIO_RELEASE=RELEASE.2025-10-15T17-29-55Z
ARG MINIO_COMMIT=9e49d5e7a648f00e26f2246f4dc28e6b07f8c84a

# go.mod of that release: go 1.24.0, toolchain go1.24.8.
FROM golang:1.24.8-bookworm AS build
ARG MINIO_RELEASE
ARG MINIO_COMMIT
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
RUN git clone --depth 1 --branch "${MINIO_RELEASE}" https://github.com/minio/minio.git /src \
    && test "$(git -C /src rev-parse HEAD)" = "${MINIO_COMMIT}"
WORKDIR /src
# gen-ldflags.go takes the release time with colons (2025-10-15T17:29:55Z).
RUN version="$(echo "${MINIO_RELEASE#RELEASE.}" | sed -E 's/T([0-9]{2})-([0-9]{2})-([0-9]{2})Z$/T\1:\2:\3Z/')" \
    && ldflags="$(MINIO_RELEASE=RELEASE go run buildscripts/gen-ldflags.go "${version}")" \
    && go build -tags kqueue -trimpath -ldflags "${ldflags}" -o /out/minio . \
    && /out/minio --version

FROM alpine:3.22
ARG MINIO_RELEASE
LABEL org.opencontainers.image.title="MinIO ${MINIO_RELEASE}, built from source" \
      org.opencontainers.image.version="${MINIO_RELEASE}"
RUN apk add --no-cache ca-certificates \
    && addgroup -S -g 10002 minio \
    && adduser -S -D -H -u 10002 -G minio -s /sbin/nologin minio \
    && mkdir -p /data /events \
    && chown minio:minio /data /events
COPY --from=build /out/minio /usr/bin/minio
# Named volumes mounted on /data (the objects) and /events (the webhook's queue)
# start with these directories' owner, so MinIO runs as its own user.
VOLUME ["/data", "/events"]
USER 10002:10002
EXPOSE 9000 9001
# busybox wget: non-zero on anything but a 2xx.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=12 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9000/minio/health/live"]
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "/data", "--console-address", ":9001"]

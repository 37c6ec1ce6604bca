# The image that stands where registry:2 (or registry:3) stood: the same port, volume, config
# paths, command line and REGISTRY_* overrides. Build it after `npm ci && npm run build`, which
# lays out in .image/rootfs/ everything it copies (build/image-context.mjs): the bundle and only
# the packages it loads at run time. Nothing runs inside the build and nothing is fetched, so it
# builds without network, on any base with Node (no shell needed). Why the bundle on a Node base
# rather than a single executable, and what it weighs: docs/image.md.
#   docker build -t registry-mirror .
#   docker build --build-arg BASE=node:26-bookworm-slim -t registry-mirror .
ARG BASE=node:24-bookworm-slim
FROM ${BASE}
COPY .image/rootfs/ /
EXPOSE 5000
VOLUME ["/var/lib/registry"]
# Node as PID 1 gets no default signal handling; `registry serve` handles SIGTERM and SIGINT itself
# (docker stop, Kubernetes), so no init is needed.
ENTRYPOINT ["registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]

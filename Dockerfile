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
# glibc's malloc asks for transparent huge pages for its heap (glibc >= 2.35; where the host's THP
# setting is `never` it changes nothing): the buffers a cold blob passes through are malloc'd, and
# the first faults of that memory were a third of a fresh mirror's first cold pull on a VM (the
# measurement: docs/image.md, "Memory: huge pages for the heap"). `GLIBC_TUNABLES=` turns it off.
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
# Node as PID 1 gets no default signal handling; `registry serve` handles SIGTERM and SIGINT itself
# (docker stop, Kubernetes), so no init is needed.
ENTRYPOINT ["registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]

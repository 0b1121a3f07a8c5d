# The llraid node plugin image: Node.js 20, the built llraid, and the host tools the plugin runs
# (nbd-client, nbdfuse from libnbd-bin, mkfs/resize for ext4 and xfs, losetup and mount from
# util-linux, mdadm for --examine). Build: `buildah bud -t llraid:<version> .` (or docker build);
# scripts/test-image.sh builds it against a locally made stand-in of the base image and runs it.
ARG BASE_IMAGE=docker.io/library/node:20-bookworm-slim

FROM ${BASE_IMAGE} AS build
# Behind a TLS-intercepting proxy, pass its CA (mounted into the build) so npm can reach the registry.
ARG NODE_EXTRA_CA_CERTS
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `prepare` script compiles, and the sources are not copied in yet.
RUN npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/engine-clock.mjs ./scripts/
COPY src ./src
COPY proto ./proto
# The build: tsc, then esbuild's one-file bundle of what an engine runs (`llraid serve`).
# koffi (the engine host's prctl call) ships prebuilt binaries for every platform: keep Linux's.
RUN node scripts/build.mjs && npm prune --omit=dev --no-audit --no-fund --loglevel=error \
 && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' \) -delete \
 && find node_modules/koffi/build/koffi -mindepth 1 -maxdepth 1 ! -name 'linux_*' -exec rm -rf {} + \
 && rm -rf node_modules/koffi/src node_modules/koffi/vendor node_modules/koffi/doc

FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nbd-client libnbd-bin fuse3 e2fsprogs xfsprogs util-linux mount mdadm \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
WORKDIR /opt/llraid
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/proto ./proto
RUN chmod 0755 dist/src/cli/bin.cjs && ln -s /opt/llraid/dist/src/cli/bin.cjs /usr/local/bin/llraid \
 && llraid --version
ENTRYPOINT ["llraid"]
CMD ["--help"]

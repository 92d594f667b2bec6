# Farview host node.
# Build:  docker build -t farview-host .   (BuildKit, the default since Docker 23, or podman build)
# Run on a GPU VM (NVIDIA Container Toolkit):
#   docker run --gpus all -p 4433:4433/udp -p 8080:8080 -v farview-data:/var/lib/farview \
#     -e FARVIEW_API_KEYS=<key> -e FARVIEW_PUBLIC_ADDRESS=<name or IP devices reach>:4433 farview-host
# Without a GPU it refuses to start; add -e FARVIEW_ALLOW_SOFTWARE_ADAPTER=true to render with Mesa's
# software drivers (llvmpipe/lavapipe) instead. With several GPUs, -e FARVIEW_GPU=<index or PCI bus id>.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm pkg-config protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and the target directory live in BuildKit caches: a rebuild after a source change
# downloads nothing and recompiles only our crates, not wgpu, openh264 and the rest. Binaries are
# copied out of the cache because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p farview-host -p farview-client \
 && mkdir -p /out \
 && cp target/release/farview-host target/release/farview /out/ \
 && strip /out/farview-host /out/farview

FROM debian:bookworm-slim
# libvulkan1: the Vulkan loader; mesa-vulkan-drivers + libegl-mesa0 + libgl1-mesa-dri: software
# fallbacks (lavapipe, llvmpipe) when no GPU is passed in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libvulkan1 mesa-vulkan-drivers libegl1 libegl-mesa0 libgl1-mesa-dri \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/farview --create-home farview
# The NVIDIA container runtime mounts the driver but not a Vulkan ICD file; point the loader at it.
RUN mkdir -p /etc/vulkan/icd.d \
 && printf '{"file_format_version":"1.0.0","ICD":{"library_path":"libGLX_nvidia.so.0","api_version":"1.3"}}\n' > /etc/vulkan/icd.d/nvidia_icd.json
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=graphics,utility \
    FARVIEW_LOG=info \
    FARVIEW_DATA_DIR=/var/lib/farview \
    FARVIEW_ASSETS_ROOT=/opt/farview/assets \
    FARVIEW_QUIC_ADDR=0.0.0.0:4433 \
    FARVIEW_HTTP_ADDR=0.0.0.0:8080 \
    FARVIEW_API=http://127.0.0.1:8080
COPY --from=build /out/farview-host /out/farview /usr/local/bin/
COPY assets /opt/farview/assets
USER farview
WORKDIR /var/lib/farview
VOLUME ["/var/lib/farview"]
EXPOSE 4433/udp 8080/tcp
# Asks /healthz (status ok, the adapter, sessions), not only whether the port is open. With
# `[tls] https`, set FARVIEW_API to the https:// name the certificate is for.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s CMD ["/usr/local/bin/farview", "health"]
ENTRYPOINT ["/usr/local/bin/farview-host"]

# Build: docker build -t ghcr.io/asyncscale/asyncscale:v0.1.0 .
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p asyncscale \
 && install -D target/release/asyncscale /out/asyncscale

# distroless: no shell, no package manager; glibc and CA certificates only. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/asyncscale /asyncscale
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/asyncscale"]
CMD ["run", "--leader-elect", "--metrics-addr=0.0.0.0:8080", "--log-format=json"]

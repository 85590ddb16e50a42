# The kv-node image (the phase-1 `kv-service`): the static binary alone, FROM scratch, so the
# image builds offline and holds nothing but kv-node (about its size).
#
#   scripts/build.sh --static             # target/x86_64-unknown-linux-musl/release/kv-node
#   docker build -t kv-service .
#   docker run -p 8080:8080 kv-service    # standalone node; dashboard at http://localhost:8080/
#   docker run -p 9000:8080 -e PORT=8080 kv-service
#
# Inside the container the node listens on 0.0.0.0 (BIND), on PORT (8080 unless -e PORT=...);
# any other flag goes after the image name or as its environment variable (see kv-node --help).
# It runs as an unprivileged numeric user and, as PID 1, stops gracefully on SIGTERM
# (`docker stop`): requests in flight finish, then it exits 0.
FROM scratch
COPY target/x86_64-unknown-linux-musl/release/kv-node /kv-node
ENV BIND=0.0.0.0 PORT=8080 NO_COLOR=1
EXPOSE 8080
USER 65532:65532
STOPSIGNAL SIGTERM
ENTRYPOINT ["/kv-node"]

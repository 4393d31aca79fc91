# The demo application (e2e/testapp: / answers its version, /health the
# health document the agents check), a static binary FROM scratch.
# `make demo-images` builds it as flotilla-demo-app.
FROM scratch
LABEL org.opencontainers.image.title="flotilla-demo-app" \
      org.opencontainers.image.description="Flotilla's demo application (e2e/testapp)"
COPY testapp /app
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/app"]

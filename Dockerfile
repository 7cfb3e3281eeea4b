# The service image of capi-stream: one image, the command picks the stage.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 capi
WORKDIR /app

# 1. The runtime dependencies at the versions the test suite ran with (constraints.txt pins their
#    whole closure; tools/constraints.py writes it), in a layer of their own so that a code
#    change does not reinstall them.
COPY constraints.txt ./
RUN pip install -r constraints.txt

# 2. The package itself, with nothing more: a dependency missing from the pins fails `pip check`
#    (and so the build) instead of being installed at whatever version is newest that day.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY stream ./stream
RUN pip install --no-deps . && pip check

USER capi
ENV CAPI_STREAM_OBSERVABILITY__METRICS_PORT=9464 \
    CAPI_STREAM_OBSERVABILITY__LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["capi-stream"]
CMD ["--help"]

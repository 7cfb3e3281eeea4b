# The service image of capi-stream: one image, the command picks the stage.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 capi
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY stream ./stream
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER capi
ENV CAPI_STREAM_OBSERVABILITY__METRICS_PORT=9464 \
    CAPI_STREAM_OBSERVABILITY__LOG_FORMAT=json
EXPOSE 9464
ENTRYPOINT ["capi-stream"]
CMD ["--help"]

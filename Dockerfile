# mcp-memalpha as a shared memory over streamable HTTP (README: "Run it in a container").
#   docker build -t mcp-memalpha .
#   docker run -p 8765:8765 -v memalpha-data:/data -v "$PWD/tokens.toml:/config/tokens.toml:ro" mcp-memalpha
# It listens on every address of the container, so it needs access tokens: without the auth file
# it stops at start-up and says so. The curator (the `policy` extra) is not installed here.
FROM python:3.11-slim

# A fixed non-root user; the data volume is its home for memory.db and the search index.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin memalpha \
    && mkdir /data && chown memalpha:memalpha /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY mcp_memalpha ./mcp_memalpha
COPY policy ./policy
COPY training ./training
RUN pip install --no-cache-dir . && rm -rf /app

USER memalpha
WORKDIR /home/memalpha
ENV MEMALPHA_DATA_DIR=/data \
    MEMALPHA_AUTH_FILE=/config/tokens.toml \
    MEMALPHA_HOST=0.0.0.0 \
    MEMALPHA_PORT=8765
VOLUME ["/data"]
EXPOSE 8765
# GET /healthz needs no token: 200 while the ledger answers a read, 503 otherwise (urlopen raises).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MEMALPHA_PORT', '8765') + '/healthz', timeout=4)"
ENTRYPOINT ["mcp-memalpha"]
CMD ["serve", "--transport", "http"]

# deskml on CPU: the same `make install` as a developer's machine, run as a non-root user.
# Build: docker build -t deskml .     Run: see compose.yaml and docs/deploy.md
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# make runs the Makefile's install target; libgomp1 is the OpenMP runtime llama.cpp's CPU build uses.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/deskml
COPY pyproject.toml README.md Makefile ./
COPY deskml ./deskml
# Exactly the install the README and CI use (tests/production/test_deploy.py checks this line).
RUN make install PYTHON=python3.11 VENV=/opt/deskml/.venv \
    && /opt/deskml/.venv/bin/pip install --no-cache-dir "psycopg[binary]>=3.1"

RUN useradd --system --create-home --home-dir /home/deskml --uid 10001 deskml \
    && mkdir -p /data && chown deskml:deskml /data
USER deskml

ENV PATH=/opt/deskml/.venv/bin:$PATH \
    DESKML_DATA_DIR=/data \
    DESKML_HOST=0.0.0.0 \
    DESKML_PORT=11434 \
    DESKML_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 11434

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:11434/api/version', timeout=4).status == 200 else 1)"

# SIGTERM (docker stop) drains in-flight requests within DESKML_SHUTDOWN_GRACE; give docker stop
# a longer timeout than that (compose.yaml: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["deskml", "serve"]

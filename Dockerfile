# The gateway's image: every role (web, ws, worker, migrate, all) from one build; the role is the
# command (deploy/entrypoint.sh). Build from the repository's root: docker build -t whatsapp-gateway .
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

# --- builder: the dependencies in a virtualenv, the static files, the bytecode ---------------------
# Every dependency has a wheel for this platform: nothing is compiled, and no compiler is needed.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --requirement requirements/base.txt
COPY . .
# collectstatic runs on the embedded defaults in a directory of its own: the secrets it generates
# there (var/secret_key, …) stay in this stage; the final one takes the static files alone.
RUN GATEWAY_VAR_DIR=/tmp/collect /opt/venv/bin/python manage.py collectstatic --noinput \
    && /opt/venv/bin/python -m compileall -q /app

# --- the image ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# ffmpeg: voice notes, video and thumbnails (neonize converts media with it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app/var --no-create-home \
        --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0700 /app/var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_VAR_DIR=/app/var \
    PORT=8000
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY --from=builder --chown=gateway:gateway /tmp/collect/static /app/var/static
WORKDIR /app
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/app/deploy/healthcheck.py"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["all"]

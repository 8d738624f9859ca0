# netops: multi-stage image. The build stage resolves and installs the dependencies into a
# virtualenv; the runtime stage copies that virtualenv and the source, and runs daphne as a
# non-root user.
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Exactly the pinned set CI tested (hashes checked), never the ranges in pyproject.toml.
COPY requirements/app.lock ./requirements/app.lock
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r requirements/app.lock

FROM python:3.12-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    NETOPS_VAR_DIR=/var/lib/netops \
    STATIC_ROOT=/app/staticfiles
RUN groupadd --system --gid 10001 netops \
 && useradd --system --uid 10001 --gid netops --home-dir /app --shell /usr/sbin/nologin netops \
 && mkdir -p /var/lib/netops && chown netops:netops /var/lib/netops
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY netops ./netops
COPY registry ./registry
COPY chat ./chat
COPY netboxrw ./netboxrw
COPY templates ./templates
COPY static ./static
RUN SECRET_KEY=build-only NETOPS_VAR_DIR=/tmp/build python manage.py collectstatic --noinput \
 && rm -rf /tmp/build
USER netops
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Run migrations once per release (e.g. `docker run IMAGE python manage.py migrate`), not per container.
# No --proxy-headers (daphne would believe X-Forwarded-For from anyone): set TRUSTED_PROXIES to the
# load balancer's network and netops reads the proxy headers from it alone.
# The same image runs the web process (default) and the workers:
#   docker run IMAGE                            daphne on :8000
#   docker run IMAGE python manage.py worker    background jobs (run one or more)
CMD ["daphne", "-v", "0", "-b", "0.0.0.0", "-p", "8000", "netops.asgi:application"]

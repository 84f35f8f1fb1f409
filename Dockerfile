FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin coordinator

WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY coordinator ./coordinator
RUN pip install . && rm -rf /app/build

USER coordinator
ENV COORDINATOR_HOST=0.0.0.0 \
    COORDINATOR_PORT=5003 \
    COORDINATOR_DATA_DIR=/home/coordinator/data \
    LOG_FORMAT=json

EXPOSE 5003
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:5003/health', timeout=4); sys.exit(0)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["coordinator"]
CMD ["run"]

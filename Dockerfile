# One image for the three jobs in docker-compose.yml: the trainer, the retrainer and the API.
# Written for the official python:3.11-slim-bookworm, with the classic builder's features only (no BuildKit).

# --- requirements: the dependency lists of pyproject.toml, and nothing else from it ---
# The builder copies this file by content, so editing tool settings in pyproject.toml (ruff, mypy, pytest)
# leaves the ~2.4 GB dependency layer cached instead of reinstalling TensorFlow.
FROM python:3.11-slim-bookworm AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *p['optional-dependencies']['train'], sep='\n')" > requirements.txt

# --- builder: the pinned dependencies into a virtualenv that the runtime stage copies whole ---
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt ./
COPY --from=requirements /src/requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt

# --- runtime: the virtualenv, the code, the job script, a non-root user owning the volume mount points ---
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="movie-retrieval" \
      org.opencontainers.image.description="Two-tower movie retrieval: TFRS training and FastAPI serving"

# TF_USE_LEGACY_KERAS: the packages set it before importing TensorFlow; here it also covers any ad-hoc
# `python -c` in the container that imports tensorflow_recommenders (which needs Keras 2).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 \
    DATA_DIR=/data \
    MODELS_DIR=/models \
    RECSYS_MODELS_DIR=/models \
    RECSYS_RATINGS_URL=sqlite:////data/ratings.db \
    RECSYS_HOST=0.0.0.0 \
    RECSYS_PORT=8000

# Named volumes mounted at /data and /models start with these directories' owner, so the app user can write.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
 && mkdir /data /models \
 && chown app:app /data /models

COPY --from=builder /opt/venv /opt/venv
COPY deploy/jobs.sh /usr/local/bin/jobs.sh
COPY contract/ /app/contract/
COPY training/ /app/training/
COPY service/ /app/service/
# Compiled here because the app user cannot write next to the sources.
RUN python -m compileall -q /app

# Numeric, so that the runtime (and Kubernetes runAsNonRoot) can check it is not root without /etc/passwd.
USER 10001:10001
WORKDIR /home/app
EXPOSE 8000

# Ready means a verified version is loaded: /readyz answers 503 until then.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["python", "-m", "service", "--models-dir", "/models", "--host", "0.0.0.0", "--port", "8000"]

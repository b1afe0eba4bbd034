# Two images from one file, sharing their TensorFlow layer:
#   --target serve   the API: [project].dependencies only, with contract/ and service/ (movie-retrieval-serve)
#   --target train   the model jobs (trainer, retrainer, workers): the same plus pyproject's `train` extra
#                    (tensorflow-recommenders, pandas, matplotlib, tqdm), with contract/, training/ and service/
#                    (the promotion gate loads a candidate with `python -m service.smoke`) (movie-retrieval-train)
# Written for the official python:3.11-slim-bookworm, with the classic builder's features only (no BuildKit).

# --- requirements: the dependency lists of pyproject.toml, and nothing else from it ---
# The builder copies these files by content, so editing tool settings in pyproject.toml (ruff, mypy, pytest)
# leaves the ~2.4 GB dependency layer cached instead of reinstalling TensorFlow.
FROM python:3.11-slim-bookworm AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('serve.txt', 'w').write('\n'.join(p['dependencies']) + '\n'); \
open('train.txt', 'w').write('\n'.join(p['optional-dependencies']['train']) + '\n')"

# --- runtime: what both images hold: the serving dependencies in a virtualenv, a non-root user, the mounts ---
FROM python:3.11-slim-bookworm AS runtime

# TF_USE_LEGACY_KERAS: the packages set it before importing TensorFlow; here it also covers any ad-hoc
# `python -c` in the container that imports TensorFlow or tensorflow_recommenders (which needs Keras 2).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1 \
    RECSYS_RATINGS_URL=sqlite:////data/ratings.db

# Named volumes mounted at /data and /models start with these directories' owner, so the app user can write.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
 && mkdir /data /models \
 && chown app:app /data /models

RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
COPY --from=requirements /src/serve.txt ./
RUN pip install --no-cache-dir -r serve.txt -c constraints.txt

# --- serve: the API. No training code and none of the train extra: the server never imports them ---
FROM runtime AS serve

LABEL org.opencontainers.image.title="movie-retrieval-serve" \
      org.opencontainers.image.description="Two-tower movie retrieval: FastAPI serving with ScaNN"

ENV RECSYS_MODELS_DIR=/models \
    RECSYS_HOST=0.0.0.0 \
    RECSYS_PORT=8000

COPY contract/ /app/contract/
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

# --- train: the model jobs (deploy/jobs.sh). Last, so that a plain `docker build .` builds it, as before ---
FROM runtime AS train

LABEL org.opencontainers.image.title="movie-retrieval-train" \
      org.opencontainers.image.description="Two-tower movie retrieval: TFRS training, evaluation and promotion"

ENV DATA_DIR=/data \
    MODELS_DIR=/models

COPY --from=requirements /src/train.txt ./
RUN pip install --no-cache-dir -r train.txt -c constraints.txt

COPY deploy/jobs.sh /usr/local/bin/jobs.sh
COPY contract/ /app/contract/
COPY training/ /app/training/
COPY service/ /app/service/
RUN python -m compileall -q /app

USER 10001:10001
WORKDIR /home/app
CMD ["jobs.sh", "ensure-model"]

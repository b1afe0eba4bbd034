#!/bin/sh
# The two model jobs, for docker-compose.yml and for the Makefile alike; TRAIN_* settings mean the same in both.
#
#   jobs.sh ensure-model        fetch MovieLens if missing; train and promote a version if none is current
#   jobs.sh retrain [OPTIONS]   fetch if missing; one gated retraining cycle (add --every SECONDS to repeat)
#   jobs.sh train-distributed   one worker of a multi-worker training (TF_CONFIG names the cluster and this
#                               task); every worker runs it alike, the chief exports and promotes
#
# Environment (unset: the CLI's defaults): PYTHON, DATA_DIR, MODELS_DIR, DATASET,
#   TRAIN_EPOCHS, TRAIN_LAYERS, TRAIN_PRESET, TRAIN_SEED (trainer and retrainer train alike), RETRAIN_KEEP,
#   GATE_TOLERANCE, GATE_MIN_RECALL, GATE_K, GATE_MIN_WINDOW, and RECSYS_RATINGS_URL (the service's ratings
#   store: training reads every stored rating too).
# Training progress shows as a bar on a terminal and as one log line per stage and per epoch in `docker logs`.
set -eu

PYTHON=${PYTHON:-python}
DATA_DIR=${DATA_DIR:-data}
MODELS_DIR=${MODELS_DIR:-models}
DATASET=${DATASET:-ml-100k}

fetch() {
  "$PYTHON" -m training fetch --dataset "$DATASET" --data-dir "$DATA_DIR" >/dev/null
}

job=${1:-}
[ $# -gt 0 ] && shift
case "$job" in
  ensure-model)
    fetch
    current=$(cat "$MODELS_DIR/CURRENT" 2>/dev/null || true)
    if [ -n "$current" ] && [ -f "$MODELS_DIR/$current/manifest.json" ]; then
      echo "version $current is current: not training"
      exit 0
    fi
    set -- train --promote
    ;;
  train-distributed)
    [ -n "${TF_CONFIG:-}" ] || { echo "train-distributed needs TF_CONFIG (the cluster and this task)" >&2; exit 2; }
    fetch
    set -- train --promote --distribute multi_worker
    ;;
  retrain)
    fetch
    set -- retrain "$@"
    [ -n "${RETRAIN_KEEP:-}" ] && set -- "$@" --keep "$RETRAIN_KEEP"
    [ -n "${GATE_TOLERANCE:-}" ] && set -- "$@" --gate-tolerance "$GATE_TOLERANCE"
    [ -n "${GATE_MIN_RECALL:-}" ] && set -- "$@" --gate-min-recall "$GATE_MIN_RECALL"
    [ -n "${GATE_K:-}" ] && set -- "$@" --gate-k "$GATE_K"
    [ -n "${GATE_MIN_WINDOW:-}" ] && set -- "$@" --gate-min-window "$GATE_MIN_WINDOW"
    ;;
  *)
    echo "usage: $0 ensure-model | train-distributed | retrain [--every SECONDS] [retrain options]" >&2
    exit 2
    ;;
esac
[ -n "${TRAIN_EPOCHS:-}" ] && set -- "$@" --epochs "$TRAIN_EPOCHS"
[ -n "${TRAIN_LAYERS:-}" ] && set -- "$@" --layers "$TRAIN_LAYERS"
[ -n "${TRAIN_PRESET:-}" ] && set -- "$@" --preset "$TRAIN_PRESET"
[ -n "${TRAIN_SEED:-}" ] && set -- "$@" --seed "$TRAIN_SEED"
# exec: the Python process receives the container's SIGTERM itself.
exec "$PYTHON" -m training "$@" --dataset "$DATASET" --data-dir "$DATA_DIR" --models-dir "$MODELS_DIR"

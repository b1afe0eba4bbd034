#!/bin/sh
# `make up`: serve on a fresh clone within about a minute and a half, then improve by itself.
#
# With no current version it trains a first one from one short, unscored fit (`--preset first`) and serves
# it; the whole default job (scored on protocols A, B and T, refit on every rating) then runs in the
# background and promotes its version when done, and the server swaps to it on its next poll. A current
# version that is itself a first version (the whole job was stopped) gets the whole job again.
#
# Environment: PYTHON, DATA_DIR, MODELS_DIR, HOST, PORT, RECSYS_RATINGS_URL (training reads its ratings too).
set -eu

PYTHON=${PYTHON:-.venv/bin/python}
DATA_DIR=${DATA_DIR:-data}
MODELS_DIR=${MODELS_DIR:-models}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
LOG="$DATA_DIR/train.log"
PIDFILE="$DATA_DIR/train.pid"

train() {
  "$PYTHON" -m training train --promote --no-progress --data-dir "$DATA_DIR" --models-dir "$MODELS_DIR" "$@"
}

current_manifest() {
  current=$(cat "$MODELS_DIR/CURRENT" 2>/dev/null || true)
  [ -n "$current" ] && [ -f "$MODELS_DIR/$current/manifest.json" ] && echo "$MODELS_DIR/$current/manifest.json"
  return 0
}

echo "[up] MovieLens-100K into $DATA_DIR"
"$PYTHON" -m training fetch --dataset ml-100k --data-dir "$DATA_DIR" >/dev/null
if [ -z "$(current_manifest)" ]; then
  echo "[up] no current version: a first one from one short fit, unscored (--preset first)"
  train --preset first >/dev/null
fi
manifest=$(current_manifest)
if "$PYTHON" -c "import json, sys; sys.exit(json.load(open(sys.argv[1]))['config'].get('evaluate', True))" "$manifest"; then
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "[up] the whole training job is already running (pid $(cat "$PIDFILE"), log $LOG)"
  else
    echo "[up] serving a first version; the whole job trains in the background (log $LOG) and promotes its version"
    nohup "$PYTHON" -m training train --promote --data-dir "$DATA_DIR" --models-dir "$MODELS_DIR" \
      >"$LOG" 2>&1 &
    echo $! >"$PIDFILE"
  fi
fi
echo "[up] serving $(cat "$MODELS_DIR/CURRENT") on http://$HOST:$PORT"
exec "$PYTHON" -m service --models-dir "$MODELS_DIR" --host "$HOST" --port "$PORT"

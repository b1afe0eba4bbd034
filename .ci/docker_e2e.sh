#!/usr/bin/env bash
# The Docker part of CI, on a real engine (../shared/docker/engine.sh): lint (hadolint, compose config), build
# both images (movie-retrieval-train; movie-retrieval-serve, which must import the service without the train
# extra), `docker compose up -d --wait` with several api replicas behind nginx, a real /recommend answer through the
# published port on 127.0.0.1, ratings posted through the proxy, one gated retraining cycle while a bounded
# client loop keeps calling /recommend (the served version must change on every replica, it must have trained
# on the posted ratings, the gate must have compared both models on them, and no request may fail),
# then a two-worker training (`--profile distributed`) whose chief promotes a version every replica serves,
# `docker compose down -v`, engine stopped. If the engine cannot start, this fails with that message: never a silent skip.
#
# Env: TRAIN_EPOCHS (3: CI proves the pipeline, not the model), API_REPLICAS (2), HTTP_PORT (a free port),
#      KEEP_ENGINE=1 leaves the engine running (for iterating locally), COMPOSE_PROJECT_NAME (movie-retrieval-ci).
set -euo pipefail

cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-../shared/docker/engine.sh}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-movie-retrieval-ci}
export TRAIN_EPOCHS=${TRAIN_EPOCHS:-3}
export RETRAIN_INTERVAL_SECONDS=${RETRAIN_INTERVAL_SECONDS:-86400}  # CI runs its one cycle explicitly
export RECSYS_ADMIN_TOKEN=${RECSYS_ADMIN_TOKEN:-ci-$RANDOM$RANDOM}  # the api's /admin/*: the canary step
export RECSYS_CANARY_SHARE=0.5
export HTTP_PORT=${HTTP_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
REPLICAS=${API_REPLICAS:-2}
BASE=http://127.0.0.1:$HTTP_PORT
SWAP_TIMEOUT_SECONDS=${SWAP_TIMEOUT_SECONDS:-90}
WORK=$(mktemp -d)
engine_up=0
client_pid=

log() { echo "[docker-e2e $(date +%H:%M:%S)] $*"; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# The version a training command printed as its last stdout line (/models/<version>). Searched for, not taken
# from the log's last line: docker logs interleave the container's stderr (the stage and epoch log lines).
printed_version() {
  basename "$(grep -E '^/models/[0-9]{8}T[0-9]{6}Z' "$1" | tail -n 1)"
}
seconds_since() { echo $(($(date +%s) - $1)); }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$client_pid" ]; then touch "$WORK/stop"; wait "$client_pid" 2>/dev/null; fi
  if [ "$engine_up" = 1 ]; then
    if [ "$rc" != 0 ]; then
      docker compose ps -a
      docker compose logs --no-color --tail 40
    fi
    # --profile distributed: the workers' containers hold the volumes too, and `down` skips inactive profiles.
    docker compose --profile distributed down -v --remove-orphans >/dev/null 2>&1 && log "docker compose down -v: done"
    [ "${KEEP_ENGINE:-}" = 1 ] || bash "$ENGINE" stop
  fi
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "PASS: docker end-to-end"; else echo "FAIL: docker end-to-end (exit $rc)" >&2; fi
}
trap cleanup EXIT

wait_model() {  # every api replica's /model gives $2 for the Python expression $1 (of m) within SWAP_TIMEOUT_SECONDS
  local t0 served
  t0=$(date +%s)
  for i in $(seq "$REPLICAS"); do
    until served=$(docker compose exec -T --index "$i" api python -c \
        "import json, urllib.request; m = json.load(urllib.request.urlopen('http://127.0.0.1:8000/model')); print($1)") \
        && [ "$served" = "$2" ]; do
      [ "$(seconds_since "$t0")" -lt "$SWAP_TIMEOUT_SECONDS" ] || fail "api replica $i has $1 = ${served:-?}, not $2"
      sleep 1
    done
  done
}
wait_served() { wait_model "m.get('version') or m.get('model_version')" "$1"; }  # every replica serves version $1

log "starting the Docker engine ($ENGINE start)"
t0=$(date +%s)
if ! bash "$ENGINE" start; then
  fail "the Docker engine could not start (bash $ENGINE start failed, see above): the Docker checks did not run"
fi
engine_up=1
pass "engine started in $(seconds_since "$t0") s"

# A stack left by an interrupted run (same project name) would keep its models volume: start from nothing.
docker compose --profile distributed down -v --remove-orphans >/dev/null 2>&1 || true
docker compose config -q || fail "docker compose config -q"
hadolint Dockerfile || fail "hadolint Dockerfile"
pass "docker-compose.yml is valid and the Dockerfile is hadolint clean"

t0=$(date +%s)
docker compose build trainer api || fail "docker compose build"
mb() { echo $(($(docker image inspect "$1" --format '{{.Size}}') / 1000000)); }
pass "images built in $(seconds_since "$t0") s: movie-retrieval-train $(mb movie-retrieval-train) MB," \
  "movie-retrieval-serve $(mb movie-retrieval-serve) MB (their TensorFlow layers are shared)"

# The serving image holds [project].dependencies only: the server must import without the train extra.
docker run --rm movie-retrieval-serve python -c "
import importlib.util, service.app, service.__main__, service.smoke
present = [m for m in ('training', 'tensorflow_recommenders', 'pandas', 'matplotlib', 'tqdm') if importlib.util.find_spec(m)]
assert not present, f'the serving image holds {present}'
" || fail "the serving image holds training code or the train extra, or the service does not import without them"
pass "movie-retrieval-serve imports the service and holds neither the training code nor the train extra"

t0=$(date +%s)
log "docker compose up -d --wait (trainer: fetch + $TRAIN_EPOCHS epochs; $REPLICAS api replicas; 127.0.0.1:$HTTP_PORT)"
docker compose up -d --wait --wait-timeout 1800 --scale "api=$REPLICAS" || fail "docker compose up --wait"
pass "stack up and healthy in $(seconds_since "$t0") s"

python3 deploy/probe.py recommend "$BASE" --user 1 --k 10 || fail "/recommend through 127.0.0.1:$HTTP_PORT"
before=$(python3 deploy/probe.py version "$BASE") || fail "/model"
pass "/recommend answers with version $before through nginx on 127.0.0.1:$HTTP_PORT"

RATINGS=${E2E_RATINGS:-1200}  # above the gate's min_window (1000): both models are compared on them
posted=$(python3 deploy/probe.py rate "$BASE" --count "$RATINGS") || fail "POST /ratings through the proxy"
[ "$posted" = "$RATINGS" ] || fail "POST /ratings stored $posted of $RATINGS"
pass "$posted ratings of new users stored through nginx"

log "client loop on /recommend, then one retraining cycle"
python3 deploy/probe.py loop "$BASE" --out "$WORK/loop.json" --stop-file "$WORK/stop" \
  --max-requests 50000 --max-seconds 1500 &
client_pid=$!
t0=$(date +%s)
set +e
docker compose run --rm --no-deps -T retrainer jobs.sh retrain | tee "$WORK/retrain.out"
retrain_rc=${PIPESTATUS[0]}
set -e
[ "$retrain_rc" = 0 ] || fail "the retraining cycle did not promote its candidate (exit $retrain_rc, 3 means refused)"
candidate=$(printed_version "$WORK/retrain.out")
pass "retraining cycle promoted $candidate in $(seconds_since "$t0") s"

t0=$(date +%s)
wait_served "$candidate"
[ "$candidate" != "$before" ] || fail "the served version did not change ($before)"
pass "every api replica swapped $before -> $candidate in $(seconds_since "$t0") s"

learnt=$(python3 deploy/probe.py stored "$BASE") || fail "/model"
[ "$learnt" = "$RATINGS" ] || fail "the new version trained on $learnt stored ratings, not the $RATINGS posted"
docker compose run --rm --no-deps -T retrainer python - "$candidate" "$RATINGS" <<'PY' || fail "the gate record"
import json, sys
candidate, posted = sys.argv[1], int(sys.argv[2])
check = json.load(open(f"/models/gate/{candidate}.json"))["checks"][-1]
figures = check["figures"]
print(check["name"], check["detail"])
assert check["name"].startswith("metric T.") and check["ok"], check
assert figures["held_out"] == "after_id" and figures["window_size"] == posted, figures
assert isinstance(figures["current"], float), figures
PY
pass "the new version trained on the $RATINGS posted ratings; the gate compared both models on them"

sleep 5  # traffic after the swap, through the proxy
touch "$WORK/stop"
wait "$client_pid"
client_pid=
summary=$(cat "$WORK/loop.json")
log "client loop: $summary"
python3 - "$WORK/loop.json" "$before" "$candidate" <<'PY' || fail "client loop: $summary"
import json, sys
summary, before, after = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
assert summary["requests"] > 0, "no requests were sent"
assert summary["failures"] == 0, f"{summary['failures']} of {summary['requests']} requests failed"
assert summary["versions"].get(before) and summary["versions"].get(after), "traffic did not span the swap"
PY
pass "no failed request among $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$WORK/loop.json") during retraining and the swap"

# Each replica's impressions writer process (service/impression_process.py) stored what that replica answered,
# within a few flush intervals (2 s each).
for i in $(seq "$REPLICAS"); do
  docker compose exec -T --index "$i" api python - <<'PY' || fail "api replica $i did not store its impressions"
import time
import urllib.request

deadline = time.monotonic() + 30
while True:
    text = urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=5).read().decode()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("recsys_impressions_")}
    written = values.get("recsys_impressions_written_total", 0.0)
    failed = values.get('recsys_impressions_dropped_total{reason="store_error"}', 0.0)
    if written > 0 or failed > 0 or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(f"impressions written {written:.0f}, dropped for store errors {failed:.0f}")
assert written > 0 and failed == 0, values
PY
done
pass "every api replica's writer process stored the impressions of its answers"

# The canary through the admin API: one replica writes models/CANARY (the api mounts models writable), every
# replica follows, half the users (by a hash of the id) get the previous version, then it is cleared.
wait_canary() { wait_model "m['canary']['version']" "$1"; }  # every replica has canary $1 ("None": none)
t0=$(date +%s)
set_to=$(python3 deploy/probe.py canary "$BASE" --token "$RECSYS_ADMIN_TOKEN" --version "$before") \
  || fail "POST /admin/canary through the proxy"
[ "$set_to" = "$before" ] || fail "POST /admin/canary answered canary $set_to, not $before"
wait_canary "$before"
arms=$(python3 deploy/probe.py arms "$BASE" --users 300) || fail "/recommend with a canary"
python3 - "$arms" "$before" "$candidate" <<'PY' || fail "canary arms: $arms"
import json, sys
arms, canary, current = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert set(arms) == {canary, current}, arms
assert 0.35 < arms[canary] / sum(arms.values()) < 0.65, arms  # share 0.5 of 300 hashed users
PY
python3 deploy/probe.py canary "$BASE" --token "$RECSYS_ADMIN_TOKEN" >/dev/null || fail "DELETE /admin/canary"
wait_canary None
pass "canary $before set and cleared through /admin/canary on every replica in $(seconds_since "$t0") s: $arms"

t0=$(date +%s)
log "two-worker training: docker compose --profile distributed (MultiWorkerMirroredStrategy, $TRAIN_EPOCHS epochs)"
docker compose --profile distributed up -d --no-deps worker-0 worker-1 || fail "starting the distributed workers"
for worker in worker-0 worker-1; do
  code=$(docker wait "$(docker compose --profile distributed ps -aq "$worker")")
  [ "$code" = 0 ] || { docker compose --profile distributed logs --no-color --tail 40 "$worker"; fail "$worker exited $code"; }
done
docker compose --profile distributed logs --no-color --no-log-prefix worker-0 > "$WORK/chief.out"
grep -q "training under multi_worker (CollectiveAllReduceStrategy) with 2 replica(s)" "$WORK/chief.out" || fail "the chief did not train on 2 replicas"
distributed=$(printed_version "$WORK/chief.out")
[ "$distributed" != "$candidate" ] || fail "the two workers promoted no new version"
pass "two workers trained $distributed in $(seconds_since "$t0") s; the chief exported and promoted it"
wait_served "$distributed"
python3 deploy/probe.py recommend "$BASE" --user 1 --k 10 || fail "/recommend on the distributed version"
pass "every api replica serves the two-worker version $distributed"

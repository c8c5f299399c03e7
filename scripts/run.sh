#!/usr/bin/env bash
# `make run`: a model worker on 127.0.0.1, the bundled samples sent through it, then serve until Ctrl-C.
# With no checkpoint configured it builds and uses the tiny random model (its text is junk).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
TINY=var/models/tiny
MODEL="${DOCVL_MODEL_WORKER_MODEL_DIR:-$TINY}"
PORT="${DOCVL_MODEL_WORKER_PORT:-50061}"
TARGET="127.0.0.1:$PORT"

if [ "$MODEL" = "$TINY" ]; then
  echo "!! No checkpoint configured (DOCVL_MODEL_WORKER_MODEL_DIR): using the TINY RANDOM model. Its text is junk."
  [ -f "$TINY/config.json" ] || "$BIN/docvl" model build-tiny "$TINY"
  MAX_NEW_TOKENS=32
else
  MAX_NEW_TOKENS=512
fi

"$BIN/docvl" model-worker --model "$MODEL" --host 127.0.0.1 --port "$PORT" &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true; wait $worker 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

"$BIN/python" -c "from model_worker.transport.client import InferenceClient as C; C('$TARGET').wait_ready(600)"
infer() { "$BIN/docvl" infer --target "$TARGET" --max-new-tokens "$MAX_NEW_TOKENS" --json "$@"; }
echo "== ocr: docvl/samples/page.png";       infer --task ocr --image docvl/samples/page.png
echo "== chart2code: docvl/samples/chart.png"; infer --task chart2code --image docvl/samples/chart.png
echo "== web2html: docvl/samples/webpage.png"; infer --task web2html --image docvl/samples/webpage.png
echo "== qa: docvl/samples/chart.png";       infer --task qa --question "Which year had the highest sales?" --image docvl/samples/chart.png
echo
echo "Model worker serving gRPC docvl.v1.InferenceService on $TARGET (health and reflection too)."
echo "Try: $BIN/docvl infer --target $TARGET --task ocr --image docvl/samples/page.png"
echo "Ctrl-C stops it."
wait $worker

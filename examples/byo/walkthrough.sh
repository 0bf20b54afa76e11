#!/usr/bin/env bash
# "Bring your own model", as the README walks through it: build three stand-in models a team could have
# trained, register them with their records, submit one customer's deletion request that reaches all
# three, wait for it, print the verdicts, fetch and verify the deletion certificate.
# Run from the repository root with the project installed (make install; . .venv/bin/activate).
# MODELS: where the stand-ins go (built once); PORT: the API's port; SMALL=1: fewer diffusion steps (CI).
# With UNLEARN_BROKER_URL set, a separate `unlearn worker` serves the jobs; otherwise `unlearn serve`
# runs its embedded worker.
set -euo pipefail
MODELS=${MODELS:-byo-models}
PORT=${PORT:-8000}
URL=http://127.0.0.1:$PORT
export UNLEARN_DATA_DIR=${UNLEARN_DATA_DIR:-$(mktemp -d)}   # a clean data directory
CUSTOMER=${CUSTOMER:-cust-0003}

[ -f "$MODELS/built.json" ] || python examples/byo/make_models.py "$MODELS" ${SMALL:+--small}

unlearn model register support-lm --family lm --path "$MODELS/support-lm" \
    --records "$MODELS/support-tickets.jsonl" --id-field id --subject-field customer_id \
    --text-field text --split-field split \
    --reference holdout --recipe "$MODELS/support-lm-recipe.json"
unlearn model register digits-vit --family classifier --path "$MODELS/digits-vit" \
    --records "$MODELS/digits-vit-manifest.parquet" --id-field sample_id --subject-field owner \
    --label-field label --image-field image --split-field split \
    --reference retrain --recipe "$MODELS/digits-vit-recipe.json"
unlearn model register digits-pipeline --family diffusion --path "$MODELS/digits-pipeline" \
    --records "$MODELS/digits-pipeline-records.parquet" --id-field sample_id --subject-field owner \
    --label-field label --image-field image --split-field split \
    --reference holdout --recipe "$MODELS/digits-pipeline-recipe.json" --judge "$MODELS/digits-judge"

UNLEARN_API_KEY=$(unlearn api-key create --tenant acme --role submitter)
export UNLEARN_API_KEY UNLEARN_URL=$URL
unlearn serve --port "$PORT" & PIDS=$!
if [ -n "${UNLEARN_BROKER_URL:-}" ]; then unlearn worker --concurrency 1 & PIDS="$PIDS $!"; fi
trap 'kill $PIDS 2>/dev/null; wait' EXIT
python -c "import time, httpx
for _ in range(120):
    try:
        httpx.get('$URL/healthz').raise_for_status(); break
    except httpx.HTTPError: time.sleep(1)"

ID=$(unlearn request submit --subject "$CUSTOMER" | python -c "import json, sys; print(json.load(sys.stdin)['id'])")
unlearn request wait "$ID" --timeout 1800 > request.json
python -c "import json
r = json.load(open('request.json'))
print('request', r['id'], r['status'])
for t in r['targets']:
    v = r['verdicts'].get(t['version_id'] or '', {})
    print(f\"  {t['model']:16} {t['status']:9} verdict {v.get('verdict', '-')} by {v.get('method')}, \"
          f\"{v.get('reference_policy')} policy\")"
unlearn request certificate "$ID" > cert.json
unlearn verify-certificate cert.json --url "$URL"

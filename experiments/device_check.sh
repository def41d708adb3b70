#!/usr/bin/env bash
# The accelerator check of issue 31.3(c), one command on a machine with one GPU or TPU (about 8 minutes, an
# estimate until its first run): the train step's MFU table (ViT-B/16, lora and full, float32 and bfloat16), the
# attention implementations (model.attention xla and cudnn beside the einsum row of that table), and the
# tuning-protocol benchmark at ViT-B/16 (jpeft's sweep with --trial_batch=auto, jpeft trial by trial, the
# PyTorch loop when torch and timm import) on a VTAB-shaped synthetic task made in memory (no TensorFlow, no
# data, no network). Writes experiments/results/<device>/ (7 files): device.json, mfu.json, attention_<impl>.json,
# protocol.json, device_check.log (every part's output) and summary.md (the tables). Commit that folder.
#
#   bash experiments/device_check.sh
#   DEVICE_CHECK_TINY=1 bash experiments/device_check.sh     # CPU smoke run (mu ViT, 32 px, 1 epoch), seconds
#
# On this workplace's device machines (their image lacks ml_collections; its `python3` has jax, flax, torch, timm):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl ml_collections==1.1.0
#   then run, carrying .whl: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   PYTHONPATH=/tmp/site DEVICE_CHECK_OUT=$OUT/results bash experiments/device_check.sh   (its files come back)
#
# Environment: PYTHON (default python, else python3), DEVICE_CHECK_OUT (default experiments/results/<device kind>;
# an existing folder is refused), TORCH_PYTHON (the torch side's Python; default PYTHON when it imports torch and timm),
# DEVICE_CHECK_EPOCHS (protocol epochs, default 10), DEVICE_CHECK_PARTS (default mfu,attention,protocol).
# A part that fails is named in device.json's "failed" and summary.md, the others still run, and the exit status
# is 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python || command -v python3)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # experiments/*.py import jpeft from this checkout
TINY=${DEVICE_CHECK_TINY:-0}
PARTS=${DEVICE_CHECK_PARTS:-mfu,attention,protocol}
export PYTHONUNBUFFERED=1 DEVICE_CHECK_TINY="$TINY"
start=$(date +%s)
refuse_existing() {
  if [ -e "$1" ]; then
    echo "device_check: error: $1 exists; move it away or set DEVICE_CHECK_OUT=<new folder> (results are never overwritten)." >&2
    exit 2
  fi
}
[ -n "${DEVICE_CHECK_OUT:-}" ] && refuse_existing "$DEVICE_CHECK_OUT"  # before starting JAX

device_json=$($PY - <<'EOF'
import datetime, json, os, re, sys
import jax
device, backend = jax.devices()[0], jax.default_backend()
tiny = os.environ.get("DEVICE_CHECK_TINY") == "1"
if backend not in ("gpu", "tpu") and not tiny:
  sys.exit(f"device_check: error: JAX sees no GPU or TPU here (backend '{backend}', device '{device.device_kind}'), "
           "and the check measures one. Run it on a machine with an accelerator and JAX's CUDA or TPU build; on a "
           "CPU, DEVICE_CHECK_TINY=1 runs it at tiny sizes (a smoke test, not a measurement).")
slug = re.sub(r"[^a-z0-9]+", "_", device.device_kind.lower()).strip("_") + ("_tiny" if tiny else "")
print(json.dumps(dict(slug=slug, device_kind=device.device_kind, devices=jax.device_count(), backend=backend,
                      jax=jax.__version__,
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
                      tiny=tiny)))
EOF
) || exit 2
slug=$(echo "$device_json" | $PY -c 'import json, sys; print(json.load(sys.stdin)["slug"])')
OUT=${DEVICE_CHECK_OUT:-experiments/results/$slug}
refuse_existing "$OUT"
mkdir -p "$OUT"
echo "$device_json" > "$OUT/device.json"
echo "device_check: $(echo "$device_json" | $PY -c 'import json, sys; d = json.load(sys.stdin); print(d["devices"], "x", d["device_kind"], "(" + d["backend"] + ")")') -> $OUT"

if [ "$TINY" = 1 ]; then
  STEP="--variants=mu/8 --image_size=32 --batch_sizes=8 --steps=2 --warmup=1"
  MFU="$STEP --methods=lora --dtypes=float32"
  ATTENTION="$STEP --methods=lora --dtypes=float32"
  ATTENTIONS="xla"
  PROTOCOL="--variant=mu/8 --image_size=32 --dtype=float32 --epochs=1 --lr=1e-3,1e-2 --wd=1e-4"
  PROTOCOL="$PROTOCOL --final_seeds=42,43 --test_size=100"
else
  MFU="--variants=B/16 --methods=lora,full --dtypes=float32,bfloat16 --batch_sizes=64 --steps=10 --warmup=2"
  ATTENTION="--variants=B/16 --methods=lora --dtypes=bfloat16 --batch_sizes=64 --steps=10 --warmup=2"
  ATTENTIONS="xla cudnn"  # einsum: the bfloat16 lora row of the MFU table
  PROTOCOL="--variant=B/16 --image_size=224 --dtype=bfloat16 --epochs=${DEVICE_CHECK_EPOCHS:-10}"
  PROTOCOL="$PROTOCOL --lr=1e-3,1e-2 --wd=1e-4,1e-3 --final_seeds=42,43"
fi

FAILED=""
run_part() {  # name, command...: output to the terminal and device_check.log; a failure is named in FAILED
  local name=$1; shift
  echo "== $name: $*" | tee -a "$OUT/device_check.log"
  if ! "$@" 2>&1 | tee -a "$OUT/device_check.log"; then
    echo "device_check: $name failed (its output: $OUT/device_check.log)" | tee -a "$OUT/device_check.log"
    FAILED="$FAILED $name"
  fi
}

case ",$PARTS," in *,mfu,*)
  run_part mfu $PY -m jpeft.bench.mfu $MFU --out="$OUT/mfu.json" ;;
esac
case ",$PARTS," in *,attention,*)
  for impl in $ATTENTIONS; do
    run_part "attention_$impl" $PY -m jpeft.bench.mfu $ATTENTION --attentions="$impl" --out="$OUT/attention_$impl.json"
  done ;;
esac
case ",$PARTS," in *,protocol,*)
  TORCH=${TORCH_PYTHON:-$PY}
  if $TORCH -c "import torch, timm" 2>/dev/null; then
    sides="sweep,sequential,torch"
  else
    sides="sweep,sequential"
    echo "device_check: the PyTorch loop is skipped: $TORCH cannot import torch and timm (set TORCH_PYTHON to a Python that can)."
  fi
  # JAX takes 75% of a GPU's memory at start by default; the torch side runs beside this process.
  XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6} \
    run_part protocol $PY experiments/bench_protocol.py --data=synthetic --method=lora $PROTOCOL \
      --trial_batch=auto --sides="$sides" --torch_python="$TORCH" --out="$OUT/protocol.json" ;;
esac

$PY - "$OUT" "$(( $(date +%s) - start ))" "$FAILED" <<'EOF'
import json, sys
path = f"{sys.argv[1]}/device.json"
with open(path) as f:
  device = json.load(f)
device["wall_s"], device["failed"] = int(sys.argv[2]), sys.argv[3].split()
with open(path, "w") as f:
  json.dump(device, f, indent=1)
EOF
$PY experiments/device_summary.py "$OUT" > /dev/null && echo "device_check: $OUT/summary.md written ($(( $(date +%s) - start )) s)"
[ -z "$FAILED" ]

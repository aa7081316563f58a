#!/usr/bin/env bash
# strata on a GPU against PyTorch on CUDA, same model shape, same data, one machine.
#
# Meant for a machine with one NVIDIA GPU, PyTorch (CUDA), transformers and
# sentence-transformers installed, and no network. It needs nothing from this repository but
# a bundle that `bench/gpu.sh --pack DIR` makes here (the strata binary, Home Depot's two
# files, the model's config and tokenizer without weights, Debian's Vulkan loader, these
# scripts); copy DIR there and run `DIR/bench/gpu.sh --bundle DIR`. Prints:
#   (a) item-embedding throughput on 20,000 Home Depot titles: strata on the GPU, strata's CPU
#       engine, sentence-transformers on CUDA;
#   (b) one graded-SupCon training step (forward, backward, AdamW) at 16 and 128 instances:
#       strata on the GPU vs PyTorch on CUDA, same batch;
#   (c) agreement of item embeddings (1,000 titles): strata-GPU, strata-CPU, PyTorch-CUDA.
# The model has random weights made there from the config (seed 0): throughput and agreement
# do not depend on trained values.
#
# Settings (environment): STRATA_DEVICE (default wgpu; vulkan with a --features vulkan
# binary), TORCH_DEVICE (default cuda, cpu when CUDA is missing), N (titles, 20000), STEPS (5),
# INSTANCES (the training batches, "16 128"), PYTHON (python3). Without a bundle it uses target/release/strata, ../shared/data/homedepot
# and models/all-MiniLM-L6-v2 (real weights) from the repository.
#   bench/gpu.sh --pack DIR          make the bundle (on the build machine)
#   bench/gpu.sh [--bundle DIR]      run
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

if [ "${1:-}" = "--pack" ]; then
  out="${2:?usage: bench/gpu.sh --pack DIR}"
  mkdir -p "$out/bench" "$out/data" "$out/model" "$out/debs"
  bin="$repo/target/release/strata"
  [ -x "$bin" ] || { echo "gpu.sh: build strata first (cargo build --release -p strata)" >&2; exit 1; }
  cp "$bin" "$out/strata"
  strip "$out/strata"
  xz -T0 -6 -f "$out/strata"
  cp "$here/gpu.sh" "$here/gpu_tools.py" "$here/embed_st.py" "$here/train_step_torch.py" "$out/bench/"
  cp "$repo/../shared/data/homedepot/products.tsv" "$repo/../shared/data/homedepot/judgments.tsv" "$out/data/"
  m="$repo/models/all-MiniLM-L6-v2"
  for f in config.json tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt \
      modules.json sentence_bert_config.json config_sentence_transformers.json; do
    [ -f "$m/$f" ] && cp "$m/$f" "$out/model/"
  done
  [ -d "$m/1_Pooling" ] && cp -r "$m/1_Pooling" "$out/model/"
  (cd "$out/debs" && apt-get download libvulkan1 >/dev/null 2>&1) \
    || echo "gpu.sh: could not download libvulkan1; the GPU machine must have a Vulkan loader" >&2
  du -sh "$out"
  exit 0
fi

bundle=""
if [ "${1:-}" = "--bundle" ]; then bundle="$(cd "${2:?usage: bench/gpu.sh --bundle DIR}" && pwd)"; fi
py="${PYTHON:-python3}"
dev="${STRATA_DEVICE:-wgpu}"
tdev="${TORCH_DEVICE:-cuda}"
n="${N:-20000}"
steps="${STEPS:-5}"
instances="${INSTANCES:-16 128}"
threads="$(nproc)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { echo "gpu.sh: $*" >&2; }

if [ -n "$bundle" ]; then
  strata="$work/strata"
  xz -dc "$bundle/strata.xz" > "$strata" && chmod +x "$strata"
  data="$bundle/data"
  say "making a random-weight model from $bundle/model"
  "$py" "$here/gpu_tools.py" make-model "$bundle/model" "$work/model" >&2
  model="$work/model"
  debs="$bundle/debs"
else
  strata="$repo/target/release/strata"
  data="$repo/../shared/data/homedepot"
  model="$repo/models/all-MiniLM-L6-v2"
  debs="$here/debs"
fi
[ -x "$strata" ] || { say "no strata binary at $strata"; exit 1; }

# The Vulkan loader, from the bundle's Debian packages when the machine has none.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  if compgen -G "$debs/*.deb" >/dev/null; then
    for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$work/vk"; done
    lib="$(dirname "$(find "$work/vk" -name 'libvulkan.so.1*' | head -n1)")"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    say "Vulkan loader from $debs"
  else
    say "no Vulkan loader (libvulkan.so.1) and no .deb in $debs"; exit 1
  fi
fi
# The NVIDIA driver's ICD file, where the container runtime puts it.
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/nvidia_icd*.json \
      /etc/vulkan/icd.d/nvidia_icd*.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES="$f" VK_ICD_FILENAMES="$f"; break; fi
  done
fi
say "strata device $dev (VK_DRIVER_FILES=${VK_DRIVER_FILES:-loader default}), torch device $tdev, $threads threads"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'no cuda')" >&2 || true
if [ "$tdev" = cuda ] && ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  say "CUDA is not available to PyTorch: its rows run on the CPU"; tdev=cpu
fi

export RAYON_NUM_THREADS="$threads"
res="$work/results.jsonl"
touch "$res"
echo "## (a) item embedding, $n Home Depot titles"
{
  "$strata" bench embed --model "$model" --titles "$data/products.tsv" --n "$n" --device "$dev" 2>/dev/null
  "$strata" bench embed --model "$model" --titles "$data/products.tsv" --n "$n" --device cpu 2>/dev/null
  "$py" "$here/embed_st.py" "$model" "$data/products.tsv" "$n" "$threads" "$tdev" 2>/dev/null
} | tee -a "$res"

echo "## (b) one graded-SupCon training step"
for inst in $instances; do
  "$strata" bench train --model "$model" --catalog "$data/products.tsv" \
    --judgments "$data/judgments.tsv" --instances "$inst" --steps "$steps" --device "$dev" \
    --dump "$work/batch$inst.json" 2>/dev/null | tee -a "$res"
  "$py" "$here/train_step_torch.py" "$work/batch$inst.json" "$threads" "$steps" "$tdev" 2>/dev/null \
    | tee -a "$res"
done

echo "## (c) agreement of item embeddings, 1,000 titles"
awk -F'\t' 'NR > 1 && NR <= 1001 { print $2 }' "$data/products.tsv" > "$work/titles.txt"
"$strata" embed --model "$model" --input "$work/titles.txt" --output "$work/gpu.npy" --side item --device "$dev" 2>/dev/null
"$strata" embed --model "$model" --input "$work/titles.txt" --output "$work/cpu.npy" --side item --device cpu 2>/dev/null
"$py" "$here/gpu_tools.py" agree "$model" "$work/titles.txt" "$tdev" \
  "strata-$dev=$work/gpu.npy" "strata-cpu=$work/cpu.npy" 2>/dev/null | tee -a "$res"

echo "## summary"
"$py" "$here/gpu_tools.py" summary "$res"

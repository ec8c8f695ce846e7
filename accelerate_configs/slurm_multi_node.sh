#!/bin/bash
# SLURM: one task per node; accelerate starts one process per GPU on each. Submit with
#   sbatch accelerate_configs/slurm_multi_node.sh recipes/sft_full.py --config recipes/configs/sft_full.yaml
# Dry run (no SLURM needed): print the command every node would run, then exit:
#   DRY_RUN=1 NNODES=2 MAIN_IP=10.0.0.1 bash accelerate_configs/slurm_multi_node.sh recipes/sft_full.py
# CPU-only nodes: GPUS_PER_NODE=<processes per node> (the recipe's use_cpu default then trains over gloo).
#SBATCH --job-name=instructkit
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --exclusive
set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NNODES=${NNODES:-${SLURM_NNODES:-2}}
MAIN_PORT=${MAIN_PORT:-29500}
CONFIG=${ACCELERATE_CONFIG:-accelerate_configs/multi_node.yaml}   # or deepspeed_zero3.yaml for sharding
if [[ -z "${MAIN_IP:-}" ]]; then
    if [[ -n "${SLURM_JOB_NODELIST:-}" ]]; then
        MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    else
        MAIN_IP=127.0.0.1
    fi
fi

# One node's command. --rdzv_backend c10d + (accelerate's default, same_network off) --main_process_ip/port become
# torchrun's --rdzv_endpoint MAIN_IP:MAIN_PORT, which every node must reach. Do not add --same_network with c10d:
# accelerate then passes master_addr instead, which torchrun ignores for c10d (its endpoint falls back to localhost).
node_command() {  # node_command NODE_RANK RECIPE_ARGS...
    local rank=$1; shift
    printf '%q ' accelerate launch --config_file "$CONFIG" \
        --num_machines "$NNODES" --num_processes $(( NNODES * GPUS_PER_NODE )) \
        --machine_rank "$rank" --main_process_ip "$MAIN_IP" --main_process_port "$MAIN_PORT" \
        --rdzv_backend c10d "$@"
    echo
}

if [[ -n "${DRY_RUN:-}" ]]; then
    for (( r = 0; r < NNODES; r++ )); do
        echo "# node $r"
        node_command "$r" "$@"
    done
    exit 0
fi

# SLURM_NODEID is read on each node (inside the srun task), so every node gets its own machine rank.
export CONFIG NNODES GPUS_PER_NODE MAIN_IP MAIN_PORT
export -f node_command
srun bash -c 'eval "$(node_command "$SLURM_NODEID" "$@")"' _ "$@"

#!/bin/bash
# SLURM: one task per node; accelerate starts one process per GPU on each. Submit with
#   sbatch accelerate_configs/slurm_multi_node.sh recipes/sft_full.py --config recipes/configs/sft_full.yaml
#SBATCH --job-name=instructkit
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=32
#SBATCH --exclusive
set -euo pipefail

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAIN_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
CONFIG=${ACCELERATE_CONFIG:-accelerate_configs/multi_node.yaml}   # or deepspeed_zero3.yaml for sharding

# SLURM_NODEID is evaluated on each node (single quotes), so every node gets its own machine rank.
srun bash -c 'accelerate launch --config_file "$0" \
    --num_machines "$SLURM_NNODES" --num_processes $(( SLURM_NNODES * $1 )) \
    --machine_rank "$SLURM_NODEID" --main_process_ip "$2" --main_process_port 29500 \
    --rdzv_backend c10d "${@:3}"' "$CONFIG" "$GPUS_PER_NODE" "$MAIN_IP" "$@"

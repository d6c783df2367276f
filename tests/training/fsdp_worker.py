"""Run by tests/training/test_fsdp.py under torchrun: `train()` on 2 processes (DDP or FSDP).

    fsdp_worker.py CONFIGS_JSON RESULT_JSON

CONFIGS_JSON holds a list of TrainConfig field dicts, trained one after the other in the same
processes (as a preset runs its stages); RESULT_JSON.rankR gets one result per config. The
process group and the FSDP settings come from the environment the test builds with
accelerate's own launcher code from configs/accelerate/fsdp.yaml (or none: DDP).

Without an accelerator, accelerate 1.15 will not run FSDP, at three places:

1. `AcceleratorState.__init__` (accelerate/state.py) turns `ACCELERATE_USE_FSDP` into
   `DistributedType.FSDP` only inside `elif self.distributed_type in [MULTI_GPU, MULTI_MLU,
   ..., MULTI_NEURON]`; `MULTI_CPU` (what `ACCELERATE_USE_CPU` + torchrun gives) is not in
   that list, so the run quietly becomes DDP over gloo.
2. `FullyShardedDataParallelPlugin.__post_init__` (accelerate/utils/dataclasses.py) raises
   "There are currently no available devices found" when `sync_module_states` is on (it
   needs `torch.<device>.current_device()`); the shipped config has it off.
3. `Accelerator.prepare_model` passes `device_id=self.device`, which for CPU is
   `torch.device("cpu", 0)`, while torch's FSDP1 takes the compute device of CPU parameters
   as `torch.device("cpu")`: "Inconsistent compute device and `device_id` on rank 0: cpu vs
   cpu:0" (torch/distributed/fsdp/_init_utils.py, `_get_compute_device`).

torch 2.13 itself runs FSDP1 and FSDP2 on CPU over gloo. So for FSDP on a machine without CUDA,
`bypass_accelerate_device_checks` gets past 1 and 3 before `train()` builds its Accelerator:
it starts accelerate's CPU process group, then files it as a GPU group on `torch.device("cpu")`
so that `AcceleratorState` takes the FSDP branch. Everything after that (the FSDP wrapping
by accelerate with the config's policy, sharded steps, gathered checkpoints, resume) is the
code that runs on GPUs. With CUDA the bypass is not used.
"""

import json
import os
import sys

import torch


def bypass_accelerate_device_checks() -> None:
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    state = PartialState(cpu=True)  # gloo process group from torchrun's environment
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU  # place 1
    PartialState._shared_state["device"] = torch.device("cpu")  # place 3


def main(configs_json: str, result_json: str) -> None:
    from mirage.training.config import TrainConfig
    from mirage.training.train import train

    torch.set_num_threads(1)
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if fsdp and not torch.cuda.is_available():
        bypass_accelerate_device_checks()
    from accelerate.state import PartialState

    results = []
    for fields in json.loads(open(configs_json).read()):
        res = train(TrainConfig(**fields))
        state = PartialState()
        units = [m for m in res.model.modules() if type(m).__name__.startswith("FSDP")
                 or type(m).__name__ == "FullyShardedDataParallel"]  # fmt: skip
        results.append({
            "distributed_type": str(state.distributed_type),
            "num_processes": state.num_processes,
            "losses": res.losses,
            "step": res.step,
            "fsdp_units": len(units),  # FSDP1: FullyShardedDataParallel; FSDP2: FSDP<Class>
        })  # fmt: skip
    with open(f"{result_json}.rank{PartialState().process_index}", "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

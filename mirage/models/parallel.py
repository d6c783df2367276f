"""Context parallelism for MirageTransformer on diffusers' hooks: one video over N processes.

diffusers splits a model's token sequence over processes where its `_cp_plan` says and runs
attention as Ulysses (all-to-all over heads) or ring attention; its Wan plan covers the base
model's own forward, and its VACE model has none. MirageTransformer runs the base's blocks
from its own forward, with side blocks beside them, so its plan cuts at its two
`SequenceSplit` points instead: the main tokens with their per-token time embeddings and
rotary frequencies, and the side tokens; the base's `proj_out` output is gathered again.
Every attention module, main and side, gets the parallel config.

Launch with `torchrun` / `accelerate launch`: every process builds the same model and calls
`enable_context_parallel(model, ulysses=N)` after `torch.distributed` is initialised.
Ring attention needs an attention kernel that returns the log-sum-exp (flash / cuDNN on a
GPU); Ulysses runs everywhere, CPU processes on gloo included.
"""

from __future__ import annotations

import torch
from diffusers.models._modeling_parallel import (
    ContextParallelConfig,
    ContextParallelInput,
    ContextParallelOutput,
    ParallelConfig,
)

SPLIT = dict(split_dim=1, split_output=True)
# SequenceSplit outputs: x [B,S,D]; time projection [B,S,6,D] and embedding [B,S,D] when the
# timesteps are per token (otherwise [B,6,D] / [B,D], broadcast, left whole: expected_dims);
# rotary cos / sin [1,S,1,d]
MIRAGE_CP_PLAN = {
    "tokens": {
        0: ContextParallelInput(expected_dims=3, **SPLIT),
        1: ContextParallelInput(expected_dims=4, **SPLIT),
        2: ContextParallelInput(expected_dims=3, **SPLIT),
        3: ContextParallelInput(expected_dims=4, **SPLIT),
        4: ContextParallelInput(expected_dims=4, **SPLIT),
    },
    "side_tokens": {0: ContextParallelInput(expected_dims=3, **SPLIT)},
    "base.proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
}


def enable_context_parallel(model, ulysses: int = 1, ring: int = 1) -> ParallelConfig:
    """Split `model`'s sequence over the `ulysses x ring` processes of the default group."""
    from diffusers.hooks.context_parallel import apply_context_parallel
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("context parallelism needs torch.distributed initialised (torchrun)")
    world = dist.get_world_size()
    if ulysses < 1 or ring < 1 or ulysses * ring != world:
        raise ValueError(
            f"`ulysses` x `ring` must equal the number of processes ({world}), got "
            f"{ulysses} x {ring}"
        )
    heads = model.config.num_attention_heads
    if heads % ulysses:
        raise ValueError(f"`ulysses` {ulysses} must divide the {heads} attention heads")
    if model.context_parallel is not None:
        raise RuntimeError("context parallelism is already enabled on this model")
    cp = ContextParallelConfig(ulysses_degree=ulysses, ring_degree=ring)
    config = ParallelConfig(context_parallel_config=cp)
    device = next(model.parameters()).device
    # the mesh is built here, not by diffusers' ModelMixin: that path divides by the number
    # of accelerators, which is 0 for CPU processes
    mesh = dist.device_mesh.init_device_mesh(device.type, cp.mesh_shape,
                                             mesh_dim_names=cp.mesh_dim_names)  # fmt: skip
    config.setup(dist.get_rank(), world, device, mesh=mesh)
    for module in model.modules():
        processor = getattr(module, "processor", None)
        if isinstance(module, (Attention, AttentionModuleMixin)) and hasattr(
            processor, "_parallel_config"
        ):
            processor._parallel_config = config
    apply_context_parallel(model, cp, MIRAGE_CP_PLAN)
    model.context_parallel = config
    return config

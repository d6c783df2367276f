"""Run by tests/models/test_context_parallel.py under torchrun (2 CPU processes, gloo)."""

import json
import sys

import torch
import torch.distributed as dist

from mirage.models.loading import tiny_transformer_config
from mirage.models.parallel import enable_context_parallel
from mirage.models.transformer import MirageTransformer


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    base = WanTransformer3DModel(**tiny_transformer_config(in_channels=16, out_channels=16))
    model = MirageTransformer.from_base(base, seed=1).eval()
    with torch.no_grad():  # a non-zero side branch, so its hints matter
        for blk in model.side_blocks:
            blk.proj_out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 16, 4, 8, 8, generator=g)
    timestep = torch.tensor([[0.0, 0.0, 700.0, 700.0]])  # clean slots first, per frame
    text = torch.randn(1, 5, model.config.text_dim, generator=g)
    readout = torch.randn(1, 17, 4, 8, 8, generator=g)
    with torch.no_grad():
        ref = model(latents, timestep, text, readout)
        enable_context_parallel(model, ulysses=2)
        seen = []
        model.base.blocks[0].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))
        side = []
        model.side_blocks[0].register_forward_hook(lambda m, a, o: side.append(a[2].shape[1]))
        got = model(latents, timestep, text, readout)
    if dist.get_rank() == 0:
        result = {
            "max_abs_diff": float((got - ref).abs().max()),
            "ref_abs_max": float(ref.abs().max()),
            "tokens_per_process": seen[0],
            "side_tokens_per_process": side[0],
            "tokens": 4 * 4 * 4,
            "shape": list(got.shape),
        }
        with open(out, "w") as f:
            json.dump(result, f)
    # both ranks leave together: a rank that tears gloo down while the other still writes
    # was seen to abort at exit ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""Count parameters of the full-size Wan2.2-TI2V-5B DiT, the Mirage side branch and the LoRA.

    python benchmarks/model_size.py [--side-every 2] [--rank 64]

Everything is built on the meta device (no memory, no weights), so this runs anywhere in a
few seconds. Counts are checked against closed forms. Writes
benchmarks/results/model_size.csv and the machine description beside it.
"""

import argparse
import math
from pathlib import Path

import torch

from mirage.eval.machine import describe_machine, write_rows
from mirage.models.loading import tiny_transformer_config, wan22_ti2v_transformer_config
from mirage.models.lora import add_lora, lora_parameters
from mirage.models.transformer import MirageTransformer


def _count(params) -> int:
    return sum(math.prod(p.shape) for p in params)


def measure(config: dict, side_every: int, rank: int) -> dict:
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        base = WanTransformer3DModel(**config)
        # The constructor builds the side branch on the meta device; `from_base` would copy
        # the main blocks' weights into it, which meta tensors do not have.
        model = MirageTransformer(base, side_every=side_every)
        add_lora(model, rank=rank, alpha=rank)
    lora = _count(lora_parameters(model))
    base_n = _count(p for n, p in base.named_parameters() if "lora_" not in n)
    side = _count(model.side_branch_parameters())
    block = _count(p for n, p in base.blocks[0].named_parameters() if "lora_" not in n)

    d = config["num_attention_heads"] * config["attention_head_dim"]
    n_side = len(model.side_config["side_layers"])
    c_in, patch = config["in_channels"] + 1, math.prod(config["patch_size"])
    side_closed = n_side * (block + d * d + d) + (d * d + d) + (c_in * patch * d + d)
    lora_closed = config["num_layers"] * 4 * rank * (d + d)
    assert side == side_closed, (side, side_closed)
    assert lora == lora_closed, (lora, lora_closed)
    return {
        "dim": d,
        "num_layers": config["num_layers"],
        "side_every": side_every,
        "side_blocks": n_side,
        "lora_rank": rank,
        "base_params": base_n,
        "main_block_params": block,
        "side_branch_params": side,
        "lora_params": lora,
        "stage1_trainable": side,
        "stage2_trainable": side + lora,
        "total_params": base_n + side + lora,
        "side_over_base": round(side / base_n, 4),
        "bf16_base_GiB": round(base_n * 2 / 2**30, 3),
        "bf16_side_GiB": round(side * 2 / 2**30, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side-every", type=int, default=2)
    parser.add_argument("--rank", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for name, cfg, rank in (
        ("wan2.2-ti2v-5b", wan22_ti2v_transformer_config(), args.rank),
        ("mirage-tiny", tiny_transformer_config(), min(args.rank, 16)),
    ):
        row = {"model": name, **measure(cfg, args.side_every, rank)}
        rows.append(row)
        print(
            f"{name}: base {row['base_params'] / 1e6:,.1f} M | side branch "
            f"({row['side_blocks']} blocks, every {row['side_every']}) "
            f"{row['side_branch_params'] / 1e6:,.1f} M ({100 * row['side_over_base']:.1f}% of base)"
            f" | LoRA r{rank} {row['lora_params'] / 1e6:,.2f} M | stage 2 trainable "
            f"{row['stage2_trainable'] / 1e6:,.1f} M"
        )
    out = Path(__file__).parent / "results" / "model_size.csv"
    write_rows(rows, out, describe_machine("meta"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

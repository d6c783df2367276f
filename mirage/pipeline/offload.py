"""Model offload that follows the loop: each model sits on the CPU and is moved to the execution
device only for the stage that runs it.

accelerate's module hooks wrap `forward`, but the loop calls `MirageTransformer.forward` (not the
base model's) and the VAE's `encode` / `decode` (not its `forward`), so hooks on the loaded
components never fire. Moving whole models around each stage is what diffusers' model offload
does, and it cannot miss a module: whatever runs inside `running(...)` is on the device.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class Offload:
    """`running(*models)` puts the models on `device` for the block; off, it does nothing."""

    def __init__(self, device: str | torch.device, enabled: bool = False):
        self.device = torch.device(device)
        self.enabled = bool(enabled)

    def move(self, model: torch.nn.Module, device: torch.device) -> None:
        model.to(device)

    @contextmanager
    def running(self, *models):
        models = [m for m in models if m is not None]
        if not self.enabled:
            yield
            return
        for m in models:
            self.move(m, self.device)
        try:
            yield
        finally:
            for m in models:
                self.move(m, torch.device("cpu"))
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

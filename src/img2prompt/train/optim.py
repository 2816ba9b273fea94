"""AdamW with layer-wise LR decay, and the warmup + cosine schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from img2prompt.errors import ConfigError
from img2prompt.models.model import ImageToPromptModel


def _split_decay(params: list[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    """Biases and norm weights (1-d tensors) get no weight decay, as in most ViT recipes."""
    decay = [p for _, p in params if p.ndim > 1]
    no_decay = [p for _, p in params if p.ndim <= 1]
    return decay, no_decay


def check_layer_options(
    model: ImageToPromptModel, layer_decay: float, freeze_layers: int, reinit_layers: int
) -> None:
    """The layer options need a backbone split into layers; one that is a single group (a timm
    model) would silently ignore them, so they are refused, naming the backbone."""
    asked = [
        flag
        for flag, value in (
            ("--layer-decay", layer_decay != 1.0),
            ("--freeze-layers", freeze_layers > 0),
            ("--reinit-layers", reinit_layers > 0),
        )
        if value
    ]
    if asked and len(model.backbone.layer_groups()) < 2:
        raise ConfigError(
            f"{', '.join(asked)} need a backbone split into layers; {model.cfg.backbone} is one "
            "group (use hf-clip, hf-convnext or efficientnet-lite0 for layer-wise options)"
        )


def param_groups(
    model: ImageToPromptModel,
    lr: float,
    backbone_lr: float | None,
    layer_decay: float,
    weight_decay: float,
) -> list[dict]:
    """The head at `lr`; backbone layer group i of G (input to output) at
    `backbone_lr * layer_decay ** (G - 1 - i)`. Frozen parameters are left out."""
    groups: list[dict] = []

    def add(module: nn.Module, group_lr: float, name: str) -> None:
        trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        decay, no_decay = _split_decay(trainable)
        for params, wd in ((decay, weight_decay), (no_decay, 0.0)):
            if params:
                groups.append({"params": params, "lr": group_lr, "weight_decay": wd, "name": name})

    add(model.head, lr, "head")
    add(model.pool, lr, "pool")  # nothing unless a pooling has trainable weights
    layers = model.backbone.layer_groups()
    top_lr = backbone_lr if backbone_lr is not None else lr
    for i, layer in enumerate(layers):
        add(layer, top_lr * layer_decay ** (len(layers) - 1 - i), f"backbone.{i}")
    return groups


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_share: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_share` of the steps, then cosine decay to zero."""
    warmup = max(1, round(total_steps * warmup_share)) if warmup_share > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def freeze_bottom(model: ImageToPromptModel, count: int) -> None:
    """Freeze the backbone's first `count` layer groups (the embeddings count as one)."""
    for layer in model.backbone.layer_groups()[:count]:
        layer.requires_grad_(False)


def reinit_top(model: ImageToPromptModel, count: int) -> None:
    """Re-initialise the backbone's top `count` blocks (not its final norm), as the Secu-Layer
    solution did to let the top of CLIP re-learn for the new target."""
    blocks = model.backbone.layer_groups()[1:-1]
    hf_model = getattr(model.backbone, "model", None)
    init = getattr(hf_model, "_init_weights", None)
    for block in blocks[len(blocks) - count :] if count else []:
        for module in block.modules():
            if init is not None:
                init(module)
            elif hasattr(module, "reset_parameters"):
                module.reset_parameters()

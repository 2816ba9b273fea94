"""Losses, EMA, MixGen, layer-wise LR decay and the schedule, against direct computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from img2prompt.models.model import ImageToPromptModel, ModelConfig
from img2prompt.train.augment import mixgen
from img2prompt.train.losses import CosineLoss, LossSpec, MNRLoss, WeightedLoss
from img2prompt.train.optim import freeze_bottom, param_groups, reinit_top, warmup_cosine


def _mnrl_reference(p: np.ndarray, t: np.ndarray, scale: float) -> float:
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(p)):
        logits = [scale * float(p[i] @ t[j]) for j in range(len(t))]
        top = max(logits)
        log_sum = top + math.log(sum(math.exp(x - top) for x in logits))
        total += log_sum - logits[i]
    return total / len(p)


def test_mnrl_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(6, 384)), rng.normal(size=(6, 384))
    for scale in (1.0, math.sqrt(384)):
        loss = MNRLoss(scale=scale)(torch.tensor(p), torch.tensor(t))
        assert float(loss) == pytest.approx(_mnrl_reference(p, t, scale), rel=1e-9)
    symmetric = MNRLoss(scale=2.0, symmetric=True)(torch.tensor(p), torch.tensor(t))
    expected = (_mnrl_reference(p, t, 2.0) + _mnrl_reference(t, p, 2.0)) / 2
    assert float(symmetric) == pytest.approx(expected, rel=1e-9)


def test_cosine_and_weighted_losses():
    p, t = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[0.0, 2.0], [3.0, 3.0]])
    assert float(CosineLoss()(p, t)) == pytest.approx(0.5)  # (1 - 0 + 1 - 1) / 2
    both = WeightedLoss({"cosine": 2.0, "mnrl": 0.5}, {"mnrl": {"scale": 3.0}})(p, t)
    expected = 2 * 0.5 + 0.5 * _mnrl_reference(p.numpy(), t.numpy(), 3.0)
    assert float(both) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("l2", "unknown loss 'l2'"),
        ("cosine=x", "not a number"),
        ("cosine=0", "positive"),
        ("mnrl=-1", ">= 0"),
        ("", "at least one"),
    ],
)
def test_bad_loss_specs_are_explained(text, message):
    with pytest.raises(ValueError, match=message):
        LossSpec.parse(text)
    assert LossSpec.parse("cosine=1, mnrl=0.25").weights == {"cosine": 1.0, "mnrl": 0.25}


def test_the_training_loops_ema_is_the_running_average_of_its_steps(tmp_path, encoder, monkeypatch):
    """The loop's EMA (`--ema 0.8`, built by `build_model` and updated in `train_one_epoch`),
    against a brute-force running average of the weights after every optimiser step: the first
    step's weights start it, then ema = decay * ema + (1 - decay) * weights, buffers too."""
    import img2prompt.train.loop as loop
    from img2prompt.train.options import TrainConfig
    from synthetic import make_shapes_dataset

    data = make_shapes_dataset(tmp_path / "data", encoder, images_per_prompt=2)
    built = []

    def build_model(run):
        built.append(real_build_model(run))
        return built[-1]

    real_build_model = loop.build_model
    monkeypatch.setattr(loop, "build_model", build_model)
    steps: list[dict[str, torch.Tensor]] = []

    def after_step(optimizer, args, kwargs):
        model = built[-1][0]
        steps.append({k: v.detach().clone().float() for k, v in model.state_dict().items()})

    handle = register_optimizer_step_post_hook(after_step)
    try:
        cfg = TrainConfig.of(
            data=data,
            out=tmp_path / "run",
            backbone="tiny-clip",
            head="mlp",
            head_options="hidden=16",
            epochs=2,
            lp_epochs=0,
            batch_size=4,
            workers=0,
            ema=0.8,
            lr=1e-2,
        )
        loop.train(cfg, progress=False)
    finally:
        handle.remove()
    assert len(steps) >= 4
    expected = dict(steps[0])
    for weights in steps[1:]:
        for name, value in weights.items():
            if value.is_floating_point() and "num_batches_tracked" not in name:
                expected[name] = 0.8 * expected[name] + 0.2 * value
    averaged = built[-1][1].module.state_dict()
    moved = [k for k in expected if not torch.equal(steps[0][k], steps[-1][k])]
    assert moved, "training moved no weight"
    for name in moved:
        if "num_batches_tracked" not in name:
            torch.testing.assert_close(averaged[name].float(), expected[name], msg=name)


def test_mixgen_mixes_pixels_and_embeds_the_joined_prompts(encoder):
    pixels = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    prompts = ["a red cat", "a blue dog", "a green bird", "a black horse"]
    targets = torch.from_numpy(encoder.encode(prompts))
    generator = torch.Generator().manual_seed(0)
    new_pixels, new_targets, new_prompts = mixgen(
        pixels, prompts, targets, 0.5, encoder.encode, generator
    )
    partners = torch.randperm(4, generator=torch.Generator().manual_seed(0))[:2].tolist()
    for i, j in enumerate(partners):
        assert new_prompts[i] == f"{prompts[i]} {prompts[j]}"
        torch.testing.assert_close(new_pixels[i], 0.5 * pixels[i] + 0.5 * pixels[j])
        torch.testing.assert_close(
            new_targets[i], torch.from_numpy(encoder.encode([new_prompts[i]])[0]), atol=1e-5, rtol=0
        )
    assert new_prompts[2:] == prompts[2:]
    torch.testing.assert_close(new_pixels[2:], pixels[2:])
    torch.testing.assert_close(new_targets[2:], targets[2:])
    assert pixels[0, 0, 0, 0] == 0  # inputs untouched


def test_layer_wise_lr_decay_groups():
    model = ImageToPromptModel(ModelConfig("tiny-clip"))
    freeze_bottom(model, 1)  # embeddings frozen
    groups = param_groups(model, lr=1e-3, backbone_lr=1e-4, layer_decay=0.5, weight_decay=0.1)
    lr_of = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in lr_of, "a parameter is in two groups"
            lr_of[id(p)] = (group["name"], group["lr"], group["weight_decay"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(lr_of) == len(trainable)
    layers = model.backbone.layer_groups()  # embeddings, block 0, block 1, final norm
    assert [lr_of[id(next(layer.parameters()))][1] for layer in layers[1:]] == pytest.approx(
        [1e-4 * 0.25, 1e-4 * 0.5, 1e-4]
    )
    assert all(id(p) not in lr_of for p in layers[0].parameters())
    assert lr_of[id(model.head[0].weight)] == ("head", 1e-3, 0.1)
    assert lr_of[id(model.head[0].bias)] == ("head", 1e-3, 0.0)  # no decay on biases


def test_reinit_changes_only_the_top_blocks():
    model = ImageToPromptModel(ModelConfig("tiny-clip"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    reinit_top(model, 1)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(".layers.1." in n for n in changed), changed


def test_warmup_then_cosine_to_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine(optimizer, total_steps=20, warmup_share=0.1)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])  # 2 warmup steps, then the cosine from 1
    assert lrs[3] == pytest.approx(0.5 * (1 + math.cos(math.pi / 18)))
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] < 0.01

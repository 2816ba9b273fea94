"""Registries for backbones, heads and losses: every registered head and loss works, names are
unique, and an unknown name lists the known ones."""

from __future__ import annotations

import pytest
import torch

from img2prompt.errors import ConfigError
from img2prompt.models.backbones import BACKBONES
from img2prompt.models.heads import HEADS, build_head, register_head
from img2prompt.models.model import ModelConfig
from img2prompt.registry import Registry
from img2prompt.train.losses import LOSSES, LossSpec, WeightedLoss, register_loss


def test_the_built_in_names_are_registered():
    assert {"linear", "mlp", "class-mixture"} <= set(HEADS.names())
    assert {"cosine", "mnrl"} <= set(LOSSES.names())


@pytest.mark.parametrize("name", HEADS.names())
def test_every_registered_head_maps_features_to_384_with_gradients(name):
    torch.manual_seed(0)
    options = {"hidden": 8} if "hidden" in HEADS.options(name) else {}
    head = build_head(name, 16, 384, options=options)
    head.train()
    features = torch.randn(4, 16, requires_grad=True)
    out = head(features)
    assert out.shape == (4, 384) and torch.isfinite(out).all()
    out.square().sum().backward()
    for param_name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name
    assert features.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_prefers_the_right_answer_and_has_gradients(name):
    torch.manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(8, 384), dim=-1)
    loss = LOSSES.get(name)()
    good = (2 * targets + 0.1 * torch.randn(8, 384)).requires_grad_()
    bad = torch.randn(8, 384)
    value = loss(good, targets)
    assert value.ndim == 0 and torch.isfinite(value)
    assert value.item() < loss(bad, targets).item()
    value.backward()
    assert good.grad.abs().sum() > 0
    assert WeightedLoss({name: 1.0})(good, targets).item() == pytest.approx(value.item())


@pytest.mark.parametrize("registry", [BACKBONES, HEADS, LOSSES], ids=lambda r: r.kind)
def test_unknown_names_list_the_known_ones(registry):
    with pytest.raises(ConfigError, match=rf"unknown {registry.kind} 'nope'; known: ") as error:
        registry.get("nope")
    assert all(name in str(error.value) for name in registry.names())


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="head 'mlp' is already registered"):
        register_head("mlp")(lambda in_dim, out_dim, hidden: torch.nn.Identity())
    with pytest.raises(ValueError, match="loss 'cosine' is already registered"):
        register_loss("cosine")(torch.nn.MSELoss)


def test_a_new_entry_is_usable_by_name_at_once():
    registry: Registry[type] = Registry("widget")
    registry.register("a")(int)
    assert "a" in registry and registry.get("a") is int and list(registry) == ["a"]


def test_configs_check_names_against_the_registries():
    with pytest.raises(ConfigError, match=r"--head must be one of .*class-mixture.*mlp"):
        ModelConfig("tiny-clip", head="nope")
    with pytest.raises(ConfigError, match="unknown loss 'nope'; use cosine / mnrl"):
        LossSpec.parse("cosine=1,nope=2")

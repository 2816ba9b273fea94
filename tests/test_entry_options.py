"""Registry entries carry their own options (`--head-options`, `--pool-options`,
`--loss-options`): they change what is built, and bad ones fail when the config is made."""

from __future__ import annotations

import math
import re

import pytest
import torch
from typer.testing import CliRunner

from img2prompt.errors import ConfigError
from img2prompt.models.heads import HEADS, build_head
from img2prompt.models.model import ImageToPromptModel
from img2prompt.models.options import ModelConfig
from img2prompt.models.pooling import GeM, build_pool
from img2prompt.registry import parse_options
from img2prompt.train.losses import LOSSES, LossSpec
from img2prompt.train.options import TrainConfig

runner = CliRunner()


def _train_config(tmp_path, **values) -> TrainConfig:
    return TrainConfig.of(data=tmp_path, out=tmp_path / "run", backbone="tiny-clip", **values)


def test_entries_list_their_declared_options_with_defaults():
    assert {k: (o.kind, o.default) for k, o in HEADS.options("mlp").items()} == {
        "hidden": (int, 16 * 1024)
    }
    assert HEADS.options("linear") == {}
    mnrl = LOSSES.options("mnrl")
    assert (mnrl["scale"].kind, mnrl["scale"].default) == (float, math.sqrt(384))
    assert (mnrl["symmetric"].kind, mnrl["symmetric"].default) == (bool, False)
    assert parse_options(" hidden = 8 , mnrl.scale=2,") == {"hidden": "8", "mnrl.scale": "2"}


def test_a_declared_head_option_changes_the_built_module():
    default = build_head("mlp", 16, 384)
    narrow = build_head("mlp", 16, 384, options="hidden=24")
    assert default[0].out_features == 16 * 1024 and default[1].num_features == 16 * 1024
    assert narrow[0].out_features == 24 and narrow[1].num_features == 24
    assert narrow[3].in_features == 24 and narrow[3].out_features == 384
    model = ImageToPromptModel(ModelConfig("tiny-clip", head="mlp", head_options="hidden=24"))
    assert model.head[0].out_features == 24 and model(torch.randn(2, 3, 32, 32)).shape == (2, 384)


def test_gem_pool_options_equal_gem_on_the_same_tokens():
    torch.manual_seed(0)
    model = ImageToPromptModel(ModelConfig("tiny-clip", pool="gem", pool_options="p=3")).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.backbone.tokens(pixels)
        pooled = model.backbone_features(pixels)
        torch.testing.assert_close(pooled, GeM(3.0)(tokens))
        assert not torch.allclose(pooled, GeM(2.0)(tokens))  # p really reached it
        torch.testing.assert_close(build_pool("gem", {"p": 3})(model.backbone, pixels), pooled)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            dict(head="mlp", head_options="width=3"),
            "--head-options: head 'mlp' has no option 'width'; its options: hidden=16384",
        ),
        (
            dict(head="linear", head_options="hidden=3"),
            "--head-options: head 'linear' has no option 'hidden'; its options: none",
        ),
        (
            dict(head="mlp", head_options="hidden=wide"),
            "--head-options: head 'mlp': option 'hidden' takes a whole number, got 'wide'",
        ),
        (dict(head="mlp", head_options="hidden"), "--head-options: write key=value pairs"),
        (
            dict(head="mlp", head_options="hidden=0"),
            "--head-options: head 'mlp': option 'hidden' must be > 0 (default 16384), got 0",
        ),
        (dict(pool="gem", pool_options="p=-1"), "option 'p' must be > 0"),
        (dict(head="mlp", head_options="hidden=2,hidden=3"), "'hidden' is given twice"),
        (
            dict(pool="gem", pool_options="q=1"),
            "--pool-options: pooling 'gem' has no option 'q'; its options: p=2.0",
        ),
        (
            dict(pool="gem", pool_options="p=nan"),
            "--pool-options: pooling 'gem': option 'p' takes a finite number, got 'nan'",
        ),
        (
            dict(loss="mnrl", loss_options="mnrl.scale=big"),
            "--loss-options: loss 'mnrl': option 'scale' takes a finite number, got 'big'",
        ),
        (
            dict(loss="mnrl", loss_options="mnrl.symmetric=maybe"),
            "--loss-options: loss 'mnrl': option 'symmetric' takes true/false/1/0, got 'maybe'",
        ),
        (
            dict(loss="mnrl", loss_options="mnrl.temperature=2"),
            "--loss-options: loss 'mnrl' has no option 'temperature'; its options: scale=19.59",
        ),
        (dict(loss_options="l2.scale=1"), "--loss-options: unknown loss 'l2'; use cosine / mnrl"),
        (dict(loss_options="scale=1"), "--loss-options: write LOSS.OPTION=VALUE"),
    ],
)
def test_bad_options_fail_when_the_config_is_made_naming_flag_entry_and_option(
    tmp_path, values, message
):
    with pytest.raises(ConfigError) as error:
        _train_config(tmp_path, **values)
    assert message in str(error.value)


def test_option_values_convert_to_the_declared_type(tmp_path):
    assert LOSSES.resolve("mnrl", "symmetric=1,scale=20") == {"symmetric": True, "scale": 20.0}
    assert LOSSES.resolve("mnrl", "symmetric=FALSE") == {"symmetric": False}
    assert LOSSES.resolve("mnrl", {"scale": 3}) == {"scale": 3.0}  # an int for a float
    assert HEADS.resolve("mlp", {"hidden": 64}) == {"hidden": 64}
    with pytest.raises(ConfigError, match=re.escape("'hidden' takes a whole number, got '2.5'")):
        HEADS.resolve("mlp", {"hidden": 2.5})
    with pytest.raises(ConfigError, match="'symmetric' takes true/false/1/0, got 'yes'"):
        LOSSES.resolve("mnrl", "symmetric=yes")
    # Configs keep them resolved, so equal settings are equal text.
    assert ModelConfig("tiny-clip", pool="gem", pool_options=" p = 3 ").pool_options == "p=3.0"
    cfg = _train_config(tmp_path, loss_options="mnrl.symmetric=1,mnrl.scale=20")
    assert cfg.loss_options == "mnrl.symmetric=true,mnrl.scale=20.0"


def _mnrl_brute_force(p: torch.Tensor, t: torch.Tensor, scale: float) -> float:
    p = p / p.norm(dim=1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(len(p)):
        logits = [scale * float(p[i] @ t[j]) for j in range(len(t))]
        total += math.log(sum(math.exp(x) for x in logits)) - logits[i]
    return total / len(p)


def test_loss_options_scale_reaches_mnrl(tmp_path):
    cfg = _train_config(tmp_path, loss="mnrl", loss_options="mnrl.scale=3.5")
    loss_fn = cfg.loss_spec.build()
    assert loss_fn.losses["mnrl"].scale == 3.5
    torch.manual_seed(0)
    p, t = torch.randn(6, 384, dtype=torch.float64), torch.randn(6, 384, dtype=torch.float64)
    expected = _mnrl_brute_force(p, t, 3.5)
    assert float(loss_fn(p, t)) == pytest.approx(expected, rel=1e-6)
    assert abs(expected - _mnrl_brute_force(p, t, math.sqrt(384))) > 1e-3  # the scale matters
    both = LossSpec.parse("mnrl", "mnrl.scale=3.5,mnrl.symmetric=true").build()(p, t)
    reverse = _mnrl_brute_force(t, p, 3.5)
    assert float(both) == pytest.approx((expected + reverse) / 2, rel=1e-6)


def test_a_recipe_may_give_options_as_mappings(tmp_path):
    """YAML recipes: `loss_options: {mnrl: {scale: 20}}` or `{mnrl.scale: 20}`, and
    `head_options: {hidden: 64}`, mean what the text spelling means."""
    from img2prompt.fields import build_options, load_options_file
    from img2prompt.train.options import TrainConfig

    for spelled in ("loss_options: {mnrl: {scale: 20}}", "loss_options: {mnrl.scale: 20}"):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(
            f"backbone: tiny-clip\nhead: mlp\nhead_options: {{hidden: 64}}\n{spelled}\n"
        )
        cfg = build_options(
            TrainConfig, load_options_file(recipe, TrainConfig) | {"data": "d", "out": "o"}
        )
        assert cfg.loss_options == "mnrl.scale=20.0" and cfg.model.head_options == "hidden=64"

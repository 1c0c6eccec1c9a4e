"""``pools.attach``: a poolbench pooling in real torchvision and timm classifiers, forward and backward."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torchvision
from torch import nn

from poolbench import models, pools
from poolbench.pools.attach import AttachedPool
from poolbench.pools.classic import GeM

NUM_CLASSES = 5
TORCHVISION = ["resnet18", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny",
               "regnet_y_400mf", "shufflenet_v2_x0_5", "mnasnet0_5"]
# timm models with each kind of head: pooling that flattens (resnet, efficientnet), pooling that
# keeps [B, C, 1, 1] for a norm after it (convnext), and timm's "fast" poolings.
TIMM = [("resnet18", {}), ("convnext_atto", {}), ("efficientnet_b0", {}), ("resnet18", {"global_pool": "fastavg"})]


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    """Each model built once (deep-copied by the tests), in eval mode, with a fixed seed."""
    out = {}
    for name in TORCHVISION:
        torch.manual_seed(0)
        out[name] = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES).eval()
    for name, kwargs in TIMM:
        torch.manual_seed(0)
        out[_timm_id(name, kwargs)] = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES,
                                                        **kwargs).eval()
    return out


def _timm_id(name: str, kwargs: dict) -> str:
    return "timm-" + name + "".join(f"-{value}" for value in kwargs.values())


MODEL_IDS = TORCHVISION + [_timm_id(name, kwargs) for name, kwargs in TIMM]


def _input(model_id: str) -> torch.Tensor:
    # 32x32 makes VGG's last map 1x1, where its 7x7 average pooling only replicates (see attach's doc).
    size = 32 if model_id.startswith("vgg") else 64
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_attaching_gap_keeps_the_logits_of_the_models_own_average_pooling(built, model_id):
    model, x = built[model_id], _input(model_id)
    with torch.no_grad():
        expected = model(x)
        attached = pools.attach(copy.deepcopy(model), "gap")
        assert attached.training is False
        # Untrained logits can be tiny (1e-10): compare relative to their size.
        torch.testing.assert_close(attached(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_an_attached_pooling_is_used_and_trains(built, model_id):
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # maps of 2x2 at least
    logits = {}
    for spec in ("gap", "gmp"):
        model = pools.attach(copy.deepcopy(built[model_id]).train(), spec)
        torch.manual_seed(3)  # the same dropout masks for both
        with torch.no_grad():
            logits[spec] = model(x)
    assert (logits["gap"] - logits["gmp"]).abs().max() > 1e-3 * logits["gap"].abs().max(), "pooling not used"
    model = pools.attach(copy.deepcopy(built[model_id]).train(), "gem")
    gems = [m for m in model.modules() if isinstance(m, GeM)]
    assert len(gems) == 1 and gems[0].training
    seen = []
    gems[0].register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    out = model(x)
    assert out.shape == (4, NUM_CLASSES) and len(seen) == 1
    feature_map, pooled = seen[0]
    assert feature_map.dim() == 4 and pooled.shape == feature_map.shape[:2]
    out.square().mean().backward()
    grad = gems[0].p.grad
    assert grad is not None and torch.isfinite(grad) and grad != 0


def test_a_second_attach_replaces_the_first(built):
    model = pools.attach(pools.attach(copy.deepcopy(built["vgg11_bn"]), "gmp"), "topk(k=2)")
    assert type(model.avgpool.pool).__name__ == "TopKPool" and model.classifier[0].in_features == 512
    model = pools.attach(pools.attach(copy.deepcopy(built["mobilenet_v2"]), "gmp"), "gem")
    assert isinstance(model.features.pool, AttachedPool) and isinstance(model.features.pool.pool, GeM)
    assert list(model.features._modules)[-1] == "pool"


def test_hyper_parameters_channels_and_modules(built):
    model = pools.attach(copy.deepcopy(built["resnet18"]), "gem", p=4.0, learnable=False)
    assert model.avgpool.pool.p.item() == 4.0 and list(model.avgpool.parameters()) == []
    model = pools.attach(copy.deepcopy(built["efficientnet_b0"]), "spectrum")  # sized by the channels
    assert model.avgpool.pool.theta.shape == (1280,)
    mine = GeM()
    assert pools.attach(copy.deepcopy(built["timm-resnet18"]), mine).global_pool.pool is mine
    with pytest.raises(TypeError, match="a module is used as it is"):
        pools.attach(copy.deepcopy(built["resnet18"]), GeM(), p=2)


def test_the_pooling_follows_the_models_dtype():
    model = pools.attach(torchvision.models.resnet18(num_classes=3).double(), "gem")
    assert model.avgpool.pool.p.dtype == torch.float64
    assert model(torch.rand(2, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


def test_poolbench_models_get_their_pool_replaced():
    model = pools.attach(models.create("resnet20", num_classes=10), "gem")
    assert isinstance(model.pool, GeM)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_an_unknown_model_names_the_attributes_looked_for():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"cannot find the global pooling of Sequential: looked for \.pool "
                                         r".*\.global_pool.*\.avgpool.*MobileNetV2 \(\.features\)"):
        pools.attach(model, "gem")


def test_timm_poolings_that_change_the_width_or_pool_tokens_are_refused():
    wide = timm.create_model("resnet18", pretrained=False, num_classes=3, global_pool="catavgmax")
    with pytest.raises(ValueError, match="2x the channels.*reset_classifier"):
        pools.attach(wide, "gem")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=1)
    with pytest.raises(ValueError, match="pools tokens"):
        pools.attach(vit, "gem")

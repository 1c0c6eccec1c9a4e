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


# --- researchers' own models: the pooling found anywhere, in a module or in forward ----------------

class SqueezeExcite(nn.Module):
    """Pools to 1x1 inside a block: an adaptive pooling that is *not* the global one."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(self.pool(x).flatten(1)))[:, :, None, None]


class FunctionalPool(nn.Module):
    """Pools in forward with a function, after a block that pools inside (SE)."""

    def __init__(self, how: str):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3), nn.ReLU(), SqueezeExcite(12), nn.ReLU())
        self.head = nn.Linear(12, 4)
        self.how = how

    def forward(self, x):
        x = self.body(x)
        if self.how == "mean":
            x = x.mean((2, 3))
        elif self.how == "mean-last":
            x = x.mean([-2, -1])
        elif self.how == "keepdim":
            x = torch.flatten(x.mean(dim=(2, 3), keepdim=True), 1)
        elif self.how == "adaptive":
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1)
        else:
            x = torch.amax(x, dim=(2, 3))
        return self.head(x)


class Untraceable(FunctionalPool):
    def forward(self, x):
        x = self.body(x)
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 1.0
        return self.head(x.mean((2, 3)))


def sequential_cnn(max_pool: bool = False, out: tuple | int = (1, 1)) -> nn.Module:
    pool = nn.AdaptiveMaxPool2d(out) if max_pool else nn.AdaptiveAvgPool2d(out)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), SqueezeExcite(8),
                         nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), pool, nn.Flatten(), nn.Linear(16, 3))


class NestedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU())  # grey images: the dry forward follows C_in
        self.blocks = nn.ModuleList([nn.Sequential(SqueezeExcite(6), nn.Conv2d(6, 10, 3))])
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(10, 2))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


OWN = {"sequential": (sequential_cnn, 3, "5"), "sequential-int": (lambda: sequential_cnn(out=1), 3, "5"),
       "nested-max": (NestedHead, 1, "head.0")}


def _gems(model: nn.Module) -> list[GeM]:
    return [m for m in model.modules() if isinstance(m, GeM)]


def _trains(model: nn.Module, x: torch.Tensor) -> None:
    """The new pooling is called in forward and its parameter gets a gradient."""
    out = model.train()(x)
    out.square().mean().backward()
    (gem,) = _gems(model)
    assert gem.p.grad is not None and gem.p.grad != 0


@pytest.mark.parametrize("own", OWN)
def test_a_module_pooling_is_found_at_any_depth_past_the_ones_inside_blocks(own):
    make, channels_in, path = OWN[own]
    x = torch.rand(2, channels_in, 20, 20, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        expected = model(x)
    gap = pools.attach(copy.deepcopy(model), "gap")
    assert gap is not model and gap.pool_path == path
    assert isinstance(gap.get_submodule(path), AttachedPool)
    assert sum(isinstance(m, nn.AdaptiveAvgPool2d) for m in gap.modules()) >= 1  # the SE pooling stays
    if own != "nested-max":  # its max pooling became a mean: not the same logits
        with torch.no_grad():
            torch.testing.assert_close(gap(x), expected)
    _trains(pools.attach(copy.deepcopy(model), "gem"), x)


@pytest.mark.parametrize("how", ["mean", "mean-last", "keepdim", "adaptive", "amax"])
def test_a_functional_pooling_in_forward_is_replaced_in_the_traced_graph(how):
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = FunctionalPool(how).eval()
    with torch.no_grad():
        expected = model(x)
    gap = pools.attach(copy.deepcopy(model), "gap")
    assert isinstance(gap, torch.fx.GraphModule) and gap.pool_path.startswith("poolbench_pool (was ")
    assert set(model.state_dict()) <= set(gap.state_dict())  # the same parameters under the same names
    if how != "amax":
        with torch.no_grad():
            torch.testing.assert_close(gap(x), expected)
    _trains(pools.attach(copy.deepcopy(model), "gem"), x)


def test_at_names_the_module_to_replace():
    model = sequential_cnn()
    attached = pools.attach(model, "gem", at="2.pool")  # the SE block's pooling, on purpose
    assert attached.pool_path == "2.pool" and isinstance(attached[2].pool, AttachedPool)
    assert _gems(attached)[0].p.shape == () and attached(torch.rand(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"has no module '2.pol': did you mean 2.pool"):
        pools.attach(sequential_cnn(), "gem", at="2.pol")


def test_a_model_whose_pooling_cannot_be_found_says_how_to_make_it_a_module():
    with pytest.raises(ValueError, match=r"torch.fx cannot trace.*nn.AdaptiveAvgPool2d\(1\).*at="):
        pools.attach(Untraceable("mean"), "gem")
    flat = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"cannot find the global pooling of Sequential: looked for \.pool "
                                         r".*\.global_pool.*\.avgpool.*MobileNetV2 \(\.features\)"):
        pools.attach(flat, "gem")


def test_timm_poolings_that_change_the_width_or_pool_tokens_are_refused():
    wide = timm.create_model("resnet18", pretrained=False, num_classes=3, global_pool="catavgmax")
    with pytest.raises(ValueError, match="2x the channels.*reset_classifier"):
        pools.attach(wide, "gem")
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=1)
    with pytest.raises(ValueError, match="pools tokens"):
        pools.attach(vit, "gem")

"""Tests of poolbench.models against the model facts of SPEC section 1 and the papers."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from poolbench import models
from poolbench.core.settings import BENCHMARK_SETTINGS, SETTINGS
from poolbench.pools.classic import GeM, GlobalAvgPool

RESNETS = ["resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
VGGS = ["vgg11bn", "vgg13bn", "vgg16bn", "vgg19bn"]
SPATIAL_VARIANTS = ["vgg16bn-2x2", "mobilenetv2-4x4"]  # the spatial suite's: 2x2 and 4x4 pool inputs
ALL_ARCHS = RESNETS + VGGS + ["mobilenetv2"] + SPATIAL_VARIANTS
BENCHMARK_ARCHS = ["resnet56", "vgg16bn", "mobilenetv2"]

# What the pooling sees on a 32x32 image: CIFAR ResNets end on 64 x 8x8 (three stages, strides
# 1/2/2); VGG's five max-pools and MobileNetV2's total stride 32 both end on 1x1.
EXPECTED_POOL_INPUT = {
    **dict.fromkeys(RESNETS, (64, 8, 8)),
    **dict.fromkeys(VGGS, (512, 1, 1)),
    "mobilenetv2": (1280, 1, 1),
    "vgg16bn-2x2": (512, 2, 2),
    "mobilenetv2-4x4": (1280, 4, 4),
}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def modules_of(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


class ConstantPool(nn.Module):
    """A pooling with its own conv and BN, set to values no model init would produce."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels)
        nn.init.constant_(self.conv.weight, 0.125)
        nn.init.constant_(self.conv.bias, -0.25)
        nn.init.constant_(self.norm.weight, 0.5)
        nn.init.constant_(self.norm.bias, 0.75)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)).mean(dim=(2, 3))


# --- architecture facts -------------------------------------------------------------------

def test_names_are_the_documented_architectures():
    assert sorted(models.names()) == sorted(ALL_ARCHS)


@pytest.mark.parametrize(("arch", "num_classes", "expected"), [
    ("resnet56", 100, 861_620),
    ("vgg16bn", 100, 15_299_748),
    ("mobilenetv2", 10, 2_236_682),
])
def test_parameter_counts_of_benchmark_models(arch, num_classes, expected):
    assert count_parameters(models.create(arch, num_classes)) == expected


def test_option_a_resnet56_drops_exactly_the_projection_parameters():
    projection = models.create("resnet56", 100)
    option_a = models.create("resnet56", 100, shortcut="identity_pad")
    # Option B's two projections: 1x1 conv 16->32 + BN(32), and 1x1 conv 32->64 + BN(64).
    projection_params = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count_parameters(option_a) == 861_620 - projection_params
    assert count_parameters(option_a) < count_parameters(projection)
    assert not [c for c in modules_of(option_a, nn.Conv2d) if c.kernel_size == (1, 1)]
    assert len([c for c in modules_of(projection, nn.Conv2d) if c.kernel_size == (1, 1)]) == 2
    assert option_a(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_pad_shortcut_subsamples_and_appends_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    y = models.PadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_unknown_shortcut_is_an_error():
    with pytest.raises(ValueError, match="identity_pad"):
        models.create("resnet20", 10, shortcut="option_c")


@pytest.mark.parametrize("arch", RESNETS)
def test_cifar_resnet_has_6n_plus_2_weighted_layers_and_no_max_pool(arch):
    model = models.create(arch, 10)
    depth = int(arch.removeprefix("resnet"))
    main_path_convs = [c for c in modules_of(model, nn.Conv2d) if c.kernel_size == (3, 3)]
    assert len(main_path_convs) + len(modules_of(model, nn.Linear)) == depth
    assert not modules_of(model, nn.MaxPool2d)
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.stride) == (3, 16, (1, 1))
    assert (model.fc.in_features, model.fc.out_features) == (64, 10)


@pytest.mark.parametrize(("arch", "convs"),
                         [("vgg11bn", 8), ("vgg13bn", 10), ("vgg16bn", 13), ("vgg19bn", 16)])
def test_vgg_has_the_paper_configuration_depth(arch, convs):
    model = models.create(arch, 10)
    assert len(modules_of(model.features, nn.Conv2d)) == convs
    assert len(modules_of(model.features, nn.BatchNorm2d)) == convs
    assert len(modules_of(model.features, nn.MaxPool2d)) == 5


def test_vgg16bn_features_equal_torchvision_vgg16_bn():
    ours = models.create("vgg16bn", 100).features
    reference = torchvision.models.vgg16_bn(weights=None).features
    assert [type(m) for m in ours] == [type(m) for m in reference]
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]


def test_vgg_head_is_the_cifar_head():
    head = models.create("vgg16bn", 100).classifier
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    linears = [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)]
    assert linears == [(512, 512), (512, 512), (512, 100)]


def test_mobilenetv2_head_is_torchvision_head():
    head = models.create("mobilenetv2", 10).classifier
    assert [type(m) for m in head] == [nn.Dropout, nn.Linear]
    assert (head[1].in_features, head[1].out_features) == (1280, 10)


def test_dropout_defaults_and_override():
    assert {m.p for m in modules_of(models.create("vgg16bn", 10), nn.Dropout)} == {0.5}
    assert {m.p for m in modules_of(models.create("mobilenetv2", 10), nn.Dropout)} == {0.2}
    assert {m.p for m in modules_of(models.create("vgg11bn", 10, dropout=0.3), nn.Dropout)} == {0.3}
    assert {m.p for m in modules_of(models.create("mobilenetv2", 10, dropout=0.0), nn.Dropout)} == {0.0}


@pytest.mark.parametrize("width_mult", [0.5, 1.0, 1.4])
def test_mobilenetv2_width_mult_channels_match_torchvision(width_mult):
    expected = torchvision.models.mobilenet_v2(weights=None, width_mult=width_mult).last_channel
    assert models.pool_channels("mobilenetv2", width_mult=width_mult) == expected
    assert models.create("mobilenetv2", 10, width_mult=width_mult).pool_channels == expected


# --- pool input and forward ----------------------------------------------------------------

@pytest.mark.parametrize("setting_name", BENCHMARK_SETTINGS)
def test_benchmark_pool_input_shapes(setting_name):
    setting = SETTINGS[setting_name]
    shape = models.pool_input_shape(setting.arch)
    assert shape == EXPECTED_POOL_INPUT[setting.arch]


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_every_arch_pool_input_forward_and_channels(arch):
    shape = models.pool_input_shape(arch)
    assert shape == EXPECTED_POOL_INPUT[arch]
    assert models.pool_channels(arch) == shape[0]
    model = models.create(arch, num_classes=7)
    assert model.pool_channels == shape[0]
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_pool_input_shape_follows_the_image_size():
    assert models.pool_input_shape("resnet20", image_size=64) == (64, 16, 16)
    assert models.pool_input_shape("mobilenetv2", image_size=64) == (1280, 2, 2)
    with pytest.raises(ValueError, match="16x16"):
        models.pool_input_shape("vgg11bn", image_size=16)  # five max-pools need >= 32 pixels


def test_pool_input_shape_leaves_the_random_state_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    models.pool_input_shape("resnet20")
    assert torch.equal(torch.get_rng_state(), before)


# --- the four pool forms ------------------------------------------------------------------

def test_pool_none_is_global_average_pooling():
    model = models.create("resnet20", 10)
    assert isinstance(model.pool, GlobalAvgPool)


@pytest.mark.parametrize("arch", BENCHMARK_ARCHS)
def test_pool_module_is_used_as_is(arch):
    pool = GeM()
    assert models.create(arch, 10, pool=pool).pool is pool


def test_pool_registered_name_is_built_for_the_channels():
    model = models.create("resnet20", 10, pool="gem")
    assert isinstance(model.pool, GeM)
    assert any(p is model.pool.p for p in model.parameters())


def test_pool_factory_gets_the_channels():
    received, built = [], []

    def factory(channels):
        received.append(channels)
        built.append(ConstantPool(channels))
        return built[-1]

    model = models.create("vgg11bn", 10, pool=factory)
    assert received == [512]
    assert model.pool is built[0]


def test_pool_factory_without_arguments_custompool_style():
    class CustomPool(nn.Module):  # the original harness's style: built with no arguments
        def __init__(self):
            super().__init__()

        def forward(self, x):
            return x.amax(dim=(2, 3))

    model = models.create("resnet20", 10, pool=CustomPool)
    assert type(model.pool) is CustomPool
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_pool_file_spec(tmp_path):
    path = tmp_path / "my_pool.py"
    path.write_text(
        "from torch import nn\n\n"
        "class CustomPool(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n\n"
        "    def forward(self, x):\n"
        "        return x.mean(dim=(2, 3))\n"
    )
    model = models.create("resnet20", 10, pool=str(path))
    assert type(model.pool).__name__ == "CustomPool"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_pool_of_a_wrong_type_is_an_error():
    with pytest.raises(TypeError, match="pool"):
        models.create("resnet20", 10, pool=3)
    with pytest.raises(TypeError, match="nn.Module"):
        models.create("resnet20", 10, pool=lambda: "not a module")


@pytest.mark.parametrize("arch", BENCHMARK_ARCHS)
def test_pool_returning_bc11_gives_the_same_logits_as_gap(arch):
    torch.manual_seed(0)
    gap_model = models.create(arch, 10).eval()
    bc11_model = models.create(arch, 10, pool=nn.AdaptiveAvgPool2d(1)).eval()
    bc11_model.load_state_dict(gap_model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, out = gap_model(x), bc11_model(x)
    assert out.shape == (2, 10)
    torch.testing.assert_close(out, expected)


# --- initialisation -----------------------------------------------------------------------

@pytest.mark.parametrize("arch", BENCHMARK_ARCHS + ["resnet20"])
def test_convolutions_are_kaiming_normal_fan_out(arch):
    torch.manual_seed(0)
    model = models.create(arch, 10)
    convs = modules_of(model, nn.Conv2d)
    assert convs
    for conv in convs:
        weight = conv.weight.detach()
        fan_out = weight.shape[0] * weight[0, 0].numel()  # out channels x kernel area
        expected_std = math.sqrt(2.0 / fan_out)
        assert abs(weight.std().item() / expected_std - 1) < 0.15, conv
        assert abs(weight.mean().item()) < 0.15 * expected_std, conv
    for norm in modules_of(model, nn.BatchNorm2d):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


@pytest.mark.parametrize("build", [
    lambda pool: models.CifarResNet(9, 100, pool=pool),
    lambda pool: models.CifarVGG("D", 100, pool=pool),
    lambda pool: models.MobileNetV2(10, pool=pool),
    lambda pool: models.create("resnet56", 100, pool=pool),
], ids=["CifarResNet", "CifarVGG", "MobileNetV2", "create"])
def test_the_model_does_not_reinitialise_the_pool(build):
    channels = build(None).pool_channels
    pool = ConstantPool(channels)
    model = build(pool)
    assert model.pool is pool
    assert torch.all(pool.conv.weight == 0.125) and torch.all(pool.conv.bias == -0.25)
    assert torch.all(pool.norm.weight == 0.5) and torch.all(pool.norm.bias == 0.75)
    gem = GeM(channels, p=3)
    model = build(gem)
    assert gem.p.item() == 3.0
    assert any(p is gem.p for p in model.parameters())  # the optimizer will see p


def test_same_seed_gives_the_same_backbone_whatever_the_pool():
    def random_pool(channels):
        return nn.Sequential(nn.Flatten(2), nn.Linear(64, 1), nn.Flatten(1))  # random weights

    torch.manual_seed(1)
    with_gap = models.create("resnet20", 10, pool="gap").state_dict()
    torch.manual_seed(1)
    with_random_pool = models.create("resnet20", 10, pool=random_pool).state_dict()
    backbone = [k for k in with_gap if not k.startswith("pool.")]
    assert backbone
    for key in backbone:
        assert torch.equal(with_gap[key], with_random_pool[key]), key


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(("typo", "suggestion"), [("resnet57", "resnet56"), ("vgg16_bn", "vgg16bn"),
                                                  ("mobilenet_v2", "mobilenetv2")])
def test_unknown_arch_lists_close_names_on_one_line(typo, suggestion):
    with pytest.raises(ValueError) as info:
        models.create(typo, 10)
    message = str(info.value)
    assert suggestion in message and typo in message
    assert "\n" not in message


def test_unknown_kwarg_names_the_arch_and_the_allowed_ones():
    with pytest.raises(TypeError) as info:
        models.create("vgg16bn", 10, shortcut="projection")
    assert "vgg16bn" in str(info.value) and "dropout" in str(info.value) and "shortcut" in str(info.value)
    with pytest.raises(TypeError, match="shortcut"):
        models.pool_channels("resnet56", width_mult=2.0)
    with pytest.raises(TypeError, match="width_mult"):
        models.pool_input_shape("mobilenetv2", depth=3)


def test_bad_num_classes_is_an_error():
    with pytest.raises(ValueError, match="num_classes"):
        models.create("resnet20", 0)

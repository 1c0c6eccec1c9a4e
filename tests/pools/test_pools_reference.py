"""The zoo against its sources: timm's implementations where timm has the pooling (the weights
copied across, float tolerance), and otherwise a direct transcription of the paper's formula,
written here as plain loops over samples, channels and positions (not the vectorised code of
``poolbench.pools``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import AttentionPool2d, AttentionPoolLatent, SimPool2d
from timm.layers.other_pool import LsePlus2d
from timm.models.cait import ClassAttn

import poolbench.pools as pools

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _perturbed(name: str, channels: int, **kwargs) -> torch.nn.Module:
    """The pooling with every parameter moved off its init (many start at a symmetric point)."""
    pool = pools.create(name, channels=channels, **kwargs).eval()
    with torch.no_grad():
        for param in pool.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return pool


def _maps(batch: int = 2, channels: int = 4, height: int = 3, width: int = 5) -> torch.Tensor:
    return torch.relu(torch.randn(batch, channels, height, width, dtype=torch.float64)) + 0.01 * torch.rand(
        batch, channels, height, width, dtype=torch.float64)


def _tokens(x: torch.Tensor, b: int) -> list[torch.Tensor]:
    """The H*W channel vectors of sample b, in row-major order."""
    return [x[b, :, h, w] for h in range(x.shape[2]) for w in range(x.shape[3])]


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [e / sum(exps) for e in exps]


# -- timm ------------------------------------------------------------------------------------


def test_pma_is_timms_attention_pool_latent_in_pre_logits_mode():
    ours = _perturbed("pma", 8, num_heads=2).double()
    theirs = AttentionPoolLatent(8, out_features=0, num_heads=2, qkv_bias=True, latent_len=1).double().eval()
    with torch.no_grad():
        theirs.latent.copy_(ours.latent.view(1, 1, -1))
        theirs.q.load_state_dict(ours.q.state_dict())
        theirs.kv.load_state_dict(ours.kv.state_dict())
        x = _maps(3, 8, 4, 5)
        torch.testing.assert_close(ours(x), theirs(x.flatten(2).transpose(1, 2)), **TOL)


def test_clip_attention_is_timms_attention_pool_2d_with_a_zero_position_embedding():
    ours = _perturbed("clip_attention", 8, num_heads=2).double()
    theirs = AttentionPool2d(8, feat_size=4, num_heads=2, qkv_bias=True).double().eval()
    with torch.no_grad():
        theirs.pos_embed.zero_()
        theirs.qkv.load_state_dict(ours.qkv.state_dict())
        theirs.proj.load_state_dict(ours.proj.state_dict())
        for shape in [(3, 8, 4, 4), (2, 8, 3, 5), (2, 8, 1, 1)]:  # timm resamples its (zero) embedding
            x = _maps(*shape)
            torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_class_attention_is_a_cait_class_attention_layer_with_its_residual():
    ours = _perturbed("class_attention", 8, num_heads=2).double()
    attn = ClassAttn(8, num_heads=2, qkv_bias=True).double().eval()
    with torch.no_grad():
        for part in ("q", "k", "v", "proj"):
            getattr(attn, part).load_state_dict(getattr(ours, part).state_dict())
        x = _maps(3, 8, 3, 4)
        cls = ours.cls_token.view(1, 1, -1).expand(3, 1, 8)
        u = torch.cat([cls, x.flatten(2).transpose(1, 2)], dim=1)
        expected = (cls + attn(F.layer_norm(u, (8,), ours.norm.weight, ours.norm.bias, 1e-6)))[:, 0]
        torch.testing.assert_close(ours(x), expected, **TOL)


def test_simpool_is_timms_simpool_2d():
    ours = _perturbed("simpool", 8, num_heads=2).double()
    theirs = SimPool2d(8, num_heads=2).double().eval()
    with torch.no_grad():
        theirs.norm.load_state_dict(ours.norm.state_dict())
        theirs.norm.eps = ours.norm.eps  # timm's LayerNorm default is 1e-5, simpool's eps 1e-6
        theirs.q.weight.copy_(ours.wq.weight)
        theirs.k.weight.copy_(ours.wk.weight)
        x = _maps(3, 8, 4, 5)
        torch.testing.assert_close(ours(x), theirs(x), **TOL)


def test_lse_is_timms_lse_plus_2d():
    x = _maps(3, 6, 4, 5).float()
    for r in (0.5, 5.0, 40.0):
        ours = pools.create("lse", channels=6, r=r, learnable=False)
        torch.testing.assert_close(ours(x), LsePlus2d(r=r, r_learnable=False)(x), **TOL)


# -- order statistics ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (2, 3, 3, 5), (1, 2, 1, 1), (1, 2, 1, 2)])
def test_median_and_quantile_are_numpys(shape):
    x = torch.randn(shape)
    as_numpy = x.flatten(2).numpy()
    torch.testing.assert_close(pools.create("median")(x), torch.from_numpy(np.median(as_numpy, axis=-1)), **TOL)
    for q in (0.0, 0.1, 0.75, 1.0):
        expected = torch.from_numpy(np.quantile(as_numpy, q, axis=-1).astype(np.float32))
        torch.testing.assert_close(pools.create(f"quantile(q={q})")(x), expected, **TOL)


def test_rank_weighted_is_a_convex_combination_of_the_sorted_values():
    pool = _perturbed("rank_weighted", 3, knots=5).double()
    logits = pool.logits.detach()
    for height, width in [(2, 2), (3, 3), (1, 1), (4, 5)]:
        x = _maps(2, 3, height, width)
        count = height * width
        with torch.no_grad():
            y = pool(x)
        for b in range(2):
            for c in range(3):
                values = sorted(x[b, c].flatten().tolist(), reverse=True)
                # rank r's logit: the knots' logits interpolated at r (K - 1) / (N - 1)
                per_rank = []
                for r in range(count):
                    where = r * 4 / (count - 1) if count > 1 else 0.0
                    low = min(int(where), 4)
                    high = min(low + 1, 4)
                    frac = where - low
                    per_rank.append(logits[c, low].item() * (1 - frac) + logits[c, high].item() * frac)
                expected = sum(w * v for w, v in zip(_softmax(per_rank), values, strict=True))
                assert math.isclose(y[b, c].item(), expected, rel_tol=1e-9)


def test_rank_weighted_with_one_knot_per_rank_learns_one_weight_per_rank():
    pool = pools.create("rank_weighted", channels=1, knots=4)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    with torch.no_grad():
        pool.logits.copy_(torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])))  # weights for 6, 3, 2, 1
    torch.testing.assert_close(pool(x), torch.tensor([[0.1 * 6 + 0.2 * 3 + 0.3 * 2 + 0.4 * 1]]))


# -- weighted means --------------------------------------------------------------------------


def test_gem_channel_is_a_gem_per_channel():
    pool = _perturbed("gem_channel", 4).double()
    x = _maps(2, 4, 3, 3)
    with torch.no_grad():
        y = pool(x)
    for b in range(2):
        for c in range(4):
            p = max(pool.p[c].item(), 1.0)
            values = [max(v, 1e-6) ** p for v in x[b, c].flatten().tolist()]
            assert math.isclose(y[b, c].item(), (sum(values) / len(values)) ** (1 / p), rel_tol=1e-9)


@pytest.mark.parametrize("temperature, lam", [(1.0, 0.1), (3.0, 0.4)])
def test_csra_is_the_mean_plus_the_attention_residual(temperature, lam):
    x = _maps(2, 3, 3, 4)
    y = pools.create("csra", temperature=temperature, lam=lam)(x)
    for b in range(2):
        for c in range(3):
            values = x[b, c].flatten().tolist()
            attention = _softmax([temperature * v for v in values])
            expected = sum(values) / len(values) + lam * sum(a * v for a, v in zip(attention, values, strict=True))
            assert math.isclose(y[b, c].item(), expected, rel_tol=1e-9)


def test_csra_at_a_large_temperature_adds_the_max():
    x = _maps(2, 3, 3, 4)
    expected = x.mean(dim=(2, 3)) + 0.5 * x.amax(dim=(2, 3))
    torch.testing.assert_close(pools.create("csra(temperature=1000.0, lam=0.5)")(x), expected, **TOL)


def test_adapool_mixes_the_dice_sorensen_mean_and_softpool():
    pool = _perturbed("adapool", 3).double()
    x = _maps(2, 3, 3, 4)
    beta = torch.sigmoid(pool.b).item()
    with torch.no_grad():
        y = pool(x)
    for b in range(2):
        tokens = _tokens(x, b)
        mean = sum(tokens) / len(tokens)
        dice = [2 * abs(float(mean @ t)) / (float(mean @ mean) + float(t @ t) + 1e-6) for t in tokens]
        dsc_weights = _softmax(dice)
        for c in range(3):
            values = [t[c].item() for t in tokens]
            soft = sum(a * v for a, v in zip(_softmax(values), values, strict=True))
            dsc = sum(w * v for w, v in zip(dsc_weights, values, strict=True))
            assert math.isclose(y[b, c].item(), beta * dsc + (1 - beta) * soft, rel_tol=1e-9)


def test_lip_weights_positions_by_its_importance_map():
    pool = _perturbed("lip", 3).double()
    x = _maps(2, 3, 3, 4)
    weight = pool.logit.weight[:, :, 0, 0].detach()
    with torch.no_grad():
        y = pool(x)
    for b in range(2):
        tokens = _tokens(x, b)
        logits = [weight @ t for t in tokens]
        for c in range(3):
            z = [float(v[c]) for v in logits]
            mu = sum(z) / len(z)
            var = sum((v - mu) ** 2 for v in z) / len(z)
            g = [12 / (1 + math.exp(-((v - mu) / math.sqrt(var + 1e-5) * pool.norm_weight[c].item()
                                       + pool.norm_bias[c].item()))) for v in z]
            num = sum(math.exp(gi) * t[c].item() for gi, t in zip(g, tokens, strict=True))
            assert math.isclose(y[b, c].item(), num / sum(math.exp(gi) for gi in g), rel_tol=1e-9)


def test_gated_attention_is_ilse_et_als_formula():
    pool = _perturbed("gated_attention", 4, hidden=3).double()
    v_layer, u_layer, w = pool.attention_v, pool.attention_u, pool.attention_w.weight[0].detach()
    x = _maps(2, 4, 3, 3)
    with torch.no_grad():
        y = pool(x)
        for b in range(2):
            tokens = _tokens(x, b)
            scores = [float(w @ (torch.tanh(v_layer.weight @ t + v_layer.bias)
                                 * torch.sigmoid(u_layer.weight @ t + u_layer.bias))) for t in tokens]
            expected = sum(a * t for a, t in zip(_softmax(scores), tokens, strict=True))
            torch.testing.assert_close(y[b], expected, rtol=1e-9, atol=1e-12)


def test_rank1_attention_scores_classes_as_the_papers_rank_one_bilinear_form():
    pool = _perturbed("rank1_attention", 4).double()
    b_vec = pool.b.detach()
    classifier = torch.randn(6, 4, dtype=torch.float64)  # a_k: the top-down attention of 6 classes
    x = _maps(2, 4, 3, 3)
    with torch.no_grad():
        scores = pool(x) @ classifier.T
    for b in range(2):
        X = torch.stack(_tokens(x, b))  # [N, C]
        for k in range(6):
            expected = float((X @ classifier[k]) @ (X @ b_vec)) / X.shape[0]
            assert math.isclose(scores[b, k].item(), expected, rel_tol=1e-9)


# -- second order and encodings --------------------------------------------------------------


def _newton_schulz(a: np.ndarray, iterations: int) -> np.ndarray:
    """iSQRT-COV's coupled iteration, as the paper writes it (Li et al. 2018, eq. 2)."""
    y, z = a, np.eye(a.shape[0])
    for _ in range(iterations):
        t = 0.5 * (3 * np.eye(a.shape[0]) - z @ y)
        y, z = y @ t, t @ z
    return y


def test_isqrt_cov_is_the_papers_pipeline_and_its_root_converges_to_the_matrix_square_root():
    pool = _perturbed("isqrt_cov", 6, dim=4).double()
    reduce, project, bias = pool.reduce.weight[:, :, 0, 0].detach().numpy(), pool.project.detach().numpy(), \
        pool.bias.detach().numpy()
    x = _maps(2, 6, 3, 4)
    with torch.no_grad():
        y = pool(x).numpy()
    for b in range(2):
        z = np.stack([reduce @ t.numpy() for t in _tokens(x, b)])  # [N, d]
        centred = z - z.mean(axis=0)
        cov = centred.T @ centred / len(z)
        trace = np.trace(cov)
        root = _newton_schulz(cov / (trace + 1e-5), 5) * np.sqrt(trace)
        expected = np.array([(project[c] * root).sum() + bias[c] for c in range(6)])
        np.testing.assert_allclose(y[b], expected, rtol=1e-9)
        # with enough iterations the normalised root is the matrix square root (eigendecomposition)
        values, vectors = np.linalg.eigh(cov / trace)
        exact = vectors @ np.diag(np.sqrt(np.clip(values, 0, None))) @ vectors.T
        np.testing.assert_allclose(_newton_schulz(cov / trace, 60), exact, atol=1e-3)


def test_compact_bilinear_sketches_the_outer_product_as_a_count_sketch_of_it():
    pool = _perturbed("compact_bilinear", 5, d=7).double()
    s1, s2 = pool.sketch1.numpy(), pool.sketch2.numpy()
    h1, h2 = np.abs(s1).argmax(axis=1), np.abs(s2).argmax(axis=1)
    sign1, sign2 = s1[np.arange(5), h1], s2[np.arange(5), h2]
    assert sorted(np.abs(s1).sum(axis=1)) == [1.0] * 5  # one +-1 per row
    x = _maps(2, 5, 3, 3)
    with torch.no_grad():
        y = pool(x).numpy()
    weight, bias = pool.project.weight.detach().numpy(), pool.project.bias.detach().numpy()
    for b in range(2):
        tokens = [t.numpy() for t in _tokens(x, b)]
        phi = np.zeros(7)
        for t in tokens:  # Pham & Pagh: x_i x_j lands in bucket h1(i) + h2(j) mod D with sign s1(i) s2(j)
            for i in range(5):
                for j in range(5):
                    phi[(h1[i] + h2[j]) % 7] += sign1[i] * sign2[j] * t[i] * t[j] / len(tokens)
        phi = phi * (phi * phi + 1e-6) ** -0.25  # the signed square root, smoothed at 0
        phi = phi / np.linalg.norm(phi)
        np.testing.assert_allclose(y[b], weight @ phi + bias, rtol=1e-7)


@pytest.mark.parametrize("shape", [(2, 6, 2, 2), (2, 3, 3, 4), (1, 4, 1, 1)], ids=["dual", "primal", "1x1"])
def test_genmax_is_the_ridge_regression_of_the_paper(shape):
    x = _maps(*shape)
    lam = 0.5
    y = pools.create(f"genmax(lam={lam})")(x).numpy()
    for b in range(shape[0]):
        phi = np.stack([t.numpy() for t in _tokens(x, b)], axis=1)  # [C, N], the paper's Phi
        expected = np.linalg.solve(phi @ phi.T + lam * np.eye(shape[1]), phi @ np.ones(phi.shape[1]))
        np.testing.assert_allclose(y[b], expected, rtol=1e-7)


def test_genmax_equalises_the_similarity_of_every_position_when_lambda_is_small():
    x = _maps(2, 8, 2, 3)  # 6 positions in 8 dimensions: an exact solution exists
    psi = pools.create("genmax(lam=1e-9)")(x)
    similarities = torch.einsum("bchw,bc->bhw", x, psi)
    torch.testing.assert_close(similarities, torch.ones_like(similarities), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, ghosts", [("netvlad", 0), ("ghostvlad", 2)])
def test_vlad_is_the_papers_aggregation_of_soft_assigned_residuals(name, ghosts):
    kwargs = {"clusters": 3, "dim": 4} | ({"ghosts": ghosts} if ghosts else {})
    pool = _perturbed(name, 6, **kwargs).double()
    reduce = pool.reduce.weight[:, :, 0, 0].detach()
    w, bias_a, centres = pool.assign.weight.detach(), pool.assign.bias.detach(), pool.centroids.detach()
    x = _maps(2, 6, 3, 3)
    with torch.no_grad():
        y = pool(x)
        for b in range(2):
            z = [reduce @ t for t in _tokens(x, b)]
            v = torch.zeros(3, 4, dtype=torch.float64)
            for zi in z:
                assignment = _softmax([float(w[k] @ zi + bias_a[k]) for k in range(3 + ghosts)])
                for k in range(3):  # the ghosts' residuals are dropped
                    v[k] += assignment[k] * (zi - centres[k])
            v = torch.stack([row / row.norm() for row in v])
            v = v / v.norm()
            expected = torch.stack([(pool.project[c] * v).sum() + pool.bias[c] for c in range(6)])
            torch.testing.assert_close(y[b], expected, rtol=1e-9, atol=1e-12)


# -- frequency ---------------------------------------------------------------------------------


def _fcanet_filter(pos: int, freq: int, size: int) -> float:
    """FcaNet's build_filter: the orthonormal DCT-II basis."""
    result = math.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return result * math.sqrt(2) if freq != 0 else result


@pytest.mark.parametrize("size", [7, 8, 14, 4])
def test_fca_is_fcanets_dct_filter_at_its_top_frequencies(size):
    top_u = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2]  # FcaNet's top16, its get_freq_indices
    top_v = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2]
    x = _maps(1, 32, size, size)
    y = pools.create("fca", channels=32)(x)
    scale = size // 7  # FcaNet's mapper scaling; 0 below 7x7
    for c in range(32):
        u, v = top_u[c // 2] * scale, top_v[c // 2] * scale  # 32 channels in 16 groups of 2
        total = sum(x[0, c, h, w].item() * _fcanet_filter(h, u, size) * _fcanet_filter(w, v, size)
                    for h in range(size) for w in range(size))
        assert math.isclose(y[0, c].item(), total / size, rel_tol=1e-9, abs_tol=1e-12)  # / sqrt(HW): (0, 0) is GAP
    if size < 7:
        torch.testing.assert_close(y, x.mean(dim=(2, 3)))

# Copyright (c) mmaff contributors. All rights reserved.
"""The sparse random walk vs a dense reference built from the formula."""
import pytest
import torch

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.ops import (affinity_from_features, chebyshev_power_coefficients,
                       pair_offsets, random_walk, sparse_transition)


def pixels(h, w):
    return [(y, x) for y in range(h) for x in range(w)]


def dense_w_from_features(feats, beta, radius):
    """Dense W of one image straight from the formula: a double loop over
    all pixel pairs, a_ij = exp(-mean_k |f_k(i) - f_k(j)|), W_ii = 1."""
    k, h, w = feats.shape
    pix = pixels(h, w)
    n = len(pix)
    weight = torch.eye(n, dtype=torch.float64)
    f = feats.double()
    for i, (yi, xi) in enumerate(pix):
        for j, (yj, xj) in enumerate(pix):
            if i != j and (yi - yj)**2 + (xi - xj)**2 < radius**2:
                a = torch.exp(-(f[:, yi, xi] - f[:, yj, xj]).abs().mean())
                weight[i, j] = a**beta
    return weight


def dense_w_from_affinity(aff, beta, radius):
    """Dense W of one image from a (P, h, w) pair tensor: every in-radius
    pixel pair (i, j) reads the entry stored at the earlier pixel."""
    _, h, w = aff.shape
    offsets = pair_offsets(radius)
    pix = pixels(h, w)
    weight = torch.eye(len(pix), dtype=torch.float64)
    for i, (yi, xi) in enumerate(pix):
        for j, (yj, xj) in enumerate(pix):
            if i != j and (yi - yj)**2 + (xi - xj)**2 < radius**2:
                (ya, xa), (yb, xb) = sorted([(yi, xi), (yj, xj)])
                p = offsets.index((yb - ya, xb - xa))
                weight[i, j] = float(aff[p, ya, xa])**beta
    return weight


def dense_walk(weight, scores, steps):
    """T = D^-1 W, then T^t v, with T^t by repeated squaring if t = 2^k."""
    trans = weight / weight.sum(1, keepdim=True)
    if steps & (steps - 1) == 0:
        power = trans
        for _ in range(steps.bit_length() - 1):
            power = power @ power
    else:
        power = torch.linalg.matrix_power(trans, steps)
    c, h, w = scores.shape
    v = scores.double().reshape(c, h * w).t()
    return (power @ v).t().reshape(c, h, w)


def random_affinity(b, h, w, radius, seed):
    """Arbitrary affinities in (0, 1] (not from features)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(
        b, len(pair_offsets(radius)), h, w, generator=g,
        dtype=torch.float64).clamp_min(1e-3)


def assert_rel_close(actual, expected, rel):
    err = (actual.double() - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= rel * scale, f'max abs error {err:.3g} vs scale {scale:.3g}'


@pytest.mark.parametrize('h,w,radius', [(7, 6, 5), (5, 9, 3), (4, 4, 2)])
def test_one_step_beta1(h, w, radius):
    aff = random_affinity(1, h, w, radius, seed=h + w)
    scores = torch.rand(1, 3, h, w, dtype=torch.float64)
    out = random_walk(scores, aff, beta=1, steps=1, radius=radius)
    assert out.shape == scores.shape and out.dtype == torch.float64
    ref = dense_walk(dense_w_from_affinity(aff[0], 1, radius), scores[0], 1)
    torch.testing.assert_close(out[0], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('h,w', [(3, 2), (1, 4), (2, 1)])
def test_grid_smaller_than_radius(h, w):
    aff = random_affinity(1, h, w, 5, seed=7)
    scores = torch.rand(1, 2, h, w, dtype=torch.float64)
    for beta, steps in ((1, 1), (3, 5), (8, 256)):
        out = random_walk(scores, aff, beta=beta, steps=steps)
        ref = dense_walk(
            dense_w_from_affinity(aff[0], beta, 5), scores[0], steps)
        torch.testing.assert_close(out[0], ref, rtol=1e-10, atol=1e-12)


def test_one_pixel_grid_is_identity():
    scores = torch.rand(2, 4, 1, 1)
    out = random_walk(scores, torch.zeros(2, 34, 1, 1))
    torch.testing.assert_close(out, scores)


def test_radius_one_has_no_pairs():
    scores = torch.rand(2, 3, 4, 5)
    out = random_walk(scores, torch.zeros(2, 0, 4, 5), steps=7, radius=1)
    torch.testing.assert_close(out, scores)


def test_batch_of_two_different_contents():
    h, w, radius = 6, 7, 5
    torch.manual_seed(0)
    feats = torch.randn(2, 5, h, w, dtype=torch.float64)
    feats[1] *= 0.2  # the second image is much smoother
    aff = affinity_from_features(feats, radius)
    scores = torch.rand(2, 3, h, w, dtype=torch.float64)
    scores[1, 0] = 0
    out = random_walk(scores, aff, beta=2, steps=16, radius=radius)
    for n in range(2):
        ref = dense_walk(
            dense_w_from_features(feats[n], 2, radius), scores[n], 16)
        torch.testing.assert_close(out[n], ref, rtol=1e-10, atol=1e-12)
    # Each image walks on its own graph: swapping the images swaps results.
    swapped = random_walk(scores.flip(0), aff.flip(0), 2, 16, radius)
    torch.testing.assert_close(swapped, out.flip(0))


def test_t256_beta8_float32_matches_dense():
    """The paper's setting, fp32 walk vs a float64 dense T^256."""
    h, w, radius = 9, 8, 5
    torch.manual_seed(1)
    # Features of two regions plus noise: a realistic affinity structure.
    region = (torch.arange(w)[None, :] + torch.arange(h)[:, None] > 8)
    feats = 0.3 * torch.randn(1, 6, h, w, dtype=torch.float64)
    feats[:, :3] += 2.0 * region
    aff = affinity_from_features(feats, radius)
    scores = torch.rand(1, 4, h, w, dtype=torch.float64)
    ref = dense_walk(
        dense_w_from_features(feats[0], 8, radius), scores[0], 256)
    out32 = random_walk(scores.float(), aff.float(), beta=8, steps=256)
    assert out32.dtype == torch.float32
    assert_rel_close(out32[0], ref, 1e-4)
    out64 = random_walk(scores, aff, beta=8, steps=256)
    assert_rel_close(out64[0], ref, 1e-10)


def test_border_pixels_propagate():
    """Every pixel, corners and borders included, averages its full
    neighbourhood: with all affinities 1, one step is the plain mean over the
    in-image disc of radius 5."""
    h, w, radius = 8, 11, 5
    scores = torch.rand(1, 2, h, w, dtype=torch.float64)
    aff = torch.ones(1, len(pair_offsets(radius)), h, w, dtype=torch.float64)
    out = random_walk(scores, aff, beta=8, steps=1, radius=radius)
    for y in range(h):
        for x in range(w):
            disc = [(yy, xx) for yy, xx in pixels(h, w)
                    if (yy - y)**2 + (xx - x)**2 < radius**2]
            mean = sum(scores[0, :, yy, xx] for yy, xx in disc) / len(disc)
            torch.testing.assert_close(out[0, :, y, x], mean)
    # A corner's value changes after one step when its neighbours differ.
    for corner in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        spike = torch.zeros(1, 1, h, w)
        spike[0, 0, corner[0] - 1 if corner[0] else 1,
              corner[1] - 1 if corner[1] else 1] = 1.0
        out = random_walk(spike, torch.rand(1, 34, h, w) + 0.1, steps=1)
        assert out[0, 0, corner[0], corner[1]] > 0, corner


def test_rows_sum_to_one_and_constants_stay():
    torch.manual_seed(2)
    feats = torch.randn(2, 4, 10, 7)
    aff = affinity_from_features(feats)
    trans = sparse_transition(aff, beta=8)
    n = 10 * 7
    assert trans.layout == torch.sparse_csr
    assert trans.shape == (2 * n, 2 * n)
    # Sparse: at most 2P + 1 = 69 entries per row, never N x N.
    assert trans.values().numel() <= 2 * n * 69
    assert trans.values().numel() < (2 * n)**2 / 2
    dense = trans.to_dense()
    torch.testing.assert_close(dense.sum(1), torch.ones(2 * n))
    # Block diagonal: no walk between images.
    assert (dense[:n, n:] == 0).all() and (dense[n:, :n] == 0).all()
    ref = dense_w_from_affinity(aff[1], 8, 5)
    torch.testing.assert_close(
        dense[n:, n:].double(),
        ref / ref.sum(1, keepdim=True),
        rtol=1e-5,
        atol=1e-6)
    const = torch.full((2, 3, 10, 7), 0.37, dtype=torch.float64)
    out = random_walk(const, aff.double(), beta=8, steps=256)
    torch.testing.assert_close(out, const, rtol=1e-12, atol=0)
    # fp32: 256 steps of rounding, still within 1e-4 relative.
    out = random_walk(const.float(), aff, beta=8, steps=256)
    assert_rel_close(out, const, 1e-4)


def test_bad_inputs_raise():
    scores = torch.rand(1, 3, 5, 6)
    aff = torch.rand(1, 34, 5, 6)
    random_walk(scores, aff, steps=2)  # fine
    bad_calls = [
        (dict(scores=torch.rand(2, 3, 5, 6)), 'disagree'),
        (dict(scores=torch.rand(1, 3, 6, 6)), 'disagree'),
        (dict(scores=torch.rand(1, 3, 5, 5)), 'disagree'),
        (dict(scores=torch.rand(1, 0, 5, 6)), 'no channel'),
        (dict(scores=torch.rand(3, 5, 6)), '4-D'),
        (dict(scores=torch.ones(1, 3, 5, 6, dtype=torch.long)), 'floating'),
        (dict(aff=torch.rand(1, 33, 5, 6)), 'pair'),
        (dict(radius=3), 'pair'),
        (dict(aff=torch.rand(34, 5, 6)), '4-D'),
        (dict(aff=torch.rand(1, 34, 5, 6) - 0.5), 'non-negative'),
        (dict(beta=0), 'beta'),
        (dict(beta=-1.0), 'beta'),
        (dict(beta=float('inf')), 'beta'),
        (dict(beta=float('nan')), 'beta'),
        (dict(steps=0), 'steps'),
        (dict(steps=1.5), 'steps'),
        (dict(radius=0), 'radius'),
    ]
    nan_scores = scores.clone()
    nan_scores[0, 1, 2, 3] = float('nan')
    inf_aff = aff.clone()
    inf_aff[0, 0, 0, 0] = float('inf')
    bad_calls += [(dict(scores=nan_scores), 'NaN'),
                  (dict(aff=inf_aff), 'NaN or inf')]
    for change, message in bad_calls:
        kwargs = dict(scores=scores, aff=aff, beta=8, steps=2, radius=5)
        kwargs.update(change)
        with pytest.raises((ValueError, TypeError), match=message):
            random_walk(kwargs['scores'], kwargs['aff'], kwargs['beta'],
                        kwargs['steps'], kwargs['radius'])
    with pytest.raises(ValueError, match='pair'):
        sparse_transition(torch.rand(1, 34, 5, 6), radius=4)


def test_not_differentiable_but_accepts_grad_inputs():
    feats = torch.randn(1, 3, 4, 4, requires_grad=True)
    aff = affinity_from_features(feats)
    out = random_walk(torch.rand(1, 2, 4, 4), aff, steps=3)
    assert not out.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    torch.manual_seed(3)
    feats = torch.randn(2, 8, 12, 9)
    aff = affinity_from_features(feats)
    scores = torch.rand(2, 5, 12, 9)
    cpu = random_walk(scores, aff)
    gpu = random_walk(scores.cuda(), aff.cuda())
    assert gpu.device.type == 'cuda'
    assert_rel_close(gpu.cpu(), cpu.double(), 1e-4)


def test_small_cpu_walks_run_on_one_thread(monkeypatch):
    """A short walk's steps would only wait in thread barriers (a busy
    machine stalls every step): it runs on one thread, then restores."""
    import importlib
    rw_module = importlib.import_module('mmaff.ops.random_walk')
    torch.manual_seed(0)
    feats = torch.randn(1, 8, 9, 11)
    aff = affinity_from_features(feats, 5)
    scores = torch.rand(1, 3, 9, 11)
    before = torch.get_num_threads()
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, 'set_num_threads',
                        lambda n: (seen.append(n), real(n)))
    small = rw_module.random_walk(scores, aff, steps=4)
    assert torch.get_num_threads() == before
    if before > 1:
        assert seen == [1, before]
    # above the threshold torch's threads are left alone
    seen.clear()
    monkeypatch.setattr(rw_module, 'SINGLE_THREAD_WORK', 1)
    large = rw_module.random_walk(scores, aff, steps=4)
    assert seen == [] and torch.get_num_threads() == before
    torch.testing.assert_close(small, large)


def test_all_zero_channels_are_skipped_and_stay_zero(monkeypatch):
    import importlib
    rw_module = importlib.import_module('mmaff.ops.random_walk')
    torch.manual_seed(1)
    aff = affinity_from_features(torch.randn(2, 8, 7, 9), 5)
    scores = torch.rand(2, 5, 7, 9, dtype=torch.float64)
    scores[:, 1] = 0
    scores[:, 3] = 0
    scores[1, 4] = 0  # zero in one image only: still walked
    full = random_walk(scores, aff, steps=6)
    # the walk on the non-zero channels alone, by the same op
    part = random_walk(scores[:, [0, 2, 4]], aff, steps=6)
    torch.testing.assert_close(full[:, [0, 2, 4]], part)
    assert (full[:, [1, 3]] == 0).all() and (full[1, 4] == 0).all()
    # the products see 3 channels, not 5
    widths = []
    real = rw_module._sparse_transition

    def spy(*args):
        trans = real(*args)

        class Wrapped:

            def __matmul__(self, x):
                widths.append(x.shape[1])
                return trans @ x

        return Wrapped()

    monkeypatch.setattr(rw_module, '_sparse_transition', spy)
    random_walk(scores, aff, steps=2)
    assert widths == [3, 3]
    assert (random_walk(torch.zeros_like(scores), aff) == 0).all()


@pytest.mark.parametrize('steps', [0, 1, 2, 7, 64, 256])
def test_chebyshev_series_of_a_power(steps):
    """The series is x^t exactly; truncated, within tol on [-1, 1]."""
    import math

    import numpy as np
    from numpy.polynomial import chebyshev

    x = np.linspace(-1, 1, 401)
    full = chebyshev_power_coefficients(steps, 0)
    assert len(full) == steps + 1
    assert math.isclose(sum(full), 1, rel_tol=1e-12)  # T_k(1) = 1
    assert max(abs(chebyshev.chebval(x, full) - x**steps)) < 1e-12
    tol = 1.2e-7
    short = chebyshev_power_coefficients(steps, tol)
    assert short == full[:len(short)]
    assert max(abs(chebyshev.chebval(x, short) - x**steps)) <= tol + 1e-12
    # the shortest such prefix: one term less would drop more than tol
    if len(short) > 1:
        assert sum(full[len(short) - 1:]) > tol
    # and no longer than the Chernoff bound sqrt(2 t ln(2 / tol))
    assert len(short) - 1 <= math.sqrt(2 * steps * math.log(2 / tol)) + 1


def test_chebyshev_series_bad_arguments():
    for steps, tol in ((-1, 0.1), (1.5, 0.1), (True, 0.1), (4, -1),
                       (4, float('nan')), (4, 'x')):
        with pytest.raises(ValueError):
            chebyshev_power_coefficients(steps, tol)


@pytest.mark.parametrize('steps', [33, 64, 100, 256, 257])
def test_long_walks_take_fewer_products_same_result(steps, monkeypatch):
    """A long walk is the Chebyshev series: as many products as its
    degree, and T^t v to float64 round-off (plain products as reference)."""
    import importlib
    rw_module = importlib.import_module('mmaff.ops.random_walk')
    torch.manual_seed(steps)
    aff = affinity_from_features(
        torch.randn(2, 6, 8, 10, dtype=torch.float64), 5)
    scores = torch.rand(2, 3, 8, 10, dtype=torch.float64)
    trans = sparse_transition(aff, 8, 5)
    v = scores.flatten(2).transpose(1, 2).reshape(-1, 3)
    for _ in range(steps):
        v = trans @ v
    ref = v.reshape(2, 80, 3).transpose(1, 2).reshape(2, 3, 8, 10)

    products = []
    real_addmm = torch.addmm
    monkeypatch.setattr(
        torch, 'addmm', lambda *a, **k: (products.append(1),
                                         real_addmm(*a, **k))[1])
    out = random_walk(scores, aff, beta=8, steps=steps)
    assert_rel_close(out, ref, 1e-12)
    degree = len(chebyshev_power_coefficients(steps, 2.3e-16)) - 1
    if degree <= rw_module.SERIES_MAX_FRACTION * steps:
        assert len(products) + 1 == degree < steps
    else:
        assert products == []
    assert steps != 256 or products  # the paper's t = 256 uses the series


def test_walk_threads_count_the_walked_channels(monkeypatch):
    """The thread rule (as the benchmark reports it) counts the channels
    the walk walks, not the zero ones."""
    import importlib
    rw_module = importlib.import_module('mmaff.ops.random_walk')
    scores = torch.zeros(1, 21, 10, 10)
    scores[0, [0, 5]] = 1
    per_channel = 100 * len(pair_offsets(5)) * 2
    # between the work of the 2 walked channels and that of all 21
    monkeypatch.setattr(rw_module, 'SINGLE_THREAD_WORK', 3 * per_channel)
    assert rw_module.walk_threads(scores) == 1
    scores[0, 1:4] = 1  # 5 walked channels: above the threshold
    assert rw_module.walk_threads(scores) == torch.get_num_threads()

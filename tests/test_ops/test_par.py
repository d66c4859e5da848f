# Copyright (c) mmaff contributors. All rights reserved.
"""PAR (mmaff.ops.par) against a naive per-pixel computation of its
formulas (docs/method.md, "Label refiners")."""
import math

import numpy as np
import pytest
import torch

from mmaff.ops import par_affinity, par_offsets, par_refine


def naive_par(image, scores, dilations, iterations, w1=0.3, w2=0.01,
              eps=1e-8):
    """PAR of one image written pixel by pixel from the formulas: the 8
    ring neighbours at each dilation, coordinates clamped to the image
    (= replicate padding), unbiased standard deviations, softmaxes over
    the neighbours, M(i) <- sum_j a(i, j) M(j)."""
    image = np.asarray(image, np.float64)  # (C, H, W)
    m = np.asarray(scores, np.float64)  # (K, H, W)
    chans, height, width = image.shape
    ring = [(dy * d, dx * d) for d in dilations for dy in (-1, 0, 1)
            for dx in (-1, 0, 1) if dy or dx]
    dist = np.array([math.sqrt(dy * dy + dx * dx) for dy, dx in ring])
    k_pos = -(dist / (w1 * dist.std(ddof=1)))**2
    pos = np.exp(k_pos - k_pos.max())
    pos /= pos.sum()
    aff = np.zeros((height, width, len(ring)))
    nbr = np.zeros((height, width, len(ring), 2), np.int64)
    for y in range(height):
        for x in range(width):
            js = [(min(max(y + dy, 0), height - 1),
                   min(max(x + dx, 0), width - 1)) for dy, dx in ring]
            nbr[y, x] = js
            vals = np.array([image[:, jy, jx] for jy, jx in js])  # (N, C)
            std = vals.std(axis=0, ddof=1) + eps
            k = [
                -np.mean([(abs(image[c, y, x] - v[c]) / (w1 * std[c]))**2
                          for c in range(chans)]) for v in vals
            ]
            k = np.array(k)
            e = np.exp(k - k.max())
            aff[y, x] = e / e.sum() + w2 * pos
    for _ in range(iterations):
        new = np.zeros_like(m)
        for y in range(height):
            for x in range(width):
                for n, (jy, jx) in enumerate(nbr[y, x]):
                    new[:, y, x] += aff[y, x, n] * m[:, jy, jx]
        m = new
    return m, aff


def _inputs(seed, batch=1, height=7, width=9, classes=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=g,
                       dtype=torch.float64) * 4 - 2
    # a flat patch: zero standard deviation there (the eps path)
    image[:, :, :3, :3] = 0.5
    scores = torch.rand(batch, classes, height, width, generator=g,
                        dtype=torch.float64)
    return image, scores


def test_offsets_and_distances():
    offsets, dist = par_offsets((1, 3))
    assert len(offsets) == 16 and (0, 0) not in offsets
    assert set(offsets[:8]) == {(dy, dx)
                                for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                                if dy or dx}
    assert offsets[8:] == [(3 * dy, 3 * dx) for dy, dx in offsets[:8]]
    np.testing.assert_allclose(
        dist.numpy(), [math.hypot(dy, dx) for dy, dx in offsets])
    assert dist[1] == 1 and dist[0] == pytest.approx(math.sqrt(2))
    assert len(par_offsets()[0]) == 48  # AFA: 8 x (1, 2, 4, 8, 12, 24)


@pytest.mark.parametrize('dilations', [(1, 2), (1, 2, 4, 8, 12, 24)],
                         ids=['small', 'afa'])
@pytest.mark.parametrize('iterations', [1, 3])
def test_matches_naive_formula(dilations, iterations):
    """One and several steps; with AFA's dilations most neighbours of a
    7 x 9 image lie outside it (clamped)."""
    image, scores = _inputs(0)
    got = par_refine(image, scores, dilations, iterations)
    want, aff = naive_par(image[0], scores[0], dilations, iterations)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-9, atol=1e-12)
    got_aff = par_affinity(image, dilations)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got_aff, aff, rtol=1e-9, atol=1e-12)


def test_non_default_weights_match_naive_formula():
    image, scores = _inputs(1, height=6, width=5)
    got = par_refine(image, scores, (1, 2), 2, w1=0.7, w2=0.5)
    want, _ = naive_par(image[0], scores[0], (1, 2), 2, w1=0.7, w2=0.5)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-9)


def test_rows_sum_to_one_plus_w2():
    image, _ = _inputs(2, height=12, width=10)
    aff = par_affinity(image, (1, 2, 4), w2=0.25)
    np.testing.assert_allclose(aff.sum(1).numpy(), 1.25, rtol=1e-12)
    assert (aff > 0).all()
    # constant scores grow by (1 + w2) per step, nothing else
    ones = torch.full((1, 2, 12, 10), 3.0, dtype=torch.float64)
    out = par_refine(image, ones, (1, 2, 4), iterations=4, w2=0.25)
    np.testing.assert_allclose(out.numpy(), 3.0 * 1.25**4, rtol=1e-12)


def test_colour_edges_stop_the_propagation():
    """Two flat colour halves: a pixel's weight goes to its own half."""
    image = torch.zeros(1, 3, 8, 8)
    image[..., 4:] = 1.0
    image += 0.01 * torch.randn(1, 3, 8, 8, generator=torch.Generator()
                                .manual_seed(0))
    aff = par_affinity(image, (1, 2))
    offsets, _ = par_offsets((1, 2))
    # pixel (3, 3) at the edge: its right neighbours lie across it
    right = [n for n, (dy, dx) in enumerate(offsets) if dx > 0]
    left = [n for n, (dy, dx) in enumerate(offsets) if dx < 0]
    assert aff[0, right, 3, 3].sum() < 0.01 * aff[0, left, 3, 3].sum()


def test_batched_equals_per_image():
    image, scores = _inputs(3, batch=3, height=10, width=11)
    batched = par_refine(image, scores, (1, 2, 4), 5)
    for b in range(3):
        single = par_refine(image[b:b + 1], scores[b:b + 1], (1, 2, 4), 5)
        np.testing.assert_allclose(
            batched[b].numpy(), single[0].numpy(), rtol=1e-12)


def test_scores_are_resized_bilinearly_first():
    image, scores = _inputs(4, height=8, width=12)
    small = scores[..., ::2, ::2].contiguous()
    up = torch.nn.functional.interpolate(
        small, size=(8, 12), mode='bilinear', align_corners=False)
    np.testing.assert_allclose(
        par_refine(image, small, (1, 2), 2).numpy(),
        par_refine(image, up, (1, 2), 2).numpy())


def test_zero_iterations_return_the_scores():
    image, scores = _inputs(5)
    torch.testing.assert_close(par_refine(image, scores, iterations=0),
                               scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_equals_cpu():
    image, scores = _inputs(6, batch=2, height=40, width=50)
    image, scores = image.float(), scores.float()
    cpu = par_refine(image, scores)
    gpu = par_refine(image.cuda(), scores.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kwargs, match', [
    (dict(dilations=()), 'dilations'),
    (dict(dilations=(0, 1)), 'dilations'),
    (dict(dilations=(1, 1)), 'distinct'),
    (dict(dilations=(1.5, )), 'dilations'),
    (dict(iterations=-1), 'iterations'),
    (dict(iterations=2.0), 'iterations'),
    (dict(w1=0), 'w1'),
    (dict(w2=-0.1), 'w2'),
    (dict(w2=float('nan')), 'w2'),
])
def test_bad_settings(kwargs, match):
    image, scores = _inputs(7)
    with pytest.raises(ValueError, match=match):
        par_refine(image, scores, **kwargs)


def test_bad_inputs():
    image, scores = _inputs(8)
    with pytest.raises(ValueError, match='scores'):
        par_refine(image, scores[0])
    with pytest.raises(ValueError, match='scores'):
        par_refine(image, scores.long())
    with pytest.raises(ValueError, match='2 images but 1'):
        par_refine(torch.cat([image, image]), scores)
    bad = scores.clone()
    bad[0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        par_refine(image, bad)
    with pytest.raises(ValueError, match='image'):
        par_affinity(image[0])

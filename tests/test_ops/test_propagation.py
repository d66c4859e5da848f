# Copyright (c) mmaff contributors. All rights reserved.
"""propagate_cams / scores_to_label vs an independent computation written
from the formula: numpy pooling, the dense transition matrix from a
brute-force pixel-pair loop, T^t by matrix power, cv2 bilinear resize."""
import cv2
import numpy as np
import pytest
import torch

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.ops import pair_offsets, propagate_cams, scores_to_label


def random_inputs(k,
                  height,
                  width,
                  radius=5,
                  stride=8,
                  seed=0,
                  dtype=np.float64):
    rng = np.random.default_rng(seed)
    cams = rng.random((k, height, width)).astype(dtype)
    gh, gw = -(-height // stride), -(-width // stride)
    # Two regions (left / right of a diagonal) with weak affinities across,
    # so that even 256 steps do not mix the whole grid into a constant.
    offsets = pair_offsets(radius)
    aff = rng.uniform(0.5, 1.0, (len(offsets), gh, gw))
    region = lambda y, x: 2 * x + y >= gw  # noqa: E731
    for p, (dy, dx) in enumerate(offsets):
        for y in range(gh):
            for x in range(gw):
                if region(y, x) != region(y + dy, x + dx):
                    aff[p, y, x] = 0.1
    return cams, aff.astype(dtype)


def reference(cams, aff, alpha, beta, steps, radius, stride):
    """The stage-4 formulas, written out with plain numpy loops."""
    k, height, width = cams.shape
    gh, gw = -(-height // stride), -(-width // stride)
    # background (1 - max CAM)^alpha at full resolution
    peak = cams.max(0) if k else np.zeros((height, width))
    stack = np.concatenate([((1 - peak)**alpha)[None],
                            cams]).astype(np.float64)
    # zero padding, then the mean of each stride x stride cell
    padded = np.zeros((k + 1, gh * stride, gw * stride))
    padded[:, :height, :width] = stack
    pooled = np.zeros((k + 1, gh, gw))
    for y in range(gh):
        for x in range(gw):
            cell = padded[:, y * stride:(y + 1) * stride,
                          x * stride:(x + 1) * stride]
            pooled[:, y, x] = cell.reshape(k + 1, -1).mean(1)
    # dense W: every ordered in-radius pixel pair, a^beta; W_ii = 1
    offsets = pair_offsets(radius)
    n = gh * gw
    weight = np.eye(n)
    for p, (dy, dx) in enumerate(offsets):
        for y in range(gh):
            for x in range(gw):
                yy, xx = y + dy, x + dx
                if 0 <= yy < gh and 0 <= xx < gw:
                    i, j = y * gw + x, yy * gw + xx
                    weight[i, j] = weight[j, i] = aff[p, y, x]**beta
    # brute-force check that the pairs are exactly the in-radius ones
    for i in range(n):
        for j in range(n):
            d2 = (i // gw - j // gw)**2 + (i % gw - j % gw)**2
            assert (weight[i, j] > 0) == (d2 < radius * radius)
    trans = weight / weight.sum(1, keepdims=True)
    walked = np.linalg.matrix_power(trans, steps) @ pooled.reshape(k + 1, n).T
    walked = walked.T.reshape(k + 1, gh, gw)
    # bilinear x stride (half-pixel centres = align_corners=False), crop
    up = np.stack([
        cv2.resize(
            c, (gw * stride, gh * stride), interpolation=cv2.INTER_LINEAR)
        for c in walked
    ])
    return up[:, :height, :width]


@pytest.mark.parametrize(
    'k,height,width,steps',
    [
        (2, 37, 50, 256),  # not multiples of 8
        (3, 40, 56, 7),
        (1, 17, 9, 256),  # 3 x 2 grid
        (0, 30, 45, 256),  # no present class
    ])
def test_propagate_cams_matches_dense_reference(k, height, width, steps):
    cams, aff = random_inputs(k, height, width, seed=k + height)
    out = propagate_cams(
        torch.from_numpy(cams), torch.from_numpy(aff), steps=steps)
    expected = reference(cams, aff, 16, 8, steps, 5, 8)
    assert out.shape == (k + 1, height, width)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-7, atol=1e-9)


def test_propagate_cams_other_parameters_and_float32():
    cams, aff = random_inputs(2, 21, 27, radius=3, stride=4, seed=3)
    expected = reference(cams, aff, 4, 2, 5, 3, 4)
    out = propagate_cams(
        torch.from_numpy(cams).float(),
        torch.from_numpy(aff).float(),
        alpha=4,
        beta=2,
        steps=5,
        radius=3,
        stride=4)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-6)
    # numpy inputs are accepted too
    out64 = propagate_cams(
        cams, aff, alpha=4, beta=2, steps=5, radius=3, stride=4)
    np.testing.assert_allclose(out64.numpy(), expected, rtol=1e-7)


def test_no_class_gives_background_one_inside_cells():
    # K = 0: bg = 1 everywhere, no padding (32 x 40), and a walk keeps a
    # constant field constant (rows of T sum to 1).
    _, aff = random_inputs(0, 32, 40)
    out = propagate_cams(torch.zeros(0, 32, 40), torch.from_numpy(aff))
    assert out.shape == (1, 32, 40)
    torch.testing.assert_close(out, torch.ones_like(out), rtol=0, atol=1e-5)
    label = scores_to_label(out, [])
    assert label.shape == (32, 40) and int(label.abs().sum()) == 0


def test_scores_to_label_maps_channels_to_ids_and_ties_to_background():
    scores = torch.tensor([
        [[0.5, 0.1, 0.2]],  # background
        [[0.5, 0.9, 0.1]],  # class 7
        [[0.1, 0.2, 0.3]],  # class 15
    ])
    label = scores_to_label(scores, [7, 15])
    assert label.dtype == torch.int64
    assert label.tolist() == [[0, 7, 15]]
    with pytest.raises(ValueError, match='K = 1'):
        scores_to_label(scores, [7])


def test_bad_inputs_raise_clear_errors():
    cams, aff = random_inputs(2, 37, 50)
    cams, aff = torch.from_numpy(cams), torch.from_numpy(aff)
    with pytest.raises(
            ValueError, match=r'affinity grid \(5, 7\).*'
            r'expected \(6, 7\)'):
        propagate_cams(torch.rand(2, 41, 50, dtype=torch.float64), aff)
    with pytest.raises(ValueError, match='expected'):
        propagate_cams(cams, aff[:, :, :-1])
    with pytest.raises(ValueError, match='pair channels'):
        propagate_cams(cams, aff[:-1])  # P does not fit radius 5
    with pytest.raises(ValueError, match=r'cams must be \(K, H, W\)'):
        propagate_cams(cams[0], aff)
    with pytest.raises(ValueError, match=r'affinity must be \(P, h, w\)'):
        propagate_cams(cams, aff[None])
    bad = cams.clone()
    bad[1, 3, 4] = float('nan')
    with pytest.raises(ValueError, match='cams have NaN'):
        propagate_cams(bad, aff)
    bad = aff.clone()
    bad[0, 0, 0] = float('inf')
    with pytest.raises(ValueError, match='affinity has NaN or inf'):
        propagate_cams(cams, bad)
    with pytest.raises(ValueError, match='non-negative'):
        propagate_cams(cams, -aff)
    with pytest.raises(ValueError, match='beta'):
        propagate_cams(cams, aff, beta=0)
    with pytest.raises(ValueError, match='beta'):
        propagate_cams(cams, aff, beta=-1.0)
    with pytest.raises(ValueError, match='steps'):
        propagate_cams(cams, aff, steps=0)
    with pytest.raises(ValueError, match='alpha'):
        propagate_cams(cams, aff, alpha=float('nan'))
    with pytest.raises(ValueError, match='stride'):
        propagate_cams(cams, aff, stride=0)
    with pytest.raises(TypeError, match='floating point'):
        propagate_cams(cams.long(), aff)

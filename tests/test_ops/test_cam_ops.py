# Copyright (c) mmaff contributors. All rights reserved.
import numpy as np
import pytest
import torch

from mmaff.ops.cam import (aggregate_cams, background_score, cams_to_label,
                           normalize_cams)


def _resize_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of (C, h, w) with half-pixel centres (the convention
    of align_corners=False): output pixel y samples the input at
    (y + 0.5) * h / H - 0.5, clamped to the first pixel, next index clamped
    to the last."""
    _, h, w = img.shape

    def taps(n_out, n_in):
        src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        src = np.maximum(src, 0)
        lo = np.floor(src).astype(int)
        lo = np.minimum(lo, n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    y0, y1, fy = taps(out_h, h)
    x0, x1, fx = taps(out_w, w)
    out = np.zeros((img.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            top = img[:, y0[i], x0[j]] * (1 - fx[j]) + img[:, y0[i],
                                                           x1[j]] * fx[j]
            bot = img[:, y1[i], x0[j]] * (1 - fx[j]) + img[:, y1[i],
                                                           x1[j]] * fx[j]
            out[:, i, j] = top * (1 - fy[i]) + bot * fy[i]
    return out


def test_reference_resize_is_sane():
    # a constant map stays constant; same size is the identity
    img = np.random.default_rng(0).random((2, 4, 5))
    np.testing.assert_allclose(_resize_bilinear(img, 4, 5), img)
    np.testing.assert_allclose(
        _resize_bilinear(np.full((1, 3, 3), 2.0), 7, 5), 2.0)


def test_aggregate_cams_vs_reference():
    rng = np.random.default_rng(0)
    size = (10, 13)
    shapes = [(5, 7), (5, 7), (3, 4), (3, 4), (8, 11), (20, 26)]
    flips = [False, True, False, True, True, False]
    maps = [rng.random((4, h, w)).astype(np.float32) for h, w in shapes]
    out = aggregate_cams([torch.from_numpy(m) for m in maps], flips, size)
    assert out.shape == (4, ) + size and out.dtype == torch.float32
    expected = np.zeros((4, ) + size)
    for m, flip in zip(maps, flips):
        r = _resize_bilinear(m.astype(np.float64), *size)
        expected += r[..., ::-1] if flip else r
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_aggregate_cams_undoes_flips():
    """The CAM of a flipped image, flipped back, adds up with the CAM of
    the image itself."""
    rng = np.random.default_rng(1)
    cam = torch.from_numpy(rng.random((3, 6, 9)).astype(np.float32))
    out = aggregate_cams([cam, cam.flip(-1)], [False, True], (12, 18))
    single = aggregate_cams([cam], [False], (12, 18))
    torch.testing.assert_close(out, 2 * single)
    # at the input size a single unflipped pass is the identity
    torch.testing.assert_close(aggregate_cams([cam], [False], (6, 9)), cam)


def test_aggregate_cams_batched_and_dtype():
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.random((2, 3, 5, 6)).astype(np.float32))
    b = torch.from_numpy(rng.random((2, 3, 4, 4)).astype(np.float32))
    out = aggregate_cams([a, b], [False, True], (9, 7))
    assert out.shape == (2, 3, 9, 7)
    for i in range(2):
        torch.testing.assert_close(
            out[i], aggregate_cams([a[i], b[i]], [False, True], (9, 7)))
    half = aggregate_cams([a[0].half()], [False], (9, 7))
    assert half.dtype == torch.float32


def test_aggregate_cams_errors():
    cam = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match='at least one'):
        aggregate_cams([], [], (3, 3))
    with pytest.raises(ValueError, match='2 CAMs but 1 flip'):
        aggregate_cams([cam, cam], [False], (3, 3))
    with pytest.raises(ValueError, match='same number of dims'):
        aggregate_cams([cam, cam[None]], [False, False], (3, 3))


def test_normalize_cams():
    rng = np.random.default_rng(3)
    cams = rng.random(
        (3, 5, 6)).astype(np.float32) * [[[4.0]], [[2.0]], [[0.5]]]
    present = torch.tensor([True, False, True])
    eps = 1e-5
    out = normalize_cams(torch.from_numpy(cams.astype(np.float32)), present)
    assert out.shape == (3, 5, 6)
    assert torch.all(out[1] == 0)
    for c in (0, 2):
        peak = cams[c].max()
        np.testing.assert_allclose(
            out[c].numpy(), cams[c] / (peak + eps), rtol=1e-6)
        assert out[c].max().item() == pytest.approx(peak / (peak + eps))
        assert out[c].max().item() < 1
    # None keeps every class; a 0/1 float mask works like a bool one
    out_all = normalize_cams(torch.from_numpy(cams))
    assert out_all[1].max().item() == pytest.approx(1 /
                                                    (1 + eps / cams[1].max()))
    torch.testing.assert_close(
        normalize_cams(torch.from_numpy(cams), present.float()), out)
    # a larger eps shrinks the maximum: 1 / (1 + eps / peak)
    big = normalize_cams(torch.from_numpy(cams), eps=1.0)
    assert big[0].max().item() == pytest.approx(cams[0].max() /
                                                (cams[0].max() + 1.0))


def test_normalize_cams_zero_map_and_batch():
    cams = torch.zeros(2, 2, 3, 3)
    cams[0, 0, 1, 1] = 3.0
    cams[1, 1, 0, 2] = 0.25
    present = torch.tensor([[1, 1], [0, 1]])
    out = normalize_cams(cams, present)
    assert torch.all(out[0, 1] == 0)  # present but all zero: stays 0
    assert torch.all(out[1, 0] == 0)  # absent
    assert out[0, 0, 1, 1].item() == pytest.approx(3 / (3 + 1e-5))
    assert out[1, 1, 0, 2].item() == pytest.approx(0.25 / (0.25 + 1e-5))
    assert torch.isfinite(out).all()


def test_normalize_cams_errors():
    with pytest.raises(ValueError, match='present mask'):
        normalize_cams(torch.zeros(3, 2, 2), torch.ones(2))
    with pytest.raises(ValueError, match=r'\(C,H,W\)'):
        normalize_cams(torch.zeros(2, 2))


@pytest.mark.parametrize('alpha', [1, 4, 16, 32, 0.5])
def test_background_score(alpha):
    rng = np.random.default_rng(4)
    cams = rng.random((3, 4, 5)).astype(np.float32)
    out = background_score(torch.from_numpy(cams), alpha)
    assert out.shape == (1, 4, 5)
    for y in range(4):
        for x in range(5):
            peak = max(cams[c, y, x] for c in range(3))
            assert out[0, y, x].item() == pytest.approx(
                (1 - peak)**alpha, rel=1e-5, abs=1e-12)


def test_background_score_small_alpha_amplifies():
    cams = torch.tensor([[[0.0, 0.3, 0.9, 1.0]]])
    low, high = background_score(cams, 4), background_score(cams, 32)
    assert torch.all(low >= high)
    assert low[0, 0, 0] == 1 and high[0, 0, 0] == 1  # no CAM: background
    assert low[0, 0, 3] == 0 and high[0, 0, 3] == 0  # CAM 1: no background


def test_background_score_no_class_and_batch():
    out = background_score(torch.zeros(0, 3, 4), 4)
    assert out.shape == (1, 3, 4) and torch.all(out == 1)
    assert out.dtype == torch.float32
    out = background_score(torch.zeros(2, 0, 3, 4), 4)
    assert out.shape == (2, 1, 3, 4) and torch.all(out == 1)
    cams = torch.rand(2, 3, 3, 4)
    out = background_score(cams, 2)
    assert out.shape == (2, 1, 3, 4)
    for b in range(2):
        torch.testing.assert_close(out[b], background_score(cams[b], 2))
    # values above 1 are clamped: no negative base
    assert background_score(torch.full((1, 1, 1), 1.5), 3).item() == 0
    with pytest.raises(ValueError):
        background_score(torch.zeros(3, 4), 2)


def test_cams_to_label():
    # two present classes with label ids 15 and 3 (channel order)
    cams = torch.tensor([[[0.9, 0.1, 0.2, 0.5, 0.4]],
                         [[0.3, 0.8, 0.2, 0.5, 0.1]]])
    out = cams_to_label(cams, [15, 3], bg_threshold=0.2)
    assert out.dtype == torch.int64 and out.shape == (1, 5)
    # px0: 15 wins; px1: 3; px2: both equal the threshold -> background;
    # px3: classes tie above the threshold -> the first channel (15);
    # px4: 15
    assert out.tolist() == [[15, 3, 0, 15, 15]]
    # with a high threshold everything is background
    assert cams_to_label(cams, [15, 3], 0.95).eq(0).all()
    # tie of a class with the threshold -> background
    tie = torch.tensor([[[0.5, 0.51]]])
    assert cams_to_label(tie, [7], 0.5).tolist() == [[0, 7]]


def test_cams_to_label_random_vs_loop():
    rng = np.random.default_rng(5)
    cams = rng.random((3, 6, 7)).astype(np.float32)
    ids = [20, 1, 9]
    out = cams_to_label(torch.from_numpy(cams), ids, 0.4)
    for y in range(6):
        for x in range(7):
            scores = [0.4] + [cams[c, y, x] for c in range(3)]
            k = int(np.argmax(scores))
            assert out[y, x].item() == ([0] + ids)[k]


def test_cams_to_label_no_class_and_errors():
    out = cams_to_label(torch.zeros(0, 3, 4), [], 0.2)
    assert out.shape == (3, 4) and torch.all(out == 0)
    with pytest.raises(ValueError, match='2 label ids'):
        cams_to_label(torch.zeros(3, 2, 2), [1, 2], 0.2)


def test_pool_to_grid_against_block_sums():
    from mmaff.ops import pool_to_grid
    rng = np.random.default_rng(3)
    scores = rng.random((3, 19, 13)).astype(np.float32)
    out = pool_to_grid(scores, 8)
    assert isinstance(out, np.ndarray) and out.shape == (3, 3, 2)
    for k in range(3):
        for gy in range(3):
            for gx in range(2):
                block = scores[k, gy * 8:(gy + 1) * 8, gx * 8:(gx + 1) * 8]
                # zero padding counts: block sum / 64 even at the border
                assert out[k, gy, gx] == pytest.approx(block.sum() / 64,
                                                       rel=1e-5)
    # a border cell's argmax is that of the mean over its in-image pixels
    means = np.stack([
        scores[:, 16:, 8:].mean((1, 2)), scores[:, :8, :8].mean((1, 2))
    ])
    assert out[:, 2, 1].argmax() == means[0].argmax()
    # tensors, batched or not, give the same values
    t = torch.from_numpy(scores)
    torch.testing.assert_close(pool_to_grid(t, 8), torch.from_numpy(out))
    torch.testing.assert_close(
        pool_to_grid(t[None].repeat(2, 1, 1, 1), 8)[1], torch.from_numpy(out))
    with pytest.raises(ValueError, match='stride'):
        pool_to_grid(scores, 0)

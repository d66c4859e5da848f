# Copyright (c) mmaff contributors. All rights reserved.
import math

import numpy as np
import pytest
import torch

from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 fuse_confident_regions,
                                 summarize_confident_stats)
from mmaff.ops.crf import dense_crf


def _blocks(cells: np.ndarray, stride: int) -> np.ndarray:
    """(K, h, w) per-cell score vectors -> (K, h*s, w*s) constant blocks."""
    return np.kron(cells, np.ones((1, stride, stride))).astype(np.float32)


def _brute_force_fuse(low, high, label_ids, stride, ignore=255):
    """Pool and fuse cell by cell, straight from the rule."""
    _, height, width = low.shape
    h, w = -(-height // stride), -(-width // stride)
    out = np.zeros((h, w), np.int64)
    ids = [0] + list(label_ids)
    for r in range(h):
        for c in range(w):
            rows = slice(r * stride, min((r + 1) * stride, height))
            cols = slice(c * stride, min((c + 1) * stride, width))
            lo = int(np.argmax(low[:, rows, cols].mean(axis=(1, 2))))
            hi = int(np.argmax(high[:, rows, cols].mean(axis=(1, 2))))
            if hi == 0:
                out[r, c] = 0
            elif lo == 0:
                out[r, c] = ignore
            else:
                out[r, c] = ids[lo]
    return out


# ---------------------------------------------------------------- fusion


def test_fusion_rule_and_label_ids():
    # channel 0 = background, 1 -> id 7, 2 -> id 15; one vector per cell
    low = np.array([
        [[0.1, 0.6, 0.5], [0.1, 0.1, 0.2]],  # bg
        [[0.8, 0.3, 0.3], [0.2, 0.2, 0.7]],  # class 7
        [[0.1, 0.1, 0.2], [0.7, 0.7, 0.1]],  # class 15
    ])
    high = np.array([
        [[0.0, 0.1, 0.6], [0.1, 0.8, 0.1]],
        [[0.9, 0.2, 0.2], [0.1, 0.1, 0.2]],
        [[0.1, 0.7, 0.2], [0.8, 0.1, 0.7]],
    ])
    # by hand: (0,0) low 7 / high 7 -> 7;  (0,1) low bg / high 15 -> 255;
    # (0,2) low bg / high bg -> 0;         (1,0) low 15 / high 15 -> 15;
    # (1,1) low 15 / high bg -> 0;         (1,2) low 7 / high 15 -> 7
    expected = np.array([[7, 255, 0], [15, 0, 7]], np.uint8)
    out = fuse_confident_regions(
        _blocks(low, 2), _blocks(high, 2), [7, 15], stride=2)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # torch inputs and another unsure value
    out = fuse_confident_regions(
        torch.from_numpy(_blocks(low, 4)),
        torch.from_numpy(_blocks(high, 4)), [7, 15],
        stride=4,
        ignore_index=254)
    np.testing.assert_array_equal(out, np.where(expected == 255, 254,
                                                expected))


def test_fusion_averages_scores_not_votes():
    # one 2x2 cell: three pixels prefer class 1 mildly, one pixel is sure of
    # class 2. Mean: class 1 = 1.5 / 4, class 2 = 2.2 / 4 -> class 2 (id 9),
    # whereas a per-pixel majority vote would say class 1 (id 4).
    cell = np.zeros((3, 2, 2), np.float32)
    cell[:, 0, 0] = cell[:, 0, 1] = cell[:, 1, 0] = (0.1, 0.5, 0.4)
    cell[:, 1, 1] = (0.0, 0.0, 1.0)
    out = fuse_confident_regions(cell, cell, [4, 9], stride=2)
    np.testing.assert_array_equal(out, [[9]])


def test_fusion_padding_at_non_multiple_size():
    # H=5, W=7, stride 3 -> 2x3 grid; the bottom cells hold image rows 3-4
    # (row 5 is padding), the right cells image column 6 only (cell (1,2)
    # holds 2 image pixels out of 9).
    low = np.zeros((3, 5, 7), np.float32)
    low[0] = 1.0  # background unless set below
    low[:, 0:3, 0:3] = np.array([0, 1, 0])[:, None, None]  # cell (0,0): 1
    low[:, 0:3, 6] = np.array([0, 0, 1])[:, None]  # cell (0,2): class 2
    # cell (1,0): row 3 -> (0, .9, .1), row 4 -> (0, .2, .8). Mean over the
    # image pixels: class 1 .55 > class 2 .45. (Replicating row 4 into the
    # padding would give class 2: .433 < .567.)
    low[:, 3, 0:3] = np.array([0, 0.9, 0.1])[:, None]
    low[:, 4, 0:3] = np.array([0, 0.2, 0.8])[:, None]
    # cell (1,2) = pixels (3,6), (4,6): bg .3/.6, class 1 .7/.4 -> 1
    low[:, 3, 6] = (0.3, 0.7, 0.0)
    low[:, 4, 6] = (0.6, 0.4, 0.0)
    high = np.zeros((3, 5, 7), np.float32)
    high[2] = 1.0  # class 2 everywhere ...
    high[:, 0:3, 3:6] = np.array([1, 0, 0])[:, None, None]  # cell (0,1): bg
    out = fuse_confident_regions(low, high, [7, 15], stride=3)
    expected = np.array([[7, 0, 15], [7, 255, 7]], np.uint8)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('shape,stride', [((4, 11, 13), 4), ((3, 16, 8), 8),
                                          ((2, 9, 20), 8), ((5, 7, 7), 1)])
def test_fusion_matches_brute_force(shape, stride):
    rng = np.random.default_rng(sum(shape) + stride)
    low = rng.random(shape).astype(np.float32)
    high = rng.random(shape).astype(np.float32)
    high[0] *= 0.8  # a mix of all three outcomes
    ids = [2, 5, 11, 20][:shape[0] - 1]
    out = fuse_confident_regions(low, high, ids, stride=stride)
    np.testing.assert_array_equal(out,
                                  _brute_force_fuse(low, high, ids, stride))


def test_fusion_bad_inputs():
    a = np.full((3, 8, 8), 1 / 3, np.float32)
    with pytest.raises(ValueError, match='3 channels but 1 label ids'):
        fuse_confident_regions(a, a, [5])
    with pytest.raises(ValueError, match='differ in shape'):
        fuse_confident_regions(a, a[:, :4], [5, 6])
    with pytest.raises(ValueError, match='not valid foreground ids'):
        fuse_confident_regions(a, a, [0, 6])
    with pytest.raises(ValueError, match='not valid foreground ids'):
        fuse_confident_regions(a, a, [255, 6])
    with pytest.raises(ValueError, match='distinct'):
        fuse_confident_regions(a, a, [6, 6])
    with pytest.raises(ValueError, match='stride'):
        fuse_confident_regions(a, a, [5, 6], stride=0)
    with pytest.raises(TypeError, match='floating point'):
        fuse_confident_regions(a.astype(np.int32), a, [5, 6])
    with pytest.raises(ValueError, match=r'\(K\+1, H, W\)'):
        fuse_confident_regions(a[0], a[0], [5, 6])


# ------------------------------------------------------ end to end (one map)


def _synthetic(height=44, width=60):
    """A grey image with a red disk and a blue square, CAM blobs on them."""
    rng = np.random.default_rng(0)
    img = np.full(
        (height, width, 3), 128.0) + rng.normal(0, 4, (height, width, 3))
    yy, xx = np.mgrid[:height, :width]
    disk = (yy - 14)**2 + (xx - 18)**2 <= 81
    square = (yy >= 22) & (yy < 38) & (xx >= 36) & (xx < 54)
    img[disk] = (200, 40, 40)
    img[square] = (40, 60, 200)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cam1 = np.exp(-((yy - 14)**2 + (xx - 18)**2) / (2 * 7.0**2))
    cam2 = np.exp(-((yy - 30)**2 + (xx - 45)**2) / (2 * 8.0**2))
    cams = np.stack([cam1, cam2])
    cams = cams / (cams.reshape(2, -1).max(1)[:, None, None] + 1e-5)
    return img, cams.astype(np.float32)


def test_confident_region_map_matches_brute_force():
    img, cams = _synthetic()
    ids = [3, 12]
    height, width = img.shape[:2]
    out = confident_region_map(img, cams, ids)  # alphas 4 / 24, stride 8
    assert out.shape == (height, width) and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) <= {0, 3, 12, 255}

    peak = cams.max(0)
    low = dense_crf(img, np.concatenate([((1 - peak)**4)[None], cams]))
    high = dense_crf(img, np.concatenate([((1 - peak)**24)[None], cams]))
    grid = _brute_force_fuse(low, high, ids, 8)
    expected = np.zeros((height, width), np.int64)
    for y in range(height):
        for x in range(width):
            expected[y, x] = grid[y // 8, x // 8]
    np.testing.assert_array_equal(out, expected)
    # all three kinds occur; the object centres are confident foreground
    assert {0, 3, 12, 255} == set(np.unique(out).tolist())
    assert out[14, 18] == 3 and out[30, 45] == 12
    assert out[0, 0] == 0 and out[height - 1, 0] == 0
    # torch CAMs give the same map
    np.testing.assert_array_equal(
        confident_region_map(img, torch.from_numpy(cams), ids), out)


def test_alpha_ordering():
    img, cams = _synthetic()
    ids = [3, 12]

    def counts(alpha_low, alpha_high):
        m = confident_region_map(img, cams, ids, alpha_low, alpha_high)
        return ((m != 0) & (m != 255)).sum(), (m == 0).sum(), (m == 255).sum()

    fg, bg, unsure = counts(4, 32)
    assert fg > 0 and bg > 0 and unsure > 0
    # equal alphas: the two maps agree on background, nothing is unsure
    for alpha in (4, 32):
        assert counts(alpha, alpha)[2] == 0
    # a larger alpha_low (weaker background) leaves more foreground ...
    assert counts(32, 32)[0] > fg
    # ... and a smaller alpha_high (stronger background) more background
    assert counts(4, 4)[1] > bg


def test_no_classes_gives_background():
    img, _ = _synthetic(20, 30)
    out = confident_region_map(img, np.zeros((0, 20, 30), np.float32), [])
    assert out.shape == (20, 30) and out.dtype == np.uint8
    assert (out == 0).all()


def test_confident_region_map_bad_inputs():
    img, cams = _synthetic(16, 24)
    with pytest.raises(ValueError, match='do not match 1 label ids'):
        confident_region_map(img, cams, [3])
    with pytest.raises(ValueError, match='does not match the image size'):
        confident_region_map(img, cams[:, :8], [3, 12])
    with pytest.raises(ValueError, match=r'normalised to \[0, 1\]'):
        confident_region_map(img, cams * 3, [3, 12])
    with pytest.raises(ValueError, match='alpha_low must be positive'):
        confident_region_map(img, cams, [3, 12], alpha_low=0)
    with pytest.raises(ValueError, match='uint8 RGB'):
        confident_region_map(img.astype(np.float32), cams, [3, 12])


# ------------------------------------------------------------------ stats


def test_stats_against_hand_counts():
    # yapf: disable
    conf = np.array([[0, 0, 5, 5],
                     [255, 5, 7, 0],
                     [255, 255, 0, 7]], np.uint8)
    gt = np.array([[0, 5, 5, 255],
                   [0, 5, 5, 0],
                   [255, 7, 7, 7]], np.uint8)
    # yapf: enable
    # counted pixels (gt != 255): 10
    # confident fg at counted pixels: (0,2)5/5 ok, (1,1)5/5 ok, (1,2)7/5
    #   wrong, (2,3)7/7 ok -> 4, 3 correct  ((0,3) is gt-ignored)
    # confident bg: (0,0) gt0 ok, (0,1) gt5, (1,3) gt0 ok, (2,2) gt7 -> 4, 2
    # unsure: (1,0), (2,1) -> 2   ((2,0) is gt-ignored)
    # gt fg: (0,1) (0,2) (1,1) (1,2) (2,1) (2,2) (2,3) -> 7; gt bg: 3
    expected = dict(
        pixels=10,
        conf_fg=4,
        conf_fg_correct=3,
        conf_bg=4,
        conf_bg_correct=2,
        unsure=2,
        gt_fg=7,
        gt_bg=3)
    stats = confident_region_stats(conf, gt)
    assert stats == expected
    assert all(type(v) is int for v in stats.values())

    other = dict(
        pixels=6,
        conf_fg=2,
        conf_fg_correct=2,
        conf_bg=4,
        conf_bg_correct=4,
        unsure=0,
        gt_fg=2,
        gt_bg=4)
    summary = summarize_confident_stats([stats, other])
    assert summary['num_images'] == 2
    assert summary['pixels'] == 16 and summary['unsure'] == 2
    assert summary['fg_precision'] == pytest.approx(5 / 6)
    assert summary['bg_precision'] == pytest.approx(6 / 8)
    assert summary['fg_recall'] == pytest.approx(5 / 9)
    assert summary['bg_recall'] == pytest.approx(6 / 7)
    assert summary['unsure_fraction'] == pytest.approx(2 / 16)
    assert summary['fg_fraction'] == pytest.approx(6 / 16)
    assert summary['bg_fraction'] == pytest.approx(8 / 16)


def test_stats_edge_cases():
    empty = summarize_confident_stats([])
    assert empty['num_images'] == 0 and math.isnan(empty['fg_precision'])
    with pytest.raises(KeyError, match='lacks the counts'):
        summarize_confident_stats([dict(pixels=1)])
    with pytest.raises(ValueError, match='same shape'):
        confident_region_stats(np.zeros((2, 3)), np.zeros((3, 2)))

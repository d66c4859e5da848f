# Copyright (c) mmaff contributors. All rights reserved.
import logging

import numpy as np
import pytest
import torch

import mmaff  # noqa: F401
from mmaff.evaluation.metrics import CAMMetric
from mmaff.registry import METRICS


def _sample(cams, gt):
    """A prediction shaped like what the evaluator hands to ``process``."""
    return dict(
        pred_cams=dict(data=torch.as_tensor(np.asarray(cams, np.float32))),
        gt_sem_seg=dict(data=torch.as_tensor(np.asarray(gt))[None]))


def _metric(thresholds, classes):
    metric = CAMMetric(bg_thresholds=thresholds)
    metric.dataset_meta = dict(classes=classes)
    return metric


def test_hand_example():
    cams = [[[0.9, 0.4, 0.1], [0.0, 0.6, 0.3]],
            [[0.2, 0.5, 0.05], [0.75, 0.6, 0.25]]]
    gt = [[1, 2, 0], [2, 255, 0]]
    # per pixel: peak [[.9 .5 .1] [.75 .6 .3]], class [[1 2 1] [2 1 1]]
    # t=0.25: pred [[1 2 0] [2 - 1]] -> IoU bg 1/2, a 1/2, b 2/2 -> 66.67
    # t=0.50: pred [[1 0 0] [2 - 0]] -> IoU bg 2/3, a 1/1, b 1/2 -> 72.22
    # t=0.75: pred [[1 0 0] [0 - 0]] (0.75 is not above 0.75: background)
    #         -> IoU bg 2/4, a 1/1, b 0/2 -> 50.00
    metric = _metric([0.75, 0.25, 0.5], ('background', 'a', 'b'))
    metric.process({}, [_sample(cams, gt)])
    res = metric.evaluate(1)
    assert res['mIoU@0.25'] == pytest.approx(66.67)
    assert res['mIoU@0.50'] == pytest.approx(72.22)
    assert res['mIoU@0.75'] == pytest.approx(50.0)
    assert res['mIoU'] == pytest.approx(72.22)
    assert res['bg_threshold'] == 0.5
    assert set(res) == {
        'mIoU', 'bg_threshold', 'mIoU@0.25', 'mIoU@0.50', 'mIoU@0.75'
    }


def _brute_force_mious(samples, thresholds, num_classes, ignore=255):
    inter = np.zeros((len(thresholds), num_classes))
    union = np.zeros((len(thresholds), num_classes))
    for cams, gt in samples:
        for y in range(gt.shape[0]):
            for x in range(gt.shape[1]):
                g = int(gt[y, x])
                if g == ignore:
                    continue
                best_c, best_v = 0, -1.0
                for c in range(cams.shape[0]):
                    if cams[c, y, x] > best_v:
                        best_c, best_v = c + 1, cams[c, y, x]
                for k, t in enumerate(thresholds):
                    p = best_c if best_v > t else 0
                    for c in range(num_classes):
                        inter[k, c] += (p == c) and (g == c)
                        union[k, c] += (p == c) or (g == c)
    mious = []
    for k in range(len(thresholds)):
        ious = [
            inter[k, c] / union[k, c] for c in range(num_classes)
            if union[k, c] > 0
        ]
        mious.append(100 * sum(ious) / len(ious))
    return np.array(mious)


def test_random_batches_vs_brute_force():
    rng = np.random.default_rng(0)
    classes = ('background', 'a', 'b', 'c')
    samples = []
    for h, w in [(6, 7), (5, 9), (8, 4), (7, 7)]:
        cams = rng.random((3, h, w)).astype(np.float32)**2
        cams[rng.integers(3)] = 0  # an absent class, as normalize_cams does
        gt = rng.integers(0, 4, (h, w))
        gt[rng.random((h, w)) < 0.15] = 255
        samples.append((cams, gt))
    metric = METRICS.build(dict(type='CAMMetric'))
    metric.dataset_meta = dict(classes=classes)
    thresholds = [round(0.05 * i, 2) for i in range(1, 20)]
    np.testing.assert_allclose(metric.bg_thresholds, thresholds)
    metric.process({}, [_sample(*s) for s in samples[:2]])  # two batches
    metric.process({}, [_sample(*s) for s in samples[2:]])
    res = metric.evaluate(len(samples))
    expected = _brute_force_mious(samples, thresholds, 4)
    for t, m in zip(thresholds, expected):
        assert res[f'mIoU@{t:.2f}'] == pytest.approx(m, abs=0.0051), t
    best = int(np.argmax(expected))
    assert res['bg_threshold'] == pytest.approx(thresholds[best])
    assert res['mIoU'] == pytest.approx(expected.max(), abs=0.0051)
    # evaluate clears the results: a new round starts from zero
    assert metric.results == []


def test_class_absent_everywhere_is_not_counted():
    # class b is neither in the ground truth nor predicted: mean over 2
    cams = np.zeros((2, 1, 4), np.float32)
    cams[0, 0, :2] = 0.9
    gt = np.array([[1, 1, 0, 0]])
    metric = _metric([0.5], ('background', 'a', 'b'))
    metric.process({}, [_sample(cams, gt)])
    res = metric.evaluate(1)
    assert res['mIoU'] == pytest.approx(100.0)


def test_errors():
    metric = _metric([0.5], ('background', 'a', 'b'))
    with pytest.raises(ValueError, match='3 CAM channels.*2 classes'):
        metric.process({}, [_sample(np.zeros((3, 2, 2)), np.zeros((2, 2)))])
    with pytest.raises(KeyError, match='pred_cams'):
        metric.process({}, [dict(gt_sem_seg=dict(data=torch.zeros(1, 2, 2)))])
    with pytest.raises(ValueError, match='does not match'):
        metric.process({}, [_sample(np.zeros((2, 2, 3)), np.zeros((2, 2)))])
    with pytest.raises(ValueError, match='empty'):
        CAMMetric(bg_thresholds=[])


# ------------------------------------------ a resumed export is a subset


def _two_samples():
    cams = np.zeros((2, 1, 4), np.float32)
    cams[0, 0, :2] = 0.9
    gt = np.array([[1, 1, 0, 0]])
    return [_sample(cams, gt), _sample(cams, gt)]


def test_subset_left_by_skip_done_is_said(monkeypatch):
    from mmaff.evaluation.metrics import cam_metric
    logs = []
    monkeypatch.setattr(cam_metric, 'print_log',
                        lambda msg, *a, **kw: logs.append((msg, kw)))
    metric = _metric([0.5], ('background', 'a', 'b'))
    metric.dataset_meta = dict(
        classes=('background', 'a', 'b'),
        skip_done=dict(dir='work/cams', split_size=5, skipped=3))
    metric.process({}, _two_samples())
    res = metric.evaluate(2)
    assert res['num_images'] == 2 and res['subset_of'] == 5
    assert res['mIoU'] == pytest.approx(100.0)
    warned = [(m, kw) for m, kw in logs if '2 of 5 images' in m]
    assert len(warned) == 1
    msg, kw = warned[0]
    assert kw.get('level') == logging.WARNING
    assert 'skip_done' in msg and 'work/cams' in msg


def test_whole_set_has_no_subset_keys():
    metric = _metric([0.5], ('background', 'a', 'b'))
    # all images scored, even though the dataset says what was skipped
    metric.dataset_meta = dict(
        classes=('background', 'a', 'b'),
        skip_done=dict(dir='d', split_size=2, skipped=0))
    metric.process({}, _two_samples())
    assert set(metric.evaluate(2)) == {'mIoU', 'bg_threshold', 'mIoU@0.50'}


def test_held_out_images_choose_the_threshold_and_are_not_scored():
    """With held-out samples, the threshold comes from them and the
    reported mIoU from the others (hand-computed)."""
    classes = ('background', 'a')
    # held-out image: CAM 0.6 on a true "a" pixel, 0.4 on a background one
    # -> t = 0.3 labels both "a" (IoU bg 0, a 1/2: 25), t = 0.5 is exact
    held = dict(_sample([[[0.6, 0.4]]], [[1, 0]]), holdout=True)
    # scored image: CAM 0.45 on "a", 0.2 on background -> exact at t = 0.3,
    # "a" missed at t = 0.5: IoU bg 1/2, a 0 -> 25
    scored = dict(_sample([[[0.45, 0.2]]], [[1, 0]]), holdout=False)
    metric = _metric([0.3, 0.5], classes)
    metric.process({}, [held, scored])
    res = metric.evaluate(2)
    assert res['bg_threshold'] == 0.5
    assert res['mIoU'] == pytest.approx(25.0)
    assert res['mIoU@0.30'] == pytest.approx(100.0)  # scored image's sweep
    assert res['holdout/mIoU'] == pytest.approx(100.0)
    assert res['num_holdout'] == 1
    # without held-out images, the scored image chooses t = 0.3 itself
    plain = _metric([0.3, 0.5], classes)
    plain.process({}, [scored])
    res = plain.evaluate(1)
    assert res['bg_threshold'] == 0.3 and res['mIoU'] == pytest.approx(100)
    assert 'num_holdout' not in res

# Copyright (c) mmaff contributors. All rights reserved.
"""PseudoLabelMetric against confusion numbers worked out by hand (and by a
plain numpy intersection / union, independent of mmseg) on two tiny 2 x 3
images with classes (background, a, b).

The samples are what the evaluator hands the metric: the model's
``SegDataSample`` (metainfo ``cams`` / ``cam_labels`` from ``LoadCAMs``,
``pred_sem_seg`` from AffinityNet's walk) turned into a dict.
"""
import logging
import math
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.evaluation.metrics import pseudo_label_metric as plm_module
from mmaff.registry import METRICS
from mmaff.utils import register_all_modules
from mmaff.utils.io import save_label_png

register_all_modules()

CLASSES = ('background', 'a', 'b')
GT = {
    'im1': np.array([[0, 1, 1], [0, 255, 2]], np.uint8),
    'im2': np.array([[2, 2, 0], [1, 0, 0]], np.uint8),
}
RW = {
    'im1': np.array([[0, 1, 0], [1, 1, 2]], np.uint8),
    'im2': np.array([[2, 0, 0], [1, 1, 0]], np.uint8),
}
CRF = {
    'im1': np.array([[0, 1, 1], [0, 0, 2]], np.uint8),
    'im2': np.array([[2, 2, 0], [1, 0, 1]], np.uint8),
}
# The CAMs LoadCAMs put in the metainfo: im1 has CAMs of both classes, im2
# only of class 2 (K = 1).
CAMS = {
    'im1': (np.array([[[0.1, 0.9, 0.5], [0.3, 0.0, 0.0]],
                      [[0.0, 0.1, 0.6], [0.1, 0.7, 0.9]]], np.float32),
            (1, 2)),
    'im2': (np.array([[[0.8, 0.1, 0.0], [0.3, 0.15, 0.0]]], np.float32),
            (2, )),
}
# Worked out by hand (conf[gt, pred], the 255 pixel of im1 left out):
#   RW:   gt0 -> (3, 2, 0), gt1 -> (1, 2, 0), gt2 -> (1, 0, 2)
#         IoU = 3/7, 2/5, 2/3
#   CRF:  gt0 -> (4, 1, 0), gt1 -> (0, 3, 0), gt2 -> (0, 0, 3)
#         IoU = 4/5, 3/4, 1
#   CAM at 0.2: im1 -> [[0, 1, 2], [1, 2, 2]], im2 -> [[2, 0, 0], [2, 0, 0]]
#         gt0 -> (4, 1, 0), gt1 -> (0, 1, 2), gt2 -> (1, 0, 2)
#         IoU = 4/6, 1/4, 2/5
EXPECTED_IOU = {
    'CAM': [4 / 6, 1 / 4, 2 / 5],
    'RW': [3 / 7, 2 / 5, 2 / 3],
    'RW+dCRF': [4 / 5, 3 / 4, 1.0],
}
ALL_KEYS = {'CAM/mIoU', 'RW/mIoU', 'RW+dCRF/mIoU'}


# ------------------------------------------------- independent reference


def np_iou(pairs, num_classes, ignore_index=255):
    """Per-class IoU of (pred, gt) pairs summed over images: plain numpy
    intersection / union of each class's pixel sets, NaN for a class in
    neither."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for pred, gt in pairs:
        valid = gt != ignore_index
        for c in range(num_classes):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    iou = np.full(num_classes, np.nan)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def np_cam_label(cams, labels, thr):
    """Argmax of [thr, CAMs] (first wins a tie: background) as label ids."""
    full = np.concatenate([np.full((1, ) + cams.shape[1:], thr), cams])
    return np.array((0, ) + tuple(labels))[full.argmax(0)]


def miou(iou):
    return round(float(np.nanmean(iou)) * 100, 2)


def expected_ious(thr=0.2, classes=CLASSES):
    k = len(classes)
    return {
        'CAM':
        np_iou([(np_cam_label(*CAMS[i], thr), GT[i]) for i in GT], k),
        'RW': np_iou([(RW[i], GT[i]) for i in GT], k),
        'RW+dCRF': np_iou([(CRF[i], GT[i]) for i in GT], k),
    }


def test_reference_agrees_with_the_hand_computed_confusion():
    # the numpy reference itself, against the figures worked out by hand
    for name, ious in expected_ious().items():
        np.testing.assert_allclose(ious, EXPECTED_IOU[name], err_msg=name)


# ------------------------------------------------------------- fixtures


def paths(root):
    return dict(gt=osp.join(root, 'gt'), CRF=osp.join(root, 'crf'))


def write_gt(dirs):
    for img_id, gt in GT.items():
        save_label_png(osp.join(dirs['gt'], img_id + '.png'), gt)


def write_labels(dirs):
    """What the export hook writes after the evaluator's process."""
    for img_id, crf in CRF.items():
        save_label_png(osp.join(dirs['CRF'], img_id + '.png'), crf)


def samples(dirs, gt_source='gt_sem_seg', cams=True, pred=True):
    """The model's output samples as the evaluator passes them (dicts)."""
    out = []
    for img_id, gt in GT.items():
        meta = dict(
            img_path=f'/data/JPEGImages/{img_id}.jpg',
            ori_shape=gt.shape,
            img_shape=gt.shape)
        if gt_source in ('seg_map_path', 'both'):
            meta['seg_map_path'] = osp.join(dirs['gt'], img_id + '.png')
        if cams:
            meta['cams'], meta['cam_labels'] = CAMS[img_id]
        s = SegDataSample(metainfo=meta)
        if gt_source in ('gt_sem_seg', 'both'):
            s.gt_sem_seg = PixelData(data=torch.from_numpy(gt)[None].long())
        if pred:
            s.pred_sem_seg = PixelData(
                data=torch.from_numpy(RW[img_id])[None].long())
        out.append(s.to_dict())
    return out


def build(dirs=None, classes=CLASSES, **kw):
    cfg = dict(type='PseudoLabelMetric')
    if dirs is not None:
        cfg['label_dirs'] = {'RW+dCRF': dirs['CRF']}
    cfg.update(kw)
    metric = METRICS.build(cfg)
    metric.dataset_meta = dict(classes=classes)
    return metric


@pytest.fixture
def tables(monkeypatch):
    """The IoU tables the metric logs: [(columns, class names)]."""
    out = []
    monkeypatch.setattr(plm_module, 'print_iou_table',
                        lambda cols, names: out.append((cols, names)))
    return out


# ------------------------------------------------------------ the figures


@pytest.mark.parametrize('gt_source', ['gt_sem_seg', 'seg_map_path', 'both'])
def test_metric_matches_hand_computed_confusion(tmp_path, tables, gt_source):
    dirs = paths(str(tmp_path))
    write_gt(dirs)
    metric = build(dirs)
    assert metric.methods == ['CAM', 'RW', 'RW+dCRF']
    # process runs before the hook writes the label files: it must not
    # read them (CAM and RW are scored from the samples themselves)
    for s in samples(dirs, gt_source):
        metric.process({}, [s])
    assert not osp.exists(dirs['CRF'])
    write_labels(dirs)
    result = metric.evaluate(2)
    assert set(result) == ALL_KEYS
    reference = expected_ious()
    for name, ious in reference.items():
        assert result[f'{name}/mIoU'] == pytest.approx(miou(ious)), name
        assert result[f'{name}/mIoU'] == pytest.approx(
            round(np.mean(EXPECTED_IOU[name]) * 100, 2)), name
    # one table, one column per method, in order, per-class IoU in [0, 1]
    (cols, names), = tables
    assert list(names) == list(CLASSES)
    assert list(cols) == ['CAM', 'RW', 'RW+dCRF']
    for name, ious in reference.items():
        np.testing.assert_allclose(cols[name], ious, err_msg=name)


def test_gt_from_seg_map_path_is_the_file(tmp_path, tables):
    # without gt_sem_seg the ground truth is the file seg_map_path names:
    # a different file gives the figures of that file
    dirs = paths(str(tmp_path))
    other = {i: np.where(g == 255, 0, g).astype(np.uint8) for i, g in
             GT.items()}
    for img_id, gt in other.items():
        save_label_png(osp.join(dirs['gt'], img_id + '.png'), gt)
    write_labels(dirs)
    metric = build(dirs)
    metric.process({}, samples(dirs, 'seg_map_path'))
    result = metric.evaluate(2)
    assert result['RW/mIoU'] == pytest.approx(
        miou(np_iou([(RW[i], other[i]) for i in GT], 3)))
    assert result['RW+dCRF/mIoU'] == pytest.approx(
        miou(np_iou([(CRF[i], other[i]) for i in GT], 3)))
    assert result['RW/mIoU'] != pytest.approx(miou(EXPECTED_IOU['RW']))


def test_absent_classes_are_nan_and_left_out_of_the_mean(tmp_path, tables):
    dirs = paths(str(tmp_path))
    write_labels(dirs)
    classes = CLASSES + ('c', 'd')  # c predicted once but absent, d never
    metric = build(dirs, classes=classes, cam_bg_threshold=None)
    batch = samples(dirs)
    pred = RW['im2'].copy()
    pred[0, 2] = 3  # a background pixel called c
    batch[1]['pred_sem_seg']['data'] = torch.from_numpy(pred)[None].long()
    metric.process({}, batch)
    result = metric.evaluate(2)
    assert set(result) == {'RW/mIoU', 'RW+dCRF/mIoU'}
    rw = np_iou([(RW['im1'], GT['im1']), (pred, GT['im2'])], 5)
    assert rw[3] == 0 and math.isnan(rw[4])
    (cols, _), = tables
    np.testing.assert_allclose(cols['RW'], rw)
    # c counts (IoU 0), d is NaN and left out
    assert result['RW/mIoU'] == pytest.approx(round(np.sum(rw[:4]) / 4 * 100,
                                                    2))
    crf = cols['RW+dCRF']
    assert math.isnan(crf[3]) and math.isnan(crf[4])
    assert result['RW+dCRF/mIoU'] == pytest.approx(
        round(np.mean(EXPECTED_IOU['RW+dCRF']) * 100, 2))


def test_all_ignored_ground_truth_gives_nan(tables):
    metric = build(cam_bg_threshold=None)
    batch = samples(None)
    for s in batch:
        s['gt_sem_seg']['data'] = torch.full((1, 2, 3), 255)
    metric.process({}, batch)
    result = metric.evaluate(2)
    assert set(result) == {'RW/mIoU'}
    assert math.isnan(result['RW/mIoU'])


def test_cam_threshold(tables):
    results = {}
    for thr in (0.0, 0.2, 0.35, 0.95):
        metric = build(cam_bg_threshold=thr, pred_name=None)
        metric.process({}, samples(None, pred=False))
        result = metric.evaluate(2)
        assert set(result) == {'CAM/mIoU'}
        assert result['CAM/mIoU'] == pytest.approx(
            miou(expected_ious(thr)['CAM'])), thr
        results[thr] = result['CAM/mIoU']
    # 0.95: every pixel is background. conf: gt0 -> 5 px all right,
    # gt1 -> 3 px, gt2 -> 3 px all called 0
    assert results[0.95] == pytest.approx(round(5 / 11 / 3 * 100, 2))
    assert results[0.2] == pytest.approx(
        round(np.mean(EXPECTED_IOU['CAM']) * 100, 2))
    assert len(set(results.values())) == len(results)  # each one differs


def test_cam_column_left_out(tables):
    # None: no CAM column, and samples need no CAMs
    metric = build(cam_bg_threshold=None)
    assert metric.methods == ['RW']
    metric.process({}, samples(None, cams=False))
    assert metric.evaluate(2) == {
        'RW/mIoU': pytest.approx(miou(EXPECTED_IOU['RW']))
    }
    # pred_name None: no prediction column, samples need no pred_sem_seg;
    # a renamed prediction column
    metric = build(pred_name=None)
    metric.process({}, samples(None, pred=False))
    assert set(metric.evaluate(2)) == {'CAM/mIoU'}
    metric = build(pred_name='walk')
    metric.process({}, samples(None))
    result = metric.evaluate(2)
    assert set(result) == {'CAM/mIoU', 'walk/mIoU'}
    assert result['walk/mIoU'] == pytest.approx(miou(EXPECTED_IOU['RW']))


def test_subset_left_by_skip_done_is_said(tmp_path, monkeypatch):
    dirs = paths(str(tmp_path))
    write_labels(dirs)
    logs = []
    from mmaff.evaluation.metrics import cam_metric
    monkeypatch.setattr(cam_metric, 'print_log',
                        lambda msg, *a, **kw: logs.append((msg, kw)))
    metric = build(dirs)
    metric.dataset_meta = dict(
        classes=CLASSES,
        skip_done=dict(dir=dirs['CRF'], split_size=7, skipped=5))
    metric.process({}, samples(dirs))
    result = metric.evaluate(2)
    assert result['num_images'] == 2 and result['subset_of'] == 7
    assert result['RW/mIoU'] == pytest.approx(miou(EXPECTED_IOU['RW']))
    warned = [kw for m, kw in logs if '2 of 7 images' in m]
    assert len(warned) == 1 and warned[0].get('level') == logging.WARNING
    # the whole set: the usual keys only, no warning
    logs.clear()
    metric = build(dirs)
    metric.dataset_meta = dict(
        classes=CLASSES,
        skip_done=dict(dir=dirs['CRF'], split_size=2, skipped=0))
    metric.process({}, samples(dirs))
    assert set(metric.evaluate(2)) == ALL_KEYS
    assert not [m for m, _ in logs if 'images' in m]


# --------------------------------------------------------------- errors


def test_missing_or_bad_label_files_are_named(tmp_path, tables):
    dirs = paths(str(tmp_path))
    write_labels(dirs)
    missing = osp.join(dirs['CRF'], 'im2.png')
    os.remove(missing)
    metric = build(dirs)
    metric.process({}, samples(dirs))
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        metric.evaluate(2)
    # (a failed evaluate keeps its results: a fresh metric each time)

    save_label_png(missing, np.zeros((3, 3), np.uint8))  # wrong size
    metric = build(dirs)
    metric.process({}, samples(dirs))
    with pytest.raises(ValueError, match=re.escape(missing) + '.*size'):
        metric.evaluate(2)

    save_label_png(missing, np.full((2, 3), 7, np.uint8))  # unknown id
    metric = build(dirs)
    metric.process({}, samples(dirs))
    with pytest.raises(ValueError, match=r'outside 0\.\.2.*' +
                       re.escape(missing)):
        metric.evaluate(2)


def test_missing_or_bad_ground_truth_is_named(tmp_path):
    dirs = paths(str(tmp_path))
    write_gt(dirs)
    gt = osp.join(dirs['gt'], 'im2.png')
    os.remove(gt)
    metric = build()
    with pytest.raises(FileNotFoundError, match=re.escape(gt)):
        metric.process({}, samples(dirs, 'seg_map_path'))
    # a ground truth id beyond the classes
    batch = samples(dirs)
    batch[0]['gt_sem_seg']['data'][0, 0, 0] = 5
    with pytest.raises(ValueError, match=r'\[5\].*CAM of im1'):
        build().process({}, batch)


def test_predictions_of_a_wrong_size_are_named():
    batch = samples(None)
    batch[1]['pred_sem_seg']['data'] = torch.zeros(1, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match='RW of im2'):
        build().process({}, batch)
    batch = samples(None)
    batch[0]['cams'] = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match='CAM of im1'):
        build().process({}, batch)


def test_bad_configuration():
    with pytest.raises(ValueError, match='nothing to score'):
        METRICS.build(
            dict(type='PseudoLabelMetric', cam_bg_threshold=None,
                 pred_name=None))
    for name in ('CAM', 'RW'):
        with pytest.raises(ValueError, match=rf"\['{name}'\] are taken"):
            METRICS.build(
                dict(type='PseudoLabelMetric', label_dirs={name: 'x'}))
    # the prediction column may not take the CAM column's name
    with pytest.raises(ValueError, match=r"\['CAM'\] are taken"):
        METRICS.build(dict(type='PseudoLabelMetric', pred_name='CAM'))
    # ... which are free when their column is left out
    assert METRICS.build(
        dict(
            type='PseudoLabelMetric',
            cam_bg_threshold=None,
            pred_name='CAM',
            label_dirs=dict(RW='x'))).methods == ['CAM', 'RW']
    for folder in (None, '', 3):
        with pytest.raises(ValueError, match=r"label_dirs\['X'\] must be a"):
            METRICS.build(
                dict(type='PseudoLabelMetric', label_dirs=dict(X=folder)))


def test_samples_without_what_a_column_needs_are_named():
    with pytest.raises(KeyError, match='im1 has no CAMs'):
        build().process({}, samples(None, cams=False))
    batch = samples(None)
    del batch[0]['cam_labels']
    with pytest.raises(KeyError, match='im1 has no CAMs'):
        build().process({}, batch)
    with pytest.raises(KeyError, match='im1 has no pred_sem_seg'):
        build().process({}, samples(None, pred=False))
    with pytest.raises(KeyError, match='im1 has neither gt_sem_seg nor '
                       'seg_map_path'):
        build().process({}, samples(None, gt_source=None))


def test_held_out_images_are_left_out_of_every_column(tmp_path, tables):
    """A held-out image (where settings were chosen) is scored nowhere: the
    figures are im1's alone, against the numpy reference."""
    dirs = paths(str(tmp_path))
    write_gt(dirs)
    metric = build(dirs)
    for s in samples(dirs):
        s['holdout'] = s['img_path'].endswith('im2.jpg')
        metric.process({}, [s])
    write_labels(dirs)
    os.remove(osp.join(dirs['CRF'], 'im2.png'))  # never read
    result = metric.evaluate(2)
    assert set(result) == ALL_KEYS  # not a "subset" of the split
    k = len(CLASSES)
    only_im1 = {
        'CAM': np_iou([(np_cam_label(*CAMS['im1'], 0.2), GT['im1'])], k),
        'RW': np_iou([(RW['im1'], GT['im1'])], k),
        'RW+dCRF': np_iou([(CRF['im1'], GT['im1'])], k),
    }
    for name, ious in only_im1.items():
        assert result[f'{name}/mIoU'] == pytest.approx(miou(ious)), name

# Copyright (c) mmaff contributors. All rights reserved.
"""PseudoLabelMetric against confusion numbers worked out by hand on two
tiny 2 x 3 images with classes (background, a, b)."""
import logging
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch

import mmaff  # noqa: F401  (applies the environment fixes first)
from mmaff.evaluation.metrics import pseudo_label_metric as plm_module
from mmaff.registry import METRICS
from mmaff.utils import register_all_modules
from mmaff.utils.io import save_cam_file, save_label_png

register_all_modules()

CLASSES = ('background', 'a', 'b')
GT = {
    'im1': np.array([[0, 1, 1], [0, 255, 2]], np.uint8),
    'im2': np.array([[2, 2, 0], [1, 0, 0]], np.uint8),
}
# im2's image-level labels name class 2 only (its CAM file has K = 1).
LABELS = {'im1': (1, 2), 'im2': (2, )}
RW = {
    'im1': np.array([[0, 1, 0], [1, 1, 2]], np.uint8),
    'im2': np.array([[2, 0, 0], [1, 1, 0]], np.uint8),
}
CRF = {
    'im1': np.array([[0, 1, 1], [0, 0, 2]], np.uint8),
    'im2': np.array([[2, 2, 0], [1, 0, 1]], np.uint8),
}
# CAM files: im1 has CAMs of both classes, im2 only of class 2 (K = 1).
CAMS = {
    'im1': (np.array([[[0.1, 0.9, 0.5], [0.3, 0.0, 0.0]],
                      [[0.0, 0.1, 0.6], [0.1, 0.7, 0.9]]]), [1, 2]),
    'im2': (np.array([[[0.8, 0.1, 0.0], [0.3, 0.15, 0.0]]]), [2]),
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


def paths(root):
    return dict(
        gt=osp.join(root, 'gt'),
        RW=osp.join(root, 'rw'),
        CRF=osp.join(root, 'crf'),
        cams=osp.join(root, 'cams'))


def write_files(root):
    dirs = paths(root)
    for img_id in GT:
        save_label_png(osp.join(dirs['gt'], img_id + '.png'), GT[img_id])
        save_label_png(osp.join(dirs['RW'], img_id + '.png'), RW[img_id])
        save_label_png(osp.join(dirs['CRF'], img_id + '.png'), CRF[img_id])
        cams, labels = CAMS[img_id]
        save_cam_file(osp.join(dirs['cams'], img_id + '.npz'), cams, labels)
    return dirs


def samples(dirs, with_path=True):
    out = []
    for img_id, gt in GT.items():
        s = dict(
            img_path=f'/data/JPEGImages/{img_id}.jpg',
            img_labels=LABELS[img_id],
            gt_sem_seg=dict(data=torch.from_numpy(gt)[None].long()))
        if with_path:
            s['seg_map_path'] = osp.join(dirs['gt'], img_id + '.png')
        out.append(s)
    return out


def build(dirs, **kw):
    cfg = dict(
        type='PseudoLabelMetric',
        cam_dir=dirs['cams'],
        label_dirs={
            'RW': dirs['RW'],
            'RW+dCRF': dirs['CRF']
        })
    cfg.update(kw)
    metric = METRICS.build(cfg)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


@pytest.mark.parametrize('with_path', [True, False])
def test_metric_matches_hand_computed_confusion(tmp_path, monkeypatch,
                                                with_path):
    dirs = paths(str(tmp_path))
    metric = build(dirs)
    # process runs before the hook writes the files: it must not read them
    for s in samples(dirs, with_path):
        metric.process({}, [s])
    assert not osp.exists(dirs['RW'])
    write_files(str(tmp_path))
    tables = []
    monkeypatch.setattr(plm_module, 'print_iou_table',
                        lambda cols, names: tables.append((cols, names)))
    result = metric.evaluate(2)
    assert set(result) == {'CAM/mIoU', 'RW/mIoU', 'RW+dCRF/mIoU'}
    for name, ious in EXPECTED_IOU.items():
        assert result[f'{name}/mIoU'] == pytest.approx(
            round(np.mean(ious) * 100, 2))
    # one table, one column per method, in order
    (cols, names), = tables
    assert list(names) == list(CLASSES)
    assert list(cols) == ['CAM', 'RW', 'RW+dCRF']
    for name, ious in EXPECTED_IOU.items():
        np.testing.assert_allclose(cols[name], ious)


def test_metric_without_cam_dir_and_with_absent_classes(tmp_path):
    dirs = write_files(str(tmp_path))
    metric = METRICS.build(
        dict(type='PseudoLabelMetric', label_dirs={'RW': dirs['RW']}))
    metric.dataset_meta = dict(classes=CLASSES + ('c', ))  # c never seen
    for s in samples(dirs):
        s.pop('img_labels')  # only needed for CAM files
        metric.process({}, [s])
    result = metric.evaluate(2)
    assert set(result) == {'RW/mIoU'}
    # the unseen class is NaN and left out of the mean
    assert result['RW/mIoU'] == pytest.approx(
        round(np.mean(EXPECTED_IOU['RW']) * 100, 2))


def test_metric_cam_threshold(tmp_path):
    dirs = write_files(str(tmp_path))
    # threshold 0.95: every CAM pixel is background
    metric = build(dirs, cam_bg_threshold=0.95, label_dirs=None)
    for s in samples(dirs):
        metric.process({}, [s])
    result = metric.evaluate(2)
    # conf: gt0 -> 5 px all right; gt1 -> 3 px, gt2 -> 3 px all called 0
    assert result == {'CAM/mIoU': pytest.approx(round(5 / 11 / 3 * 100, 2))}


def test_missing_or_bad_label_files_are_named(tmp_path):
    dirs = write_files(str(tmp_path))
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
    with pytest.raises(ValueError, match=re.escape(missing)):
        metric.evaluate(2)

    save_label_png(missing, np.full((2, 3), 7, np.uint8))  # unknown id
    metric = build(dirs)
    metric.process({}, samples(dirs))
    with pytest.raises(ValueError, match=re.escape(missing)):
        metric.evaluate(2)

    cam = osp.join(dirs['cams'], 'im1.npz')
    os.remove(cam)
    metric = build(dirs)
    metric.process({}, samples(dirs))
    with pytest.raises(FileNotFoundError, match=re.escape(cam)):
        metric.evaluate(2)


def test_bad_configuration_and_samples(tmp_path):
    with pytest.raises(ValueError, match='nothing to score'):
        METRICS.build(dict(type='PseudoLabelMetric'))
    with pytest.raises(ValueError, match="'CAM' is taken"):
        METRICS.build(
            dict(
                type='PseudoLabelMetric',
                cam_dir='c',
                label_dirs=dict(CAM='x')))
    with pytest.raises(ValueError, match='must be a folder'):
        METRICS.build(dict(type='PseudoLabelMetric', label_dirs=dict(RW=None)))
    metric = METRICS.build(dict(type='PseudoLabelMetric', cam_dir='c'))
    with pytest.raises(KeyError, match='img_labels'):
        metric.process({}, [dict(img_path='a/b.jpg', seg_map_path='x')])
    with pytest.raises(KeyError, match='neither seg_map_path nor'):
        metric.process({}, [dict(img_path='a/b.jpg', img_labels=(1, ))])


def test_cam_file_lacking_an_image_class_is_named(tmp_path):
    dirs = write_files(str(tmp_path))
    metric = build(dirs, label_dirs=None)
    batch = samples(dirs)
    batch[1]['img_labels'] = (1, 2)  # the CAM file of im2 has class 2 only
    metric.process({}, batch)
    cam = osp.join(dirs['cams'], 'im2.npz')
    with pytest.raises(ValueError, match=re.escape(cam) + r'.*\[1\]'):
        metric.evaluate(2)


def test_subset_left_by_skip_done_is_said(tmp_path, monkeypatch):
    dirs = write_files(str(tmp_path))
    logs = []
    from mmaff.evaluation.metrics import cam_metric
    monkeypatch.setattr(cam_metric, 'print_log',
                        lambda msg, *a, **kw: logs.append((msg, kw)))
    metric = build(dirs)
    metric.dataset_meta = dict(
        classes=CLASSES,
        skip_done=dict(dir=dirs['RW'], split_size=7, skipped=5))
    metric.process({}, samples(dirs))
    result = metric.evaluate(2)
    assert result['num_images'] == 2 and result['subset_of'] == 7
    assert result['RW/mIoU'] == pytest.approx(
        round(np.mean(EXPECTED_IOU['RW']) * 100, 2))
    warned = [kw for m, kw in logs if '2 of 7 images' in m]
    assert len(warned) == 1 and warned[0].get('level') == logging.WARNING
    # the whole set: the usual keys only
    metric = build(dirs)
    metric.process({}, samples(dirs))
    assert set(metric.evaluate(2)) == {'CAM/mIoU', 'RW/mIoU', 'RW+dCRF/mIoU'}

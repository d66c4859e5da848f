# Copyright (c) mmaff contributors. All rights reserved.
"""``tools/measure_scale.py`` runs every stage and its report adds up.

The tool is run as a user runs it (a subprocess from the repository root),
on tiny images so that it takes minutes: every one of the six stages, each
in its own process, with the project's real configs and random weights.
The report is checked against what the stages must have produced and the
totals against the per-image figures.
"""
import importlib.util
import json
import os.path as osp

import numpy as np

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
TOOL = osp.join(REPO, 'projects/coco2014/tools/measure_scale.py')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_is_measured_and_totals_add_up(tmp_path):
    run_tool = _load('mmaff_testing',
                     osp.join(REPO, 'tests/mmaff_testing.py')).run_tool_process
    out_file = tmp_path / 'scale.json'
    estimate = 1000
    # batch 2: DeepLabV3's image-pool BatchNorm needs 2 samples in training
    run_tool([
        TOOL, '--size', '64', '--num-images', '2', '--train-iters', '1',
        '--batch-size', '2', '--estimate-images',
        str(estimate), '--out',
        str(out_file)
    ],
             cwd=REPO,
             timeout=1800)
    report = json.loads(out_file.read_text())
    assert report['size'] == 64 and report['num_images'] == 2
    stages = {s['stage']: s for s in report['stages']}
    assert list(stages) == [
        'cam_train', 'cam_export', 'aff_train', 'rw_export', 'seg_train',
        'seg_test'
    ]
    for name in ('cam_train', 'aff_train', 'seg_train'):
        s = stages[name]
        assert s['iters'] == 1 and s['batch_size'] == 2
        assert s['s_per_iter'] > 0
        # a ResNet-38 / ResNet-101 checkpoint is hundreds of MiB
        assert 100 < s['checkpoint_mib'] < 5000
    for name in ('cam_export', 'rw_export', 'seg_test'):
        assert stages[name]['images'] == 2 and stages[name]['s_per_image'] > 0
    for s in stages.values():
        # more than the imports alone; a process of this size on 64 px
        assert 300 < s['peak_rss_mib'] < 24 * 1024
    cam = stages['cam_export']
    for key in ('cams_bytes_per_image', 'conf_bytes_per_image',
                'cams_float16_bytes_per_image', 'cams_uint8_bytes_per_image'):
        assert cam[key] > 0
    # the COCO config stores uint8: the files are the uint8 re-encoding
    assert cam['cams_bytes_per_image'] == cam['cams_uint8_bytes_per_image']
    rw = stages['rw_export']
    assert rw['pseudo_rw_bytes_per_image'] > 0
    assert rw['pseudo_rw_crf_bytes_per_image'] > 0

    # totals = per-image figures x the estimated number of images
    est = report['estimate']
    assert est['images'] == estimate
    for s in report['stages']:
        if 's_per_image' in s:
            assert np.isclose(est[f"{s['stage']}_hours"],
                              s['s_per_image'] * estimate / 3600)
        for key, value in s.items():
            if key.endswith('_bytes_per_image'):
                gb = key.replace('_bytes_per_image', '_gb')
                assert np.isclose(est[gb], value * estimate / 1e9)
    synthetic = report['cam_files_synthetic']
    assert synthetic['size'] == 64
    assert np.isclose(est['cams_uint8_synthetic_gb'],
                      synthetic['uint8_bytes_per_image'] * estimate / 1e9)


def test_synthetic_cam_files_uint8_is_smaller_and_faithful(tmp_path):
    """The synthetic CAMs behind the README's size table: the uint8 file
    is several times smaller than float16 at COCO's size."""
    tool = _load('measure_scale', TOOL)
    sizes = tool.synthetic_cam_files(320)
    assert sizes['size'] == 320 and sizes['labels'] == 3
    assert sizes['float16_bytes_per_image'] > \
        4 * sizes['uint8_bytes_per_image'] > 0

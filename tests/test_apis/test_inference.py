# Copyright (c) mmaff contributors. All rights reserved.
"""The inference API gives the same CAMs and labels as the export path
(tools/test.py with CAMExportHook, then with RandomWalkHook)."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mmaff  # noqa: F401
from mmaff.apis import inference_cams, inference_pseudo_label, init_model
from mmaff.utils.io import load_cam_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _run(args):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run(
        [sys.executable] + args, cwd=REPO, env=env, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('apis')
    data = root / 'data'
    _run([
        'tools/dataset_converters/make_demo_dataset.py',
        str(data), '--num-train', '3', '--num-val', '1', '--size', '64'
    ])
    cam_cfg = root / 'cam.py'
    cam_cfg.write_text(f"""
_base_ = '{REPO}/configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'
handover_root = '{root}'
val_dataloader = dict(dataset=dict(data_root='{data}'))
test_dataloader = val_dataloader
""")
    aff_cfg = root / 'aff.py'
    aff_cfg.write_text(f"""
_base_ = '{REPO}/configs/demo/affinitynet_r18-d8_1xb8-1k_demo-96x96.py'
handover_root = '{root}'
model = dict(test_cfg=dict(alpha=0.6, steps=256))
test_dataloader = dict(dataset=dict(data_root='{data}'))
""")
    # randomly initialised models, saved as published (tensors only)
    torch.manual_seed(0)
    ckpts = {}
    for name, cfg in (('cam', cam_cfg), ('aff', aff_cfg)):
        model = init_model(str(cfg))
        model.init_weights()
        path = root / f'{name}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
        ckpts[name] = str(path)
    _run(['tools/test.py', str(cam_cfg), ckpts['cam'], '--work-dir',
          str(root / 'w1')])
    _run(['tools/test.py', str(aff_cfg), ckpts['aff'], '--work-dir',
          str(root / 'w2')])
    ids = (data / 'ImageSets/Segmentation/trainaug.txt').read_text().split()
    return root, data, cam_cfg, aff_cfg, ckpts, ids


def test_api_matches_export_path(exported):
    root, data, cam_cfg, aff_cfg, ckpts, ids = exported
    cam_model = init_model(str(cam_cfg), ckpts['cam'])
    aff_model = init_model(str(aff_cfg), ckpts['aff'])
    from mmaff.datasets import labels_from_xml
    classes = (data / 'classes.txt').read_text().split()
    for i in ids:
        img = str(data / 'JPEGImages' / f'{i}.jpg')
        labels = labels_from_xml(str(data / 'Annotations' / f'{i}.xml'),
                                 classes)
        cams, lab = inference_cams(cam_model, img, labels)
        ref, ref_lab = load_cam_file(str(root / 'cams' / f'{i}.npz'))
        assert lab == ref_lab.tolist()
        # equal up to one float16 step (thread counts change fp32 sums)
        np.testing.assert_allclose(cams, ref, rtol=0, atol=1e-3)
        # the config's refiner (the demo's dCRF, bilateral sxy 20), by
        # name and given explicitly
        out = inference_pseudo_label(
            cam_model, aff_model, img, labels, refiner='config')
        rw = np.array(Image.open(root / 'pseudo_rw' / f'{i}.png'))
        rw_crf = np.array(Image.open(root / 'pseudo_rw_crf' / f'{i}.png'))
        np.testing.assert_array_equal(out['rw'], rw)
        np.testing.assert_array_equal(out['rw_crf'], rw_crf)
        same = inference_pseudo_label(
            cam_model, aff_model, img, labels,
            refiner=dict(type='DenseCRF', bilateral_sxy=20))
        np.testing.assert_array_equal(same['rw_crf'], rw_crf)
        assert 'rw_crf' not in inference_pseudo_label(
            cam_model, aff_model, img, labels)
        par = inference_pseudo_label(
            cam_model, aff_model, img, labels, refiner=dict(type='PAR'))
        np.testing.assert_array_equal(par['rw'], rw)
        assert par['rw_crf'].shape == rw_crf.shape


def test_published_model_loads_weights_only_and_training_ckpt_does_not(
        exported, tmp_path):
    _, _, cam_cfg, _, ckpts, _ = exported
    from mmengine.logging import HistoryBuffer
    state = torch.load(ckpts['cam'], weights_only=True)
    state['message_hub'] = HistoryBuffer()  # what training checkpoints hold
    bad = tmp_path / 'train_ckpt.pth'
    torch.save(state, bad)
    with pytest.raises(Exception, match='weights_only|Unsupported global'):
        init_model(str(cam_cfg), str(bad))
    model = init_model(str(cam_cfg), str(bad), weights_only=False)
    ref = init_model(str(cam_cfg), ckpts['cam'])
    for (k, a), (_, b) in zip(model.state_dict().items(),
                              ref.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)

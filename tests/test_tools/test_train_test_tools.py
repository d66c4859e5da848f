# Copyright (c) mmaff contributors. All rights reserved.
"""The standard tools as subprocesses: train -> resume -> test -> publish,
and a 2-process gloo run of dist_train.sh."""
import glob
import hashlib
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmaff_testing import DEMO_AFF, DEMO_SEG

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(args, **kw):
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    env.update(kw.pop('env', {}))
    proc = subprocess.run(
        args,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        **kw)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


@pytest.fixture(scope='module')
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('tools')
    data = root / 'data'
    _run([
        PY, 'tools/dataset_converters/make_demo_dataset.py',
        str(data), '--num-train', '8', '--num-val', '2', '--size', '64'
    ])
    cfg = root / 'cam_tiny.py'
    cfg.write_text(f"""
_base_ = '{REPO}/configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'
data_root = '{data}'
train_dataloader = dict(batch_size=4, num_workers=0,
                        persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root,
                      ann_file='ImageSets/Segmentation/val.txt'))
test_dataloader = val_dataloader
model = dict(
    test_cfg=dict(scales=(1.0, 0.5), flip=True))
train_cfg = dict(max_iters=4, val_interval=100)
param_scheduler = [dict(type='PolyLR', power=0.9, begin=0, end=6,
                        by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=5),
                     logger=dict(interval=1))
handover_root = '{root}/handovers'
""")
    return root, data, cfg


def test_train_resume_test_publish(tiny_setup):
    root, data, cfg = tiny_setup
    work = root / 'work'
    out = _run([PY, 'tools/train.py', str(cfg), '--work-dir', str(work)])
    assert osp.isfile(work / 'iter_4.pth'), out[-3000:]
    # resume from the latest checkpoint and go on to 6 iterations
    out = _run([
        PY, 'tools/train.py',
        str(cfg), '--work-dir',
        str(work), '--resume', '--cfg-options', 'train_cfg.max_iters=6'
    ])
    assert 'resumed' in out.lower(), out[-3000:]
    assert osp.isfile(work / 'iter_6.pth')
    assert 'Iter(train) [5/6]' in out and 'Iter(train) [1/6]' not in out
    ckpt = torch.load(work / 'iter_6.pth', weights_only=False)
    assert ckpt['meta']['iter'] == 6

    # test: scores the CAMs; the hand-over option moves the export
    cams = root / 'cams'
    out = _run([
        PY, 'tools/test.py',
        str(cfg),
        str(work / 'iter_6.pth'), '--work-dir',
        str(root / 'test'), '--cfg-options', f'handovers.cams={cams}'
    ])
    assert re.search(r'mIoU: \d+\.\d+', out), out[-3000:]
    val_ids = (data / 'ImageSets/Segmentation/val.txt').read_text().split()
    assert sorted(os.listdir(cams)) == sorted(i + '.npz' for i in val_ids)
    from mmaff.datasets import labels_from_xml
    from mmaff.utils.io import load_cam_file
    classes = (data / 'classes.txt').read_text().split()
    for i in val_ids:
        labels = labels_from_xml(
            str(data / 'Annotations' / f'{i}.xml'), classes)
        c, lab = load_cam_file(str(cams / f'{i}.npz'), (64, 64), labels)
        assert lab.tolist() == labels
        assert c.min() >= 0 and c.max() <= 1

    # publish: no optimizer, hash of the written file in its name,
    # loads with weights_only=True and into the model
    published = _run([
        PY, 'tools/misc/publish_model.py',
        str(work / 'iter_6.pth'),
        str(root / 'cam_tiny.pth')
    ]).strip().splitlines()[-1]
    m = re.fullmatch(r'.*/cam_tiny-([0-9a-f]{8})\.pth', published)
    assert m, published
    with open(published, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest()[:8] == m.group(1)
    pub = torch.load(published, weights_only=True)
    assert set(pub) == {'state_dict', 'meta'}
    for k, v in pub['state_dict'].items():
        torch.testing.assert_close(v, ckpt['state_dict'][k])
    # tools/test.py also works from the published model
    out = _run([
        PY, 'tools/test.py',
        str(cfg), published, '--work-dir',
        str(root / 'test2'), '--cfg-options', f'handover_root={root}',
        'handovers.cams={handover_root}/cams2'
    ])
    for i in val_ids:
        a = np.load(cams / f'{i}.npz')['cams']
        b = np.load(root / 'cams2' / f'{i}.npz')['cams']
        np.testing.assert_array_equal(a, b)


def test_print_config(tiny_setup):
    _, _, cfg = tiny_setup
    out = _run([PY, 'tools/misc/print_config.py', str(cfg)])
    assert "default_scope = 'mmaff'" in out
    assert "type='CAMClassifier'" in out


def test_dist_train_two_cpu_processes(tiny_setup):
    root, _, cfg = tiny_setup
    work = root / 'dist'
    out = _run([
        'bash', 'tools/dist_train.sh',
        str(cfg), '2', '--work-dir',
        str(work), '--cfg-options', 'train_cfg.max_iters=2'
    ],
               env=dict(PORT=str(_free_port()), PYTHON=PY))
    assert osp.isfile(work / 'iter_2.pth'), out[-4000:]
    logs = glob.glob(str(work / '*' / '*.log'))
    assert len(logs) == 1  # rank 0 writes the log
    text = open(logs[0]).read()
    assert 'Distributed training: True' in text
    assert 'GPU number: 2' in text  # mmengine's name for the world size
    assert "dist_cfg=dict(backend='gloo')" in text


def _fake_labels(data, out_dir, split, values):
    from PIL import Image

    from mmaff.utils.io import save_label_png
    rng = np.random.default_rng(0)
    for i in (data / 'ImageSets/Segmentation' / split).read_text().split():
        with Image.open(data / 'JPEGImages' / f'{i}.jpg') as img:
            w, h = img.size
        save_label_png(str(out_dir / f'{i}.png'), rng.choice(values, (h, w)))


@pytest.mark.parametrize('stage', ['aff', 'seg'])
def test_generated_labels_train_through_tools(tiny_setup, stage):
    """AffinityNet (on confident-region maps) and mmseg's EncoderDecoder
    (on pseudo labels) train through tools/train.py on PseudoLabelDataset."""
    root, data, _ = tiny_setup
    labels = root / f'{stage}_labels'
    labels.mkdir()
    _fake_labels(data, labels, 'trainaug.txt',
                 [0, 1, 2, 255] if stage == 'aff' else [0, 1, 2])
    base = osp.basename(DEMO_AFF if stage == 'aff' else DEMO_SEG)
    cfg = root / f'{stage}_tiny.py'
    cfg.write_text(f"""
_base_ = '{REPO}/configs/demo/{base}'
train_dataloader = dict(batch_size=2, num_workers=0,
                        persistent_workers=False,
                        dataset=dict(data_root='{data}',
                                     label_dir='{labels}'))
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(logger=dict(interval=1))
""" + (f"model = dict(backbone=dict(init_cfg=None))\n"
       f"val_dataloader = dict(dataset=dict(data_root='{data}'))\n"
       f"test_dataloader = val_dataloader\n" if stage == 'seg' else ''))
    work = root / f'{stage}_work'
    out = _run([PY, 'tools/train.py', str(cfg), '--work-dir', str(work)])
    assert osp.isfile(work / 'iter_2.pth'), out[-3000:]
    key = 'loss_aff' if stage == 'aff' else 'decode.loss_ce'
    losses = re.findall(key.replace('.', r'\.') + r': (\d+\.\d+)', out)
    assert len(losses) == 2 and all(np.isfinite(float(v)) for v in losses)

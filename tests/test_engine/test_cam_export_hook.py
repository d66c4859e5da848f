# Copyright (c) mmaff contributors. All rights reserved.
"""CAMExportHook: writes, skips finished files, cleans up killed runs."""
import os
import os.path as osp
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import mmaff  # noqa: F401
from mmaff.engine.hooks import CAMExportHook
from mmaff.engine.hooks import export_hook as cam_module
from mmaff.utils import io as mio
from mmaff.utils.io import load_cam_file

NUM_CLASSES = 5
SHAPE = (12, 17)
# image id -> label ids
IMAGES = {'a': (1, 4), 'b': (2, ), 'c': ()}


def fake_sample(img_id, labels, seed):
    gen = torch.Generator().manual_seed(seed)
    sample = SegDataSample(
        metainfo=dict(
            img_path=f'/data/JPEGImages/{img_id}.jpg',
            ori_shape=SHAPE,
            img_labels=tuple(labels)))
    sample.pred_cams = PixelData(
        data=torch.rand(NUM_CLASSES, *SHAPE, generator=gen))
    return sample


def run_hook(hook, samples):
    """Drive the hook like mmengine's TestLoop (one sample a batch)."""
    runner = SimpleNamespace()
    hook.before_test_epoch(runner)
    for idx, sample in enumerate(samples):
        hook.after_test_iter(runner, idx, None, [sample])
    hook.after_test_epoch(runner, {})


@pytest.fixture
def logs(monkeypatch):
    lines = []
    monkeypatch.setattr(
        cam_module,
        'print_log',
        lambda msg, logger=None, level=None: lines.append(msg),
        raising=False)
    return lines


def _bytes(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(osp.join(folder, name), 'rb') as f:
            out[name] = f.read()
    return out


def test_existing_files_are_skipped_unless_overwrite(tmp_path, logs):
    out = str(tmp_path / 'cams')
    first = [
        fake_sample(i, lab, k) for k, (i, lab) in enumerate(IMAGES.items())
    ]
    run_hook(CAMExportHook(out), first)
    assert sorted(os.listdir(out)) == ['a.npz', 'b.npz', 'c.npz']
    for sample, (img_id, labels) in zip(first, IMAGES.items()):
        cams, got = load_cam_file(
            osp.join(out, img_id + '.npz'), SHAPE, labels)
        assert got.tolist() == list(labels)
        expected = sample.pred_cams.data[[c - 1 for c in labels]].numpy()
        np.testing.assert_allclose(cams, expected, atol=1e-3)
    assert logs[-1].startswith(f'CAMExportHook: 3 images, 3 written to {out}'
                               ', 0 skipped')

    # a re-run (other CAMs, one file removed) writes only the missing file
    before = _bytes(out)
    os.remove(osp.join(out, 'b.npz'))
    second = [
        fake_sample(i, lab, 10 + k)
        for k, (i, lab) in enumerate(IMAGES.items())
    ]
    run_hook(CAMExportHook(out), second)
    after = _bytes(out)
    assert after['a.npz'] == before['a.npz']
    assert after['c.npz'] == before['c.npz']
    assert after['b.npz'] != before['b.npz']
    assert logs[-1].startswith(f'CAMExportHook: 3 images, 1 written to {out}'
                               ', 2 skipped (files exist)')
    assert 'overwrite=True' in logs[-1]

    # overwrite=True rewrites every file
    run_hook(CAMExportHook(out, overwrite=True), first)
    assert _bytes(out) == before
    assert logs[-1].startswith('CAMExportHook: 3 images, 3 written')


def test_config_overwrite_option(tmp_path):
    from mmaff.registry import HOOKS
    hook = HOOKS.build(
        dict(type='CAMExportHook', out_dir=str(tmp_path), overwrite=True))
    assert hook.overwrite
    assert not HOOKS.build(dict(type='CAMExportHook',
                                out_dir=str(tmp_path))).overwrite


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_stale_temp_files_are_removed_at_the_start(tmp_path, logs):
    out = tmp_path / 'cams'
    out.mkdir()
    host = mio._host_tag()
    stale = out / f'.a.tmp-{host}-{_dead_pid()}-k1ll3d.npz'
    live = out / f'.b.tmp-{host}-{os.getpid()}-wr1t1ng.npz'
    for path in (stale, live):
        path.write_bytes(b'partial')
    hook = CAMExportHook(str(out))
    hook.before_test_epoch(SimpleNamespace())
    assert sorted(os.listdir(out)) == [live.name]  # a live writer's stays
    assert logs == [
        f'CAMExportHook: removed 1 temporary files of an interrupted run '
        f'from {out}'
    ]
    # a whole run leaves nothing but the outputs
    live.unlink()
    stale.write_bytes(b'partial')
    run_hook(hook, [fake_sample('a', (1, 4), 0)])
    assert os.listdir(out) == ['a.npz']


def test_uint8_files(tmp_path):
    """dtype='uint8' writes the quantised encoding, which reads back within
    half a quantisation step; other dtypes are refused."""
    out = str(tmp_path / 'cams')
    samples = [
        fake_sample(i, lab, k) for k, (i, lab) in enumerate(IMAGES.items())
    ]
    run_hook(CAMExportHook(out, dtype='uint8'), samples)
    for sample, (img_id, labels) in zip(samples, IMAGES.items()):
        path = osp.join(out, img_id + '.npz')
        with np.load(path) as data:
            assert 'cams_u8_delta' in data.files and 'cams' not in data.files
        cams, _ = load_cam_file(path, SHAPE, labels)
        expected = sample.pred_cams.data[[c - 1 for c in labels]].numpy()
        np.testing.assert_allclose(cams, expected, atol=0.5 / 255 + 1e-6)
    with pytest.raises(ValueError, match='dtype'):
        CAMExportHook(out, dtype='float32')

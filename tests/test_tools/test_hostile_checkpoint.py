# Copyright (c) mmaff contributors. All rights reserved.
"""No code runs from a checkpoint the user did not trust.

A hostile ``.pth`` (its pickle calls ``open(marker, 'w')``: harmless, it only
creates an empty marker file) goes through every real loading path as a
subprocess: ``tools/test.py``, ``tools/train.py --resume``, ``load_from``,
a backbone ``init_cfg=dict(type='Pretrained')``,
``tools/misc/publish_model.py`` and
``tools/analysis_tools/visualize_pipeline.py``. Each must fail, name the file
and the opt-in, and leave no marker. A real training checkpoint still
resumes and loads with every ``torch.load`` forced to ``weights_only=True``,
and the opt-in loads a file that needs full unpickling.
"""
import datetime
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from mmaff_testing import DEMO_AFF, DEMO_SEG

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PY = sys.executable
TRUST_ENV = 'MMAFF_TRUST_CHECKPOINTS'


class _CreatesMarker:
    """Unpickles to ``open(marker, 'w')``, i.e. creates an empty file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _run(args, env=None):
    full_env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    full_env.pop(TRUST_ENV, None)
    full_env.update(env or {})
    proc = subprocess.run(
        [PY] + [str(a) for a in args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _ok(args, env=None):
    rc, out = _run(args, env)
    assert rc == 0, out[-6000:]
    return out


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A demo dataset, a tiny CAM config and a real 2-iteration run."""
    root = tmp_path_factory.mktemp('hostile')
    data = root / 'data'
    _ok([
        'tools/dataset_converters/make_demo_dataset.py', data, '--num-train',
        '8', '--num-val', '2', '--size', '64'
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
model = dict(test_cfg=dict(scales=(1.0, ), flip=False))
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=5),
                     logger=dict(interval=1))
custom_hooks = []
test_evaluator = [dict(type='CAMMetric')]
""")
    work = root / 'work'
    _ok(['tools/train.py', cfg, '--work-dir', work])
    assert osp.isfile(work / 'iter_2.pth')
    return root, cfg, work


@pytest.fixture
def hostile(tmp_path):
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'BAD.pth'
    torch.save(
        dict(state_dict={}, meta=dict(payload=_CreatesMarker(marker))), bad)
    assert not marker.exists()
    return bad, marker


def test_payload_is_live(tmp_path):
    """The premise: fully unpickled, the hostile file creates its marker."""
    marker = tmp_path / 'pwned'
    bad = tmp_path / 'BAD.pth'
    torch.save(dict(meta=dict(payload=_CreatesMarker(marker))), bad)
    loaded = torch.load(bad, weights_only=False)
    loaded['meta']['payload'].close()
    assert marker.exists()


def _assert_refused(rc, out, bad, marker):
    assert rc != 0, out[-4000:]
    assert str(bad) in out, out[-4000:]
    assert f'{TRUST_ENV}=1' in out, out[-4000:]
    assert not marker.exists(), 'code from the checkpoint ran'


def _derived_config(path, base, extra):
    path.write_text(f"_base_ = '{base}'\n{extra}\n")
    return path


def test_tools_test_refuses(tiny, hostile, tmp_path):
    _, cfg, _ = tiny
    bad, marker = hostile
    rc, out = _run(
        ['tools/test.py', cfg, bad, '--work-dir', tmp_path / 'test'])
    _assert_refused(rc, out, bad, marker)


def test_resume_refuses(tiny, hostile, tmp_path):
    _, cfg, _ = tiny
    bad, marker = hostile
    work = tmp_path / 'work'
    work.mkdir()
    last = work / 'iter_2.pth'
    shutil.copy(bad, last)
    (work / 'last_checkpoint').write_text(str(last))
    rc, out = _run(['tools/train.py', cfg, '--work-dir', work, '--resume'])
    _assert_refused(rc, out, last, marker)
    assert not osp.exists(work / 'iter_4.pth')


def test_load_from_refuses(tiny, hostile, tmp_path):
    _, cfg, _ = tiny
    bad, marker = hostile
    derived = _derived_config(tmp_path / 'load_from.py', cfg,
                              f"load_from = '{bad}'")
    rc, out = _run(
        ['tools/train.py', derived, '--work-dir', tmp_path / 'work'])
    _assert_refused(rc, out, bad, marker)


def test_pretrained_init_cfg_refuses(tiny, hostile, tmp_path):
    _, cfg, _ = tiny
    bad, marker = hostile
    derived = _derived_config(
        tmp_path / 'pretrained.py', cfg,
        'model = dict(backbone=dict(init_cfg=dict(type="Pretrained", '
        f"checkpoint='{bad}')))")
    rc, out = _run(
        ['tools/train.py', derived, '--work-dir', tmp_path / 'work'])
    _assert_refused(rc, out, bad, marker)
    assert 'Pretrained' in out or 'init_weights' in out, out[-4000:]


def test_publish_model_refuses(hostile, tmp_path):
    bad, marker = hostile
    rc, out = _run(
        ['tools/misc/publish_model.py', bad, tmp_path / 'published.pth'])
    _assert_refused(rc, out, bad, marker)
    assert '--trust-checkpoint' in out
    assert not [f for f in os.listdir(tmp_path) if f.startswith('published')]


def test_visualize_pipeline_refuses(tiny, hostile, tmp_path):
    _, cfg, _ = tiny
    bad, marker = hostile
    grid = tmp_path / 'grid.png'
    rc, out = _run([
        'tools/analysis_tools/visualize_pipeline.py', cfg, bad,
        f'{REPO}/{DEMO_AFF}', bad, f'{REPO}/{DEMO_SEG}', bad, '--num', '1',
        '--out', grid
    ])
    _assert_refused(rc, out, bad, marker)
    assert not grid.exists()


def test_real_checkpoint_loads_without_opt_in(tiny, tmp_path):
    """Resume, load_from, test and publish of a checkpoint written by
    tools/train.py while torch refuses every full unpickling."""
    _, cfg, work = tiny
    safe_only = {'TORCH_FORCE_WEIGHTS_ONLY_LOAD': '1'}
    resumed = tmp_path / 'resumed'
    shutil.copytree(work, resumed)
    (resumed / 'last_checkpoint').write_text(str(resumed / 'iter_2.pth'))
    out = _ok([
        'tools/train.py', cfg, '--work-dir', resumed, '--resume',
        '--cfg-options', 'train_cfg.max_iters=4'
    ], safe_only)
    assert 'resumed' in out.lower(), out[-3000:]
    assert 'Iter(train) [3/4]' in out and 'Iter(train) [1/4]' not in out
    assert osp.isfile(resumed / 'iter_4.pth')

    derived = _derived_config(tmp_path / 'load_from.py', cfg,
                              f"load_from = '{work / 'iter_2.pth'}'")
    out = _ok(['tools/train.py', derived, '--work-dir', tmp_path / 'lf'],
              safe_only)
    assert 'Load checkpoint from' in out, out[-3000:]
    assert osp.isfile(tmp_path / 'lf' / 'iter_2.pth')

    out = _ok([
        'tools/test.py', cfg, resumed / 'iter_4.pth', '--work-dir',
        tmp_path / 'test'
    ], safe_only)
    assert 'mIoU' in out
    out = _ok([
        'tools/misc/publish_model.py', resumed / 'iter_4.pth',
        tmp_path / 'cam.pth'
    ], safe_only)
    published = out.strip().splitlines()[-1]
    assert set(torch.load(published,
                          weights_only=True)) == {'state_dict', 'meta'}


def test_opt_in_loads_untrusted_file(tiny, tmp_path):
    """A benign object that is not allow-listed: refused by default, fully
    unpickled with MMAFF_TRUST_CHECKPOINTS=1 or --trust-checkpoint."""
    _, cfg, work = tiny
    state = torch.load(work / 'iter_2.pth', weights_only=False)['state_dict']
    dated = tmp_path / 'dated.pth'
    torch.save(
        dict(state_dict=state, meta=dict(when=datetime.date(2024, 5, 17))),
        dated)
    rc, out = _run(
        ['tools/test.py', cfg, dated, '--work-dir', tmp_path / 'refused'])
    assert rc != 0 and str(dated) in out and TRUST_ENV in out, out[-3000:]
    assert 'datetime.date' in out

    out = _ok(
        ['tools/test.py', cfg, dated, '--work-dir', tmp_path / 'trusted'],
        {TRUST_ENV: '1'})
    assert 'mIoU' in out

    rc, out = _run(
        ['tools/misc/publish_model.py', dated, tmp_path / 'pub.pth'])
    assert rc != 0 and str(dated) in out
    out = _ok([
        'tools/misc/publish_model.py', dated, tmp_path / 'pub.pth',
        '--trust-checkpoint'
    ])
    published = torch.load(out.strip().splitlines()[-1], weights_only=True)
    assert published['meta'] == {}  # the date is no plain value: dropped
    assert set(published['state_dict']) == set(state)

# Copyright (c) mmaff contributors. All rights reserved.
"""tools/misc/check_dataset.py: every problem of a config's data, listed."""
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mmaff.utils.io import load_label_png, save_label_png

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'misc', 'check_dataset.py')
DEMO = osp.join(REPO, 'tools', 'dataset_converters', 'make_demo_dataset.py')


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def clean_data(tmp_path_factory):
    """The demo dataset: 4 train images (+ SegmentationClassAug), 2 val."""
    root = tmp_path_factory.mktemp('check') / 'data'
    _load(DEMO, 'make_demo_dataset_for_check').generate(
        str(root), num_train=4, num_val=2, size=64, show_progress=False)
    return root


@pytest.fixture
def data(clean_data, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(clean_data, root)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f"""
_base_ = '{REPO}/configs/demo/affinitynet-cam_r18-d8_1xb16-3k_demo-112x112.py'
data_root = '{root}'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root,
                      ann_file='ImageSets/Segmentation/val.txt'))
test_dataloader = val_dataloader
""")
    return root, str(cfg)


@pytest.fixture(scope='module')
def tool():
    return _load(TOOL, 'check_dataset_tool')


def _run(args):
    proc = subprocess.run(
        [sys.executable, TOOL] + args,
        cwd=REPO,
        env=dict(os.environ, PYTHONWARNINGS='ignore'),
        capture_output=True,
        text=True,
        timeout=300)
    return proc.returncode, proc.stdout


def _problems(out):
    """The problem lines of the tool's output (no bar, no summary)."""
    return [
        line for line in out.splitlines()
        if ': ' in line and not line.startswith(('checked ', '['))
    ]


def test_clean_dataset(tool, data, capsys):
    root, cfg = data
    assert tool.main([cfg, '--workers', '0']) == 0
    out = capsys.readouterr().out
    assert _problems(out) == []
    assert ('checked 6 images and 6 label maps (samples per split: train 4, '
            'val 2, test 2): no problem found') in out
    # a dataloader set to None is left out
    assert tool.main(
        [cfg, '--workers', '0', '--cfg-options', 'test_dataloader=None']) == 0
    assert 'train 4, val 2): no problem' in capsys.readouterr().out


def test_every_problem_is_listed(data):
    root, cfg = data
    # a truncated JPEG (train), a missing label map (train's
    # SegmentationClassAug), a label map of another size (val's
    # SegmentationClass), an id outside the 6 classes (train)
    jpg = root / 'JPEGImages' / 'demo_00001.jpg'
    content = jpg.read_bytes()
    jpg.write_bytes(content[:len(content) // 2])
    missing = root / 'SegmentationClassAug' / 'demo_00002.png'
    missing.unlink()
    small = root / 'SegmentationClass' / 'demo_00005.png'
    save_label_png(str(small), np.zeros((60, 64), np.uint8))
    bad_id = root / 'SegmentationClassAug' / 'demo_00003.png'
    label = load_label_png(str(bad_id))
    label[0, 0] = 9
    save_label_png(str(bad_id), label)

    code, out = _run([cfg, '--workers', '2'])
    assert code == 1, out
    problems = _problems(out)
    assert len(problems) == 4, out
    expected = [
        (f'{jpg}: corrupt image', 'truncated'),
        (f'{missing}: label map not found', 'demo_00002.jpg'),
        (f'{bad_id}: label values [9] lie outside the class range 0..5', ''),
        (f'{small}: label size (60, 64) does not match the image size '
         '(64, 64)', ''),
    ]
    for start, part in expected:
        assert any(p.startswith(start) and part in p
                   for p in problems), (start, out)
    assert ('checked 6 images and 6 label maps (samples per split: train 4, '
            'val 2, test 2): 4 problems') in out
    assert '6/6' in out  # the progress bar


def test_datasets_that_cannot_be_built(tool, data, capsys):
    root, cfg = data
    # val lists an image that does not exist: the dataset cannot be built;
    # train is still checked, and its problems listed
    (root / 'JPEGImages' / 'demo_00005.jpg').unlink()
    (root / 'SegmentationClassAug' / 'demo_00000.png').unlink()
    assert tool.main([cfg, '--workers', '0']) == 1
    out = capsys.readouterr().out
    problems = _problems(out)
    assert len(problems) == 3, out
    for split in ('val', 'test'):
        assert any(
            p.startswith(f'{split}_dataloader.dataset: cannot be built')
            and 'demo_00005.jpg' in p for p in problems), out
    assert any(
        p.startswith(str(root / 'SegmentationClassAug' / 'demo_00000.png'))
        for p in problems), out
    assert '(samples per split: train 4): 3 problems' in out

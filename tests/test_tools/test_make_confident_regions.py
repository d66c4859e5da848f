# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from mmaff.ops.confident import (confident_region_map, confident_region_stats,
                                 summarize_confident_stats)
from mmaff.utils.io import load_label_png, save_cam_file, save_label_png

TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'make_confident_regions.py')


@pytest.fixture(scope='module')
def tool():
    name = 'make_confident_regions_tool'
    spec = importlib.util.spec_from_file_location(name, TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so that worker processes can unpickle it
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


# id -> (height, width, label ids)
IMAGES = {
    'a': (30, 41, [3]),
    'b': (24, 24, [5, 12]),
    'c': (19, 33, []),
    'd': (40, 28, [1, 20]),
}


def _make_image(height, width, ids, seed):
    """An image with one coloured rectangle per class + CAM blobs on them."""
    rng = np.random.default_rng(seed)
    img = np.clip(
        np.full(
            (height, width, 3), 120.0) + rng.normal(0, 5, (height, width, 3)),
        0, 255)
    yy, xx = np.mgrid[:height, :width]
    cams, gt = [], np.zeros((height, width), np.uint8)
    for k, cls in enumerate(ids):
        cy = height * (k + 1) // (len(ids) + 1)
        cx = width * (k + 1) // (len(ids) + 1)
        box = (abs(yy - cy) <= height // 5) & (abs(xx - cx) <= width // 5)
        img[box] = rng.integers(0, 255, 3)
        gt[box] = cls
        cam = np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * (height / 5)**2))
        cams.append(cam / (cam.max() + 1e-5))
    gt[0, :3] = 255  # some ignored ground truth
    cams = np.stack(cams) if cams else np.zeros((0, height, width))
    return img.astype(np.uint8), cams.astype(np.float32), gt


@pytest.fixture()
def dataset(tmp_path):
    img_dir, cam_dir, gt_dir = (tmp_path / n for n in ('img', 'cam', 'gt'))
    for d in (img_dir, cam_dir, gt_dir):
        d.mkdir()
    samples, truth = [], {}
    for seed, (img_id, (h, w, ids)) in enumerate(IMAGES.items()):
        img, cams, gt = _make_image(h, w, ids, seed)
        Image.fromarray(img).save(img_dir / f'{img_id}.png')
        save_cam_file(str(cam_dir / f'{img_id}.npz'), cams, ids)
        save_label_png(str(gt_dir / f'{img_id}.png'), gt)
        samples.append(
            dict(
                img_id=img_id,
                img_path=str(img_dir / f'{img_id}.png'),
                img_labels=list(ids)))
        # expected map: CAMs as the file stores them (float16)
        truth[img_id] = (img, cams.astype(np.float16).astype(np.float32), ids,
                         gt)
    return dict(
        root=tmp_path,
        img_dir=str(img_dir),
        cam_dir=str(cam_dir),
        gt_dir=str(gt_dir),
        samples=samples,
        truth=truth)


def _listing(folder):
    return sorted(os.listdir(folder)) if osp.isdir(folder) else []


def _mtimes(folder):
    return {
        n: os.stat(osp.join(folder, n)).st_mtime_ns
        for n in _listing(folder)
    }


def test_writes_expected_maps_and_resumes(tool, dataset):
    out = str(dataset['root'] / 'conf')
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 4 and res['skipped'] == 0
    assert res['stats'] is None
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    for img_id, (img, cams, ids, _) in dataset['truth'].items():
        written = load_label_png(osp.join(out, f'{img_id}.png'))
        expected = confident_region_map(img, cams, ids)
        np.testing.assert_array_equal(written, expected)
        assert set(np.unique(written).tolist()) <= {0, 255, *ids}
    assert (load_label_png(osp.join(out, 'c.png')) == 0).all()

    before = _mtimes(out)
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 0 and res['skipped'] == 4
    assert _mtimes(out) == before

    os.remove(osp.join(out, 'b.png'))
    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=2)
    assert res['processed'] == 1 and res['skipped'] == 3
    after = _mtimes(out)
    assert sorted(after) == sorted(before)
    assert all(after[n] == before[n] for n in after if n != 'b.png')


def test_workers_give_identical_bytes(tool, dataset):
    out0 = str(dataset['root'] / 'conf0')
    out2 = str(dataset['root'] / 'conf2')
    tool.run(dataset['samples'], dataset['cam_dir'], out0, workers=0)
    tool.run(
        dataset['samples'], dataset['cam_dir'], out2, workers=2, chunksize=1)
    assert _listing(out0) == _listing(out2) == [
        'a.png', 'b.png', 'c.png', 'd.png'
    ]
    for name in _listing(out0):
        with open(osp.join(out0, name), 'rb') as f0, \
                open(osp.join(out2, name), 'rb') as f2:
            assert f0.read() == f2.read()


def test_stats_with_ground_truth(tool, dataset):
    out = str(dataset['root'] / 'conf')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'])
    per_image = [
        confident_region_stats(confident_region_map(img, cams, ids), gt)
        for img, cams, ids, gt in dataset['truth'].values()
    ]
    expected = summarize_confident_stats(per_image)
    assert res['stats'] == pytest.approx(expected, nan_ok=True)
    assert res['stats']['pixels'] == sum(
        int((t[3] != 255).sum()) for t in dataset['truth'].values())
    path = osp.join(dataset['root'], 'confident_regions_stats.json')
    assert res['stats_path'] == path
    with open(path) as f:
        saved = json.load(f)
    assert saved['fg_precision'] == pytest.approx(expected['fg_precision'])
    assert saved['num_images'] == 4 and saved['alpha_low'] == 4
    # a resumed run (everything skipped) scores the existing maps
    custom = str(dataset['root'] / 'custom.json')
    res = tool.run(
        dataset['samples'],
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'],
        stats_out=custom)
    assert res['skipped'] == 4
    assert res['stats'] == pytest.approx(expected, nan_ok=True)
    assert osp.isfile(custom)


def _assert_no_output_for(out, img_id):
    names = _listing(out)
    assert f'{img_id}.png' not in names
    assert not [n for n in names if '.tmp' in n]


@pytest.mark.parametrize('workers', [0, 2])
def test_class_absent_from_image_labels(tool, dataset, workers):
    samples = [dict(s) for s in dataset['samples']]
    samples[1]['img_labels'] = [5]  # the CAM file also has class 12
    out = str(dataset['root'] / 'conf')
    cam = osp.join(dataset['cam_dir'], 'b.npz')
    with pytest.raises(RuntimeError) as info:
        tool.run(samples, dataset['cam_dir'], out, workers=workers)
    assert cam in str(info.value) and 'absent' in str(info.value)
    _assert_no_output_for(out, 'b')


def test_class_missing_from_cam_file(tool, dataset):
    samples = [dict(s) for s in dataset['samples']]
    samples[0]['img_labels'] = [3, 8]
    out = str(dataset['root'] / 'conf')
    with pytest.raises(RuntimeError, match=r'a\.npz: no CAM for .*\[8\]'):
        tool.run(samples, dataset['cam_dir'], out, workers=0)
    _assert_no_output_for(out, 'a')


def test_size_mismatch_and_corrupt_file(tool, dataset):
    out = str(dataset['root'] / 'conf')
    d_cam = osp.join(dataset['cam_dir'], 'd.npz')
    save_cam_file(d_cam, np.zeros((2, 40, 27), np.float32), [1, 20])
    with pytest.raises(RuntimeError) as info:
        tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert d_cam in str(info.value)
    assert 'does not match the image size' in str(info.value)
    _assert_no_output_for(out, 'd')

    # a corrupt file, in a worker process (a fresh output folder; 'd' left
    # out as it is still broken)
    out = str(dataset['root'] / 'conf_b')
    a_cam = osp.join(dataset['cam_dir'], 'a.npz')
    with open(a_cam, 'wb') as f:
        f.write(b'PK\x03\x04 this is not a zip archive')
    with pytest.raises(RuntimeError) as info:
        tool.run(
            dataset['samples'][:3],
            dataset['cam_dir'],
            out,
            workers=2,
            chunksize=1)
    assert a_cam in str(info.value) and 'corrupt' in str(info.value)
    _assert_no_output_for(out, 'a')


def test_bad_ground_truth_and_duplicate_ids(tool, dataset):
    out = str(dataset['root'] / 'conf')
    os.remove(osp.join(dataset['gt_dir'], 'c.png'))
    with pytest.raises(RuntimeError, match=r"image 'c'.*c\.png"):
        tool.run(
            dataset['samples'][2:3],
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'])
    _assert_no_output_for(out, 'c')
    with pytest.raises(ValueError, match=r"duplicate image ids.*'a'"):
        tool.run(dataset['samples'] + dataset['samples'][:1],
                 dataset['cam_dir'], out)


def test_command_line(tool, dataset):
    out = str(dataset['root'] / 'conf')
    common = [
        '--img-dir', dataset['img_dir'], '--cam-dir', dataset['cam_dir'],
        '--out-dir', out, '--img-suffix', '.png', '--workers', '0'
    ]
    split = dataset['root'] / 'split.txt'
    split.write_text('b\n\nd\n')
    res = tool.main(common + ['--split', str(split)])
    assert res['processed'] == 2
    assert _listing(out) == ['b.png', 'd.png']
    # without a split: every CAM file, labels from the CAM files
    stats = str(dataset['root'] / 's.json')
    res = tool.main(common + [
        '--gt-dir', dataset['gt_dir'], '--stats-out', stats, '--alpha-low', '6'
    ])
    assert res['processed'] == 2 and res['skipped'] == 2
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    img, cams, ids, _ = dataset['truth']['a']
    np.testing.assert_array_equal(
        load_label_png(osp.join(out, 'a.png')),
        confident_region_map(img, cams, ids, alpha_low=6))
    with open(stats) as f:
        assert json.load(f)['alpha_low'] == 6


def test_script_on_voc_layout(tiny_voc, tmp_path):
    """The script itself (2 workers) on a VOC-layout folder with a split."""
    cam_dir = tmp_path / 'cams'
    height, width = tiny_voc.img_shape
    yy, xx = np.mgrid[:height, :width]
    for img_id in tiny_voc.ids:
        mask = tiny_voc.masks[img_id]
        cams = []
        for cls in tiny_voc.labels[img_id]:
            ys, xs = np.nonzero(mask == cls)
            cam = np.exp(-((yy - ys.mean())**2 + (xx - xs.mean())**2) /
                         (2 * 6.0**2))
            cams.append(cam / (cam.max() + 1e-5))
        cams = np.stack(cams) if cams else np.zeros((0, height, width))
        save_cam_file(
            str(cam_dir / f'{img_id}.npz'), cams, tiny_voc.labels[img_id])
    out = tmp_path / 'work' / 'conf'
    cmd = [
        sys.executable, TOOL, '--img-dir',
        tiny_voc.path('JPEGImages'), '--cam-dir',
        str(cam_dir), '--out-dir',
        str(out), '--split',
        tiny_voc.path('ImageSets', 'Segmentation', 'train.txt'), '--gt-dir',
        tiny_voc.path('SegmentationClass'), '--workers', '2'
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '0 already written (skipped), 4 to do' in proc.stdout
    train = tiny_voc.splits['train']
    assert _listing(str(out)) == sorted(f'{i}.png' for i in train)
    for img_id in train:
        conf = load_label_png(
            str(out / f'{img_id}.png'), expected_shape=(height, width))
        assert set(
            np.unique(conf).tolist()) <= {0, 255, *tiny_voc.labels[img_id]}
    with open(tmp_path / 'work' / 'confident_regions_stats.json') as f:
        stats = json.load(f)
    assert stats['num_images'] == 4
    assert stats['pixels'] == sum(
        int((tiny_voc.masks[i] != 255).sum()) for i in train)
    # a second run skips everything
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '4 already written (skipped), 0 to do' in proc.stdout


# -- a killed tool: no leftovers, no orphaned workers, checked masks --------

#: Runs the tool with a slowed-down ``atomic_write``: SLOW_TASK seconds
#: before each write, SLOW_WRITE seconds between writing the temporary file
#: and renaming it.
SLOW_TOOL = f"""
import os, runpy, sys, time
import mmaff.utils.io as mio
real = mio.atomic_write
def slow(path, write_fn):
    time.sleep(float(os.environ.get('SLOW_TASK', 0)))
    def write(tmp):
        write_fn(tmp)
        time.sleep(float(os.environ.get('SLOW_WRITE', 0)))
    real(path, write)
mio.atomic_write = slow
sys.argv = [{TOOL!r}] + sys.argv[1:]
runpy.run_path({TOOL!r}, run_name='__main__')
"""


def _start_slow_tool(tmp_path, args, **slow):
    script = tmp_path / 'slow_tool.py'
    script.write_text(SLOW_TOOL)
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    env.update((key, str(value)) for key, value in slow.items())
    return subprocess.Popen(
        [sys.executable, str(script)] + args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def _wait_for(predicate, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f'the tool exited ({proc.returncode}) '
                                 'before the test could kill it')
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError('timed out waiting for the tool')
        time.sleep(0.02)


def _temp_names(folder):
    return [n for n in _listing(folder) if '.tmp-' in n]


def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the command name (None: gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None


def _children(pid):
    kids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _running(pid):
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ('Z', 'X')


needs_proc = pytest.mark.skipif(
    not osp.isdir('/proc/self'), reason='needs Linux /proc')


def test_killed_mid_write_rerun_leaves_no_temp_file(tool, dataset, tmp_path):
    out = str(tmp_path / 'conf')
    args = [
        '--img-dir', dataset['img_dir'], '--cam-dir', dataset['cam_dir'],
        '--out-dir', out, '--img-suffix', '.png', '--workers', '0'
    ]
    proc = _start_slow_tool(tmp_path, args, SLOW_WRITE=60)
    try:
        _wait_for(lambda: _temp_names(out), proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # killed while writing a.png: its temporary file is left behind
    assert len(_temp_names(out)) == 1 and 'a.png' not in _listing(out)

    res = tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    assert res['processed'] == 4
    assert _listing(out) == ['a.png', 'b.png', 'c.png', 'd.png']
    ref = str(tmp_path / 'ref')
    tool.run(dataset['samples'], dataset['cam_dir'], ref, workers=0)
    for name in _listing(ref):
        with open(osp.join(out, name), 'rb') as f, \
                open(osp.join(ref, name), 'rb') as g:
            assert f.read() == g.read(), name


@needs_proc
def test_workers_die_with_the_killed_tool(tool, dataset, tmp_path):
    # 48 images: chunks of 6 tasks per worker, 0.5 s each
    img_dir, cam_dir = tmp_path / 'many_img', tmp_path / 'many_cam'
    img_dir.mkdir()
    cam_dir.mkdir()
    names = [f'm{i:02d}' for i in range(48)]
    for name in names:
        shutil.copyfile(
            osp.join(dataset['img_dir'], 'b.png'), img_dir / f'{name}.png')
        shutil.copyfile(
            osp.join(dataset['cam_dir'], 'b.npz'), cam_dir / f'{name}.npz')
    out = str(tmp_path / 'conf')
    args = [
        '--img-dir',
        str(img_dir), '--cam-dir',
        str(cam_dir), '--out-dir', out, '--img-suffix', '.png', '--workers',
        '2'
    ]
    proc = _start_slow_tool(tmp_path, args, SLOW_TASK=0.5)
    workers = []
    try:
        _wait_for(
            lambda: any(
                n.endswith('.png') and '.tmp-' not in n
                for n in _listing(out)), proc)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
    finally:
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 1.5
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = [p for p in workers if _running(p)]
    for pid in alive:  # do not leave them behind, whatever the result
        os.kill(pid, signal.SIGKILL)
    assert not alive, 'pool workers outlived the killed tool'
    before = _mtimes(out)
    time.sleep(1)
    assert _mtimes(out) == before, 'files were written after the kill'
    late = [
        n for n in _listing(out) if n.endswith('.png')
        and os.stat(osp.join(out, n)).st_mtime > killed_at + 0.2
    ]
    assert not late, f'written after the kill: {late}'
    # a re-run completes the maps and leaves no temporary file (of a
    # worker killed mid-write), once the killed workers are reaped (a
    # zombie's pid still counts as a live writer)
    deadline = time.monotonic() + 30
    while any(_stat_fields(p) for p in workers) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    samples = tool.build_samples(str(img_dir), str(cam_dir), None, '.png')
    res = tool.run(samples, str(cam_dir), out, workers=0, progress=False)
    assert res['processed'] + res['skipped'] == 48
    assert _listing(out) == sorted(f'{n}.png' for n in names)


def test_queued_tasks_return_once_the_parent_is_gone(tool, dataset,
                                                     monkeypatch, tmp_path):
    out = tmp_path / 'conf'
    task = dict(
        img_id='a',
        img_path=dataset['samples'][0]['img_path'],
        img_labels=[3],
        cam_path=osp.join(dataset['cam_dir'], 'a.npz'),
        out_path=str(out / 'a.png'),
        gt_path=None,
        alpha_low=4,
        alpha_high=24,
        stride=8,
        crf=None,
        num_classes=21)
    # a worker whose parent (the tool) has died: it now has another one
    monkeypatch.setattr(tool, '_PARENT_PID', os.getppid() + 100000, False)
    assert tool._process_one(task) is None
    assert not out.exists()
    monkeypatch.setattr(tool, '_PARENT_PID', os.getppid())
    assert tool._process_one(task)['img_id'] == 'a'
    assert _listing(str(out)) == ['a.png']


def test_ground_truth_values_are_checked(tool, dataset):
    out = str(dataset['root'] / 'conf')
    gt_b = osp.join(dataset['gt_dir'], 'b.png')
    gt = load_label_png(gt_b)
    gt[5, 5] = 21  # VOC has ids 0..20 (and 255)
    save_label_png(gt_b, gt)
    with pytest.raises(RuntimeError) as info:
        tool.run(
            dataset['samples'],
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'])
    assert gt_b in str(info.value) and '[21]' in str(info.value)
    assert 'outside the class range 0..20' in str(info.value)
    _assert_no_output_for(out, 'b')
    # the existing maps (skipped) are checked too
    tool.run(dataset['samples'], dataset['cam_dir'], out, workers=0)
    with pytest.raises(RuntimeError, match=re.escape(gt_b)):
        tool.run(
            dataset['samples'],
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'])
    # fewer classes: d's class 20 is out of range
    samples = [s for s in dataset['samples'] if s['img_id'] != 'b']
    gt_d = osp.join(dataset['gt_dir'], 'd.png')
    with pytest.raises(RuntimeError, match=re.escape(gt_d) + '.*20'):
        tool.run(
            samples,
            dataset['cam_dir'],
            out,
            workers=0,
            gt_dir=dataset['gt_dir'],
            num_classes=13)
    res = tool.run(
        samples,
        dataset['cam_dir'],
        out,
        workers=0,
        gt_dir=dataset['gt_dir'],
        num_classes=21)
    assert res['stats']['num_images'] == 3
    # and on the command line
    split = dataset['root'] / 'split.txt'
    split.write_text('a\nd\n')
    common = [
        '--img-dir', dataset['img_dir'], '--cam-dir', dataset['cam_dir'],
        '--out-dir', out, '--img-suffix', '.png', '--workers', '0', '--split',
        str(split), '--gt-dir', dataset['gt_dir']
    ]
    with pytest.raises(RuntimeError, match=re.escape(gt_d)):
        tool.main(common + ['--num-classes', '6'])
    assert tool.main(common)['stats']['num_images'] == 2

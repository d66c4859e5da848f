# Copyright (c) mmaff contributors. All rights reserved.
"""Tests of tools/dataset_converters/make_demo_dataset.py."""
import importlib.util
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from PIL import Image

TOOL = osp.join(
    osp.dirname(osp.abspath(__file__)), '..', '..', 'tools',
    'dataset_converters', 'make_demo_dataset.py')

SEED, NUM_TRAIN, NUM_VAL, SIZE = 3, 9, 3, 96


def _load_tool():
    spec = importlib.util.spec_from_file_location('make_demo_dataset', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
NUM_CLASSES = len(tool.CLASSES)  # background included


def _generate(out_dir,
              seed=SEED,
              num_train=NUM_TRAIN,
              num_val=NUM_VAL,
              size=SIZE):
    return tool.generate(
        str(out_dir),
        seed=seed,
        num_train=num_train,
        num_val=num_val,
        size=size,
        show_progress=False)


def _all_files(root):
    """Relative path -> bytes of every file under root."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _mtimes(root):
    return {
        osp.relpath(osp.join(folder, name), root):
        os.stat(osp.join(folder, name)).st_mtime_ns
        for folder, _, files in os.walk(root)
        for name in files
    }


def _read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def _parse_xml(path):
    root = ET.parse(path).getroot()
    objects = []
    for el in root.findall('object'):
        box = el.find('bndbox')
        objects.append(
            dict(
                name=el.find('name').text,
                difficult=el.find('difficult').text,
                bbox=tuple(
                    int(box.find(k).text)
                    for k in ('xmin', 'ymin', 'xmax', 'ymax'))))
    size = root.find('size')
    return dict(
        filename=root.find('filename').text,
        width=int(size.find('width').text),
        height=int(size.find('height').text),
        objects=objects)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    summary = _generate(root)
    ids = [f'demo_{i:05d}' for i in range(NUM_TRAIN + NUM_VAL)]
    return root, summary, ids


@pytest.fixture(scope='module')
def samples():
    """Rendered samples (with instance/part masks) of the dataset fixture."""
    return [
        tool.render_sample(SEED, i, SIZE) for i in range(NUM_TRAIN + NUM_VAL)
    ]


def test_layout_and_split_files(dataset):
    root, summary, ids = dataset
    split_dir = root / 'ImageSets' / 'Segmentation'
    train = _read_lines(split_dir / 'train.txt')
    val = _read_lines(split_dir / 'val.txt')
    assert len(train) == NUM_TRAIN and len(val) == NUM_VAL
    assert not set(train) & set(val)
    assert _read_lines(split_dir / 'trainval.txt') == train + val
    assert _read_lines(split_dir / 'trainaug.txt') == train
    # every 8th training image, from the first, is held out for tuning
    holdout = _read_lines(split_dir / 'holdout.txt')
    assert holdout == train[::8] and set(holdout) <= set(train)
    assert sorted(train + val) == sorted(ids)
    for image_id in ids:
        for sub, ext in (('JPEGImages', 'jpg'), ('SegmentationClass', 'png'),
                         ('SegmentationClassAug', 'png'), ('Annotations',
                                                           'xml')):
            assert (root / sub / f'{image_id}.{ext}').is_file()
        # The voc_aug copy is the same file content.
        assert ((root / 'SegmentationClassAug' /
                 f'{image_id}.png').read_bytes() == (
                     root / 'SegmentationClass' /
                     f'{image_id}.png').read_bytes())
    # Nothing else (no leftover temporary files) in the image folders.
    assert len(os.listdir(root / 'JPEGImages')) == len(ids)
    classes = _read_lines(root / 'classes.txt')
    assert classes[0] == 'background'
    assert 5 <= len(classes) <= 7  # 4-6 foreground classes
    assert len(set(classes)) == len(classes)
    meta = json.loads((root / 'meta.json').read_text())
    assert meta['seed'] == SEED and meta['size'] == SIZE
    assert meta['num_train'] == NUM_TRAIN and meta['num_val'] == NUM_VAL
    assert meta['classes'] == classes
    assert 'version' in meta
    assert summary['written'] == 1 + 1 + 5 + 4 * len(ids)
    assert summary['rendered'] == len(ids)
    assert not summary['was_complete']


def test_masks_are_voc_label_pngs(dataset):
    root, _, ids = dataset
    for image_id in ids:
        img = cv2.imread(str(root / 'JPEGImages' / f'{image_id}.jpg'))
        assert img is not None and img.shape == (SIZE, SIZE, 3)
        with Image.open(root / 'SegmentationClass' / f'{image_id}.png') as p:
            assert p.mode == 'P'
            palette = np.array(p.getpalette()[:9]).reshape(3, 3)
            label = np.array(p)
        # The VOC colour map starts black, dark red, dark green.
        assert palette.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
        assert label.shape == img.shape[:2]
        values = set(np.unique(label).tolist())
        assert values <= set(range(NUM_CLASSES)) | {255}
        assert 0 in values and 255 in values
        assert values - {0, 255}, f'{image_id} has no object'


def test_files_match_the_rendered_sample(dataset, samples):
    root, _, ids = dataset
    for image_id, sample in zip(ids, samples):
        label = np.array(
            Image.open(root / 'SegmentationClass' / f'{image_id}.png'))
        np.testing.assert_array_equal(label, sample['label'])
        img = cv2.imread(str(root / 'JPEGImages' / f'{image_id}.jpg'))
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
        # JPEG at quality 90: close to the drawn image, not identical.
        assert np.abs(rgb - sample['image']).mean() < 8


def test_xml_objects_match_masks(dataset, samples):
    root, _, ids = dataset
    classes = list(tool.CLASSES)
    for image_id, sample in zip(ids, samples):
        ann = _parse_xml(root / 'Annotations' / f'{image_id}.xml')
        assert ann['filename'] == f'{image_id}.jpg'
        assert (ann['width'], ann['height']) == (SIZE, SIZE)
        label = np.array(
            Image.open(root / 'SegmentationClass' / f'{image_id}.png'))
        present = {classes[v] for v in np.unique(label) if v not in (0, 255)}
        names = [o['name'] for o in ann['objects']]
        assert set(names) == present
        assert 1 <= len(names) <= 3
        assert len(names) == len(sample['objects'])
        for obj, drawn in zip(ann['objects'], sample['objects']):
            assert obj['difficult'] == '0'
            xmin, ymin, xmax, ymax = obj['bbox']  # 1-based, inclusive
            assert 1 <= xmin <= xmax <= SIZE and 1 <= ymin <= ymax <= SIZE
            # The box is the tight box of the object's visible pixels.
            ys, xs = np.nonzero(drawn['mask'])
            assert (xmin - 1, ymin - 1, xmax - 1,
                    ymax - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert obj['name'] == classes[drawn['label']]
        # From the files alone: every pixel of a class lies in a box of an
        # object of that class.
        for name in present:
            cover = np.zeros_like(label, dtype=bool)
            for obj in ann['objects']:
                if obj['name'] == name:
                    x0, y0, x1, y1 = obj['bbox']
                    cover[y0 - 1:y1, x0 - 1:x1] = True
            assert cover[label == classes.index(name)].all()


def test_boundary_band_lies_on_contours(samples):
    for sample in samples:
        label, inst = sample['label'], sample['instances']
        h, w = inst.shape
        # Instance map and label agree away from the band.
        for k, obj in enumerate(sample['objects']):
            np.testing.assert_array_equal(inst == k + 1, obj['mask'])
        off_band = label != 255
        expected = np.zeros_like(label)
        for k, obj in enumerate(sample['objects']):
            expected[inst == k + 1] = obj['label']
        np.testing.assert_array_equal(label[off_band], expected[off_band])
        # Brute force: a pixel is in the band iff its 3x3 neighbourhood
        # holds another instance id (background included).
        for y in range(h):
            for x in range(w):
                window = inst[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
                on_contour = bool((window != inst[y, x]).any())
                assert (label[y, x] == 255) == on_contour, (y, x)
        assert (label == 255).any()


def test_every_object_keeps_pixels_outside_the_band(samples):
    for sample in samples:
        for obj in sample['objects']:
            assert (sample['label'][obj['mask']] == obj['label']).sum() > 0


def test_part_covers_a_fraction_of_each_object(samples):
    low, high = tool.PART_FRACTION_RANGE
    assert 0.15 <= low < high <= 0.35
    for sample in samples:
        for obj in sample['objects']:
            mask, part = obj['mask'], obj['part_mask']
            assert part.any()
            assert not (part & ~mask).any(), 'part outside its object'
            frac = part.sum() / mask.sum()
            assert low <= frac <= high
            assert frac == pytest.approx(obj['part_fraction'])


def test_parts_and_bodies_are_visible_by_low_level_cues(samples):
    kernel = np.ones((3, 3), np.uint8)
    for sample in samples:
        img = sample['image'].astype(np.float32)
        free = sample['instances'] == 0
        for obj in sample['objects']:
            mask, part = obj['mask'], obj['part_mask']
            body = mask & ~part
            # The part is a two-colour pattern: much more colour spread than
            # the rest of the body.
            assert img[part].std(0).mean() > 2 * img[body].std(0).mean()
            # The body stands out from the background around it.
            m8 = mask.astype(np.uint8)
            inner = body & ~cv2.erode(m8, kernel, iterations=2).astype(bool)
            outer = cv2.dilate(m8, kernel, iterations=2).astype(bool) & free
            if inner.sum() >= 5 and outer.sum() >= 5:
                dist = np.linalg.norm(img[inner].mean(0) - img[outer].mean(0))
                assert dist > 30


def test_part_pattern_is_drawn_over_the_body(samples):
    """Between the pattern's strokes a part shows its body's colours, and
    the strokes are one colour (generator 2.1): the object is one coherent
    colour region with a marking, not a patch of unrelated colours."""
    for sample in samples:
        img = sample['image'].astype(np.float32)
        for obj in sample['objects']:
            mask, part = obj['mask'], obj['part_mask']
            body = img[mask & ~part]
            lo, hi = np.percentile(body, 2, 0), np.percentile(body, 98, 0)
            pix = img[part]
            like_body = ((pix >= lo - 8) & (pix <= hi + 8)).all(1)
            assert 0.2 <= like_body.mean() <= 0.9, like_body.mean()
            # the strokes: mostly one colour (plus noise)
            strokes = pix[~like_body]
            dist = np.linalg.norm(strokes - np.median(strokes, 0), axis=1)
            assert (dist < 25).mean() >= 0.6


def test_objects_vary_in_number_class_and_size():
    size, n = 96, 60
    objects = [tool.render_sample(0, i, size)['objects'] for i in range(n)]
    counts = [len(o) for o in objects]
    assert set(counts) == {1, 2, 3}
    same = sum(len({o['label'] for o in objs}) < len(objs) for objs in objects)
    diff = sum(len({o['label'] for o in objs}) >= 2 for objs in objects)
    assert same >= 3 and diff >= 3
    sides = []
    for objs in objects:
        for obj in objs:
            x0, y0, x1, y1 = obj['bbox']
            sides.append(max(x1 - x0 + 1, y1 - y0 + 1) / size)
    assert 0.1 <= min(sides) < 0.22 and 0.42 < max(sides) <= 0.6
    # Balanced plan: any NUM_FOREGROUND consecutive images cover all classes
    # (so a train split of N images holds each class >= N // C times).
    c = len(tool.CLASSES) - 1
    for start in range(0, n - c + 1, c):
        seen = {o['label'] for objs in objects[start:start + c] for o in objs}
        assert seen == set(range(1, c + 1))


def test_train_split_covers_every_class(tmp_path):
    summary = _generate(tmp_path, seed=1, num_train=20, num_val=5)
    counts = summary['class_image_counts']['train']
    c = len(tool.CLASSES) - 1
    assert set(counts) == set(tool.CLASSES[1:])
    assert min(counts.values()) >= 20 // c
    # Recount from the XML files.
    recount = dict.fromkeys(tool.CLASSES[1:], 0)
    for image_id in _read_lines(tmp_path / 'ImageSets' / 'Segmentation' /
                                'train.txt'):
        ann = _parse_xml(tmp_path / 'Annotations' / f'{image_id}.xml')
        for name in {o['name'] for o in ann['objects']}:
            recount[name] += 1
    assert recount == counts


def test_deterministic(tmp_path, dataset):
    root = dataset[0]
    _generate(tmp_path / 'same')
    _generate(tmp_path / 'other', seed=SEED + 1)
    first, same = _all_files(root), _all_files(tmp_path / 'same')
    assert first == same
    other = _all_files(tmp_path / 'other')
    assert set(other) == set(first)
    differ = [
        k for k in first
        if k.endswith(('.jpg', '.png')) and first[k] != other[k]
    ]
    assert len(differ) == 3 * (NUM_TRAIN + NUM_VAL)
    assert first['meta.json'] != other['meta.json']


def test_idempotent_and_resumes(tmp_path, capsys):
    root = tmp_path / 'demo'
    _generate(root)
    before = _all_files(root)
    mtimes = _mtimes(root)
    capsys.readouterr()
    summary = _generate(root)
    assert summary['written'] == 0 and summary['was_complete']
    assert 'nothing to do' in capsys.readouterr().out
    assert _mtimes(root) == mtimes

    removed = [
        'JPEGImages/demo_00002.jpg', 'SegmentationClass/demo_00004.png',
        'SegmentationClassAug/demo_00005.png', 'Annotations/demo_00010.xml',
        'ImageSets/Segmentation/val.txt', 'classes.txt'
    ]
    for rel in removed:
        os.remove(root / rel)
    summary = _generate(root)
    assert summary['written'] == len(removed)
    assert summary['rendered'] == 3
    assert _all_files(root) == before
    after = _mtimes(root)
    for rel, mtime in mtimes.items():
        if rel not in removed:
            assert after[rel] == mtime, rel


def test_refuses_other_settings_and_foreign_folders(tmp_path):
    root = tmp_path / 'demo'
    _generate(root, num_train=3, num_val=2)
    with pytest.raises(ValueError, match='other settings.*seed'):
        _generate(root, seed=SEED + 1, num_train=3, num_val=2)
    with pytest.raises(ValueError, match='num_train'):
        _generate(root, num_train=4, num_val=2)
    foreign = tmp_path / 'voc'
    (foreign / 'JPEGImages').mkdir(parents=True)
    (foreign / 'JPEGImages' / '2007_000032.jpg').write_bytes(b'x')
    with pytest.raises(ValueError, match='no meta.json'):
        _generate(foreign)
    assert os.listdir(foreign) == ['JPEGImages']


@pytest.mark.parametrize('kwargs', [
    dict(size=32),
    dict(num_train=0),
    dict(num_val=0),
    dict(seed=-1),
])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        _generate(tmp_path, **kwargs)
    assert not os.listdir(tmp_path)


def test_command_line(tmp_path, capsys):
    out = tmp_path / 'cli'
    summary = tool.main([
        str(out), '--seed', '5', '--num-train', '4', '--num-val', '2',
        '--size', '80'
    ])
    assert summary['num_train'] == 4 and summary['size'] == 80
    meta = json.loads((out / 'meta.json').read_text())
    assert (meta['seed'], meta['num_train'], meta['num_val'],
            meta['size']) == (5, 4, 2, 80)
    img = cv2.imread(str(out / 'JPEGImages' / 'demo_00005.jpg'))
    assert img.shape == (80, 80, 3)
    tool.main([
        str(out), '--seed', '5', '--num-train', '4', '--num-val', '2',
        '--size', '80'
    ])
    assert 'nothing to do' in capsys.readouterr().out


# -- a killed run leaves nothing behind -------------------------------------

#: Generates the dataset, killing itself (SIGKILL) while writing the
#: ``KILL_AT``-th file, after its temporary file has received some bytes.
_KILLED_RUN = """
import importlib.util, os, sys
import mmaff.utils.io as mio
real, count = mio.atomic_write, [0]
def dying(path, write_fn):
    count[0] += 1
    def write(tmp):
        if count[0] == int(os.environ['KILL_AT']):
            open(tmp, 'wb').write(b'partial')
            os.kill(os.getpid(), 9)
        write_fn(tmp)
    real(path, write)
mio.atomic_write = dying
spec = importlib.util.spec_from_file_location('demo_gen', sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
tool.generate(sys.argv[2], seed=int(sys.argv[3]), num_train=int(sys.argv[4]),
              num_val=int(sys.argv[5]), size=int(sys.argv[6]),
              show_progress=False)
"""


def _temp_files(root):
    return [
        osp.join(folder, name) for folder, _, files in os.walk(root)
        for name in files if '.tmp-' in name
    ]


@pytest.mark.parametrize('kill_at', [1, 9, 12])
def test_killed_run_then_rerun_leaves_no_temp_file(tmp_path, dataset, capsys,
                                                   kill_at):
    import subprocess
    import sys
    root = tmp_path / 'demo'
    proc = subprocess.run([
        sys.executable, '-c', _KILLED_RUN, TOOL,
        str(root),
        str(SEED),
        str(NUM_TRAIN),
        str(NUM_VAL),
        str(SIZE)
    ],
                          env=dict(
                              os.environ,
                              KILL_AT=str(kill_at),
                              PYTHONWARNINGS='ignore'),
                          capture_output=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert len(_temp_files(root)) == 1  # what the killed writer left
    capsys.readouterr()
    _generate(root)
    assert 'removed 1 temporary files of an interrupted run' in \
        capsys.readouterr().out
    assert _temp_files(root) == []
    assert _all_files(root) == _all_files(dataset[0])


def test_mini_voc_rerun_removes_stale_temp_files(tmp_path, capsys):
    import subprocess
    import sys

    from mmaff.utils import io as mio
    spec = importlib.util.spec_from_file_location(
        'make_mini_voc', osp.join(osp.dirname(TOOL), 'make_mini_voc.py'))
    mini = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mini)
    root = tmp_path / 'VOC2012'
    mini.generate(str(root), num_train=1, num_aug=1, num_val=1)
    before = _all_files(root)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    tag = f'{mio._host_tag()}-{dead.pid}'
    stale = [
        root / 'JPEGImages' / f'.2007_000000.tmp-{tag}-a1.jpg',
        root / 'SegmentationClassAug' / f'.2007_000001.tmp-{tag}-b2.png',
        root / f'.mini_voc.tmp-{tag}-c3.json'
    ]
    live = root / 'Annotations' / \
        f'.2007_000002.tmp-{mio._host_tag()}-{os.getpid()}-d4.xml'
    for path in stale + [live]:
        path.write_bytes(b'partial')
    capsys.readouterr()
    mini.generate(str(root), num_train=1, num_aug=1, num_val=1)
    assert 'removed 3 temporary files of an interrupted run' in \
        capsys.readouterr().out
    assert _temp_files(root) == [str(live)]  # a live writer's stays
    live.unlink()
    assert _all_files(root) == before

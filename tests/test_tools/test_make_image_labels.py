# Copyright (c) mmaff contributors. All rights reserved.
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_TOOL = osp.join(_REPO, 'tools', 'dataset_converters', 'make_image_labels.py')


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('_mmaff_make_image_labels',
                                                  _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_text(tiny_voc, ids, classes=None):
    """The label file of ``ids``, written from the fixture's truth."""
    classes = classes or tiny_voc.classes
    lines = []
    for i in ids:
        names = [tiny_voc.classes[c] for c in tiny_voc.labels[i]]
        ids_in = sorted(classes.index(n) for n in names)
        lines.append(' '.join([i] + [classes[c] for c in ids_in]))
    return '\n'.join(lines) + '\n'


def test_cli_xml_default_classes(tiny_voc, tmp_path):
    out = tmp_path / 'labels.txt'
    proc = subprocess.run([
        sys.executable, _TOOL, tiny_voc.root, '--split',
        'ImageSets/Segmentation/trainaug.txt', '--source', 'xml', '-o',
        str(out)
    ],
                          capture_output=True,
                          text=True,
                          cwd=_REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == _expected_text(tiny_voc,
                                             tiny_voc.splits['trainaug'])
    assert str(out) in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ['labels.txt', 'voc']


@pytest.mark.parametrize('mask_dir',
                         ['SegmentationClass', 'SegmentationClassAug'])
def test_mask_source_matches_truth(tool, tiny_voc, tmp_path, mask_dir):
    out = str(tmp_path / 'all.txt')
    split = tmp_path / 'all_split.txt'
    split.write_text('\n'.join(tiny_voc.ids) + '\n')
    labels = tool.main([
        tiny_voc.root, '--split',
        str(split), '--source', 'mask', '--mask-dir', mask_dir, '-o', out
    ])
    assert labels == {i: list(v) for i, v in tiny_voc.labels.items()}
    with open(out) as f:
        assert f.read() == _expected_text(tiny_voc, tiny_voc.ids)


def test_xml_and_mask_sources_write_the_same_file(tool, tiny_voc, tmp_path):
    outs = []
    for source in ('xml', 'mask'):
        outs.append(str(tmp_path / f'{source}.txt'))
        tool.make_image_labels(
            tiny_voc.root,
            'ImageSets/Segmentation/val.txt',
            source,
            outs[-1],
            show_progress=False)
    texts = [open(o).read() for o in outs]
    assert texts[0] == texts[1] == _expected_text(tiny_voc,
                                                  tiny_voc.splits['val'])
    # img_005 has no object: its id stands alone on its line
    assert 'img_005\n' in texts[0].splitlines(keepends=True)


def test_classes_file(tool, tiny_voc, tmp_path):
    # a different order of a subset that covers every object of the split
    classes = [
        'background', 'tvmonitor', 'person', 'dog', 'cat', 'bottle',
        'aeroplane'
    ]
    with open(tiny_voc.path('my_classes.txt'), 'w') as f:
        f.write('\n'.join(classes) + '\n\n')
    out = str(tmp_path / 'labels.txt')
    labels = tool.main([
        tiny_voc.root, '--split', 'ImageSets/Segmentation/train.txt',
        '--source', 'xml', '--classes', 'my_classes.txt', '-o', out
    ])
    assert labels['img_001'] == [3, 6]  # dog, aeroplane in the new order
    with open(out) as f:
        assert f.read() == _expected_text(tiny_voc, tiny_voc.splits['train'],
                                          classes)


def test_errors(tool, tiny_voc, tmp_path):
    out = str(tmp_path / 'labels.txt')
    root = tiny_voc.root
    with pytest.raises(FileNotFoundError, match='nosplit.txt'):
        tool.main(
            [root, '--split', 'nosplit.txt', '--source', 'xml', '-o', out])
    empty = tiny_voc.path('empty.txt')
    open(empty, 'w').close()
    with pytest.raises(ValueError, match='empty.txt'):
        tool.main(
            [root, '--split', 'empty.txt', '--source', 'mask', '-o', out])
    # classes that do not know an object of the split
    with open(tiny_voc.path('few.txt'), 'w') as f:
        f.write('background\nperson\n')
    with pytest.raises(ValueError, match='img_001.xml.*aeroplane'):
        tool.main([
            root, '--split', 'ImageSets/Segmentation/train.txt', '--source',
            'xml', '--classes', 'few.txt', '-o', out
        ])
    # ... and with masks: person (15) is beyond the 2 classes
    with pytest.raises(ValueError, match=r'img_000.png.*\[15\]'):
        tool.main([
            root, '--split', 'ImageSets/Segmentation/train.txt', '--source',
            'mask', '--classes', 'few.txt', '-o', out
        ])
    with pytest.raises(FileNotFoundError, match='nofile.txt'):
        tool.main(
            [root, '--source', 'xml', '--classes', 'nofile.txt', '-o', out])
    with open(tiny_voc.path('dup.txt'), 'w') as f:
        f.write('background\ncat\ncat\n')
    with pytest.raises(ValueError, match=r"dup.txt.*\['cat'\]"):
        tool.main([root, '--source', 'xml', '--classes', 'dup.txt', '-o', out])
    os.remove(tiny_voc.path('SegmentationClassAug', 'img_003.png'))
    with pytest.raises(FileNotFoundError, match='img_003.png'):
        tool.main([root, '--source', 'mask', '-o', out])
    with pytest.raises(FileNotFoundError, match='NoMasks'):
        tool.main(
            [root, '--source', 'mask', '--mask-dir', 'NoMasks', '-o', out])
    xml = tiny_voc.path('Annotations', 'img_002.xml')
    with open(xml, 'a') as f:
        f.write('<unclosed>')
    with pytest.raises(ValueError, match=re.escape(xml)):
        tool.main([root, '--source', 'xml', '-o', out])
    with pytest.raises(SystemExit):
        tool.main([root, '--source', 'json', '-o', out])
    assert not osp.exists(out)  # nothing half-written on any error

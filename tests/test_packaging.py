# Copyright (c) mmaff contributors. All rights reserved.
"""mmaff as an installed package: a wheel that works outside the checkout.

How the test works, and why (about 25 s on 2 cores):

* Build. The inputs of a build (what MANIFEST.in puts in a sdist: setup.*,
  MANIFEST.in, README.md, model-index.yml, requirements/, configs/, tools/,
  mmaff/) are copied to a temporary folder and built there with the
  documented ``python -m pip wheel --no-deps --no-build-isolation .`` (plus
  ``--no-index``: no network). Building in the checkout would write
  ``build/`` and ``mmaff.egg-info/`` into a tree other runs use at the same
  time. A sdist is built from the copy too (``setup.py sdist``), and a second
  wheel from that sdist, as pip does for a source release.
* Inspect. The wheel must hold ``mmaff/.mim/{model-index.yml,configs,tools}``
  with exactly the files of the checkout's ``model-index.yml``, ``configs/``
  and ``tools/`` (the shell tools executable), every module of ``mmaff/``,
  and the metafiles that the model index names.
* Install outside the repo. A fresh venv (``python -m venv --without-pip``,
  0.2 s) gets the wheel with ``pip --python <venv> install --no-deps
  --no-index`` (run by this interpreter's pip; the venv is empty then, so
  pip neither sees nor touches the editable install). Only afterwards is a
  ``.pth`` file added that appends this interpreter's site-packages (torch,
  mmengine, mmseg, ...: reinstalling them would take minutes and gigabytes).
  A ``.pth`` path line adds a folder to ``sys.path`` without processing the
  ``.pth`` files in it, so the editable install's ``__editable__.mmaff-*.pth``
  finder is never installed, and the venv's own site-packages (holding the
  wheel's ``mmaff``) comes first on ``sys.path`` anyway. The test checks
  that ``mmaff`` is imported from the venv and that the checkout is not on
  ``sys.path``.
* Use. In a temporary project folder outside the checkout, the README's
  example runs: ``my_cam.py`` (:data:`USER_CONFIG`, the README's text: keep
  the two in sync) inherits ``mmaff::`` bases, which inherit ``mmseg::``
  bases; the config loads from the wheel's ``.mim`` and its model builds
  (no pretrained weights). Then the README's training command,
  ``python $(mim_root)/tools/train.py my_cam.py``, builds the Runner from
  the installed tool and stops where it must without a dataset: at the
  missing VOC split file in ``data/VOCdevkit/VOC2012`` (a real training of
  ResNet-38 at 448 x 448 is far too slow for a CPU test).
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tarfile
import zipfile
from typing import Dict, List, Set

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: The README's example config ("Use mmaff from your own project"): keep the
#: two in sync.
USER_CONFIG = ("_base_ = 'mmaff::affinitynet/"
               "affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py'\n"
               'train_cfg = dict(max_iters=10)\n')
CAM_CONFIG = ('affinitynet/'
              'affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py')

# What a build reads (the sdist's content, see MANIFEST.in).
_BUILD_FILES = ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md',
                'model-index.yml')
_BUILD_DIRS = ('requirements', 'configs', 'tools', 'mmaff')
_MIM_DIRS = ('configs', 'tools')
_SKIP = shutil.ignore_patterns('__pycache__', '*.py[cod]', '.mim',
                               '*.egg-info')


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.pop('PYTHONPATH', None)
    env['PIP_DISABLE_PIP_VERSION_CHECK'] = '1'
    return env


def _run(cmd: List[str],
         cwd: str,
         check: bool = True,
         timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout)
    if check:
        assert proc.returncode == 0, (f'{cmd} failed:\n{proc.stdout[-3000:]}'
                                      f'\n{proc.stderr[-3000:]}')
    return proc


def _one(pattern: str) -> str:
    found = glob.glob(pattern)
    assert len(found) == 1, (pattern, found)
    return found[0]


def _tree_files(root: str) -> Set[str]:
    """Files under ``root``, relative, without caches."""
    files = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        for name in filenames:
            if not name.endswith(('.pyc', '.pyo')):
                rel = osp.relpath(osp.join(dirpath, name), root)
                files.add(rel.replace(os.sep, '/'))
    return files


def _mim_names(wheel: str) -> Set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {
            n
            for n in zf.namelist()
            if n.startswith('mmaff/.mim/') and not n.endswith('/')
        }


@pytest.fixture(scope='module')
def builds(tmp_path_factory) -> Dict[str, str]:
    """Build a wheel and a sdist from a copy of the checkout."""
    root = str(tmp_path_factory.mktemp('packaging'))
    src = osp.join(root, 'src')
    os.makedirs(src)
    for name in _BUILD_FILES:
        shutil.copy2(osp.join(REPO, name), osp.join(src, name))
    for name in _BUILD_DIRS:
        shutil.copytree(
            osp.join(REPO, name), osp.join(src, name), ignore=_SKIP)
    pip_wheel = [
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--no-index'
    ]
    _run(pip_wheel + ['-w', osp.join(root, 'wheel'), '.'], cwd=src)
    _run([
        sys.executable, 'setup.py', '-q', 'sdist', '--formats=gztar', '-d',
        osp.join(root, 'sdist')
    ],
         cwd=src)
    sdist = _one(osp.join(root, 'sdist', 'mmaff-*.tar.gz'))
    _run(
        pip_wheel + ['-w', osp.join(root, 'wheel_from_sdist'), sdist],
        cwd=root)
    return dict(
        src=src,
        wheel=_one(osp.join(root, 'wheel', 'mmaff-*.whl')),
        sdist=sdist,
        wheel_from_sdist=_one(
            osp.join(root, 'wheel_from_sdist', 'mmaff-*.whl')))


def test_wheel_carries_configs_model_index_and_tools(builds):
    src = builds['src']
    with zipfile.ZipFile(builds['wheel']) as zf:
        names = set(zf.namelist())
        infos = {info.filename: info for info in zf.infolist()}
        model_index = yaml.safe_load(zf.read('mmaff/.mim/model-index.yml'))
        metafiles = {
            path: yaml.safe_load(zf.read(f'mmaff/.mim/{path}'))
            for path in model_index['Import']
        }
    expected = {'mmaff/.mim/model-index.yml'}
    for name in _MIM_DIRS:
        expected |= {
            f'mmaff/.mim/{name}/{rel}'
            for rel in _tree_files(osp.join(src, name))
        }
    assert _mim_names(builds['wheel']) == expected
    for must in ('configs/' + CAM_CONFIG, 'configs/_base_/default_runtime.py',
                 'tools/train.py', 'tools/test.py', 'tools/dist_train.sh',
                 'tools/misc/print_config.py'):
        assert f'mmaff/.mim/{must}' in names
    for sh in (n for n in expected if n.endswith('.sh')):
        assert (infos[sh].external_attr >> 16) & 0o111, f'{sh} not executable'
    # the package itself, and nothing from the checkout outside it
    modules = {
        f'mmaff/{rel}'
        for rel in _tree_files(osp.join(src, 'mmaff')) if rel.endswith('.py')
    }
    assert modules <= names
    assert not any(
        n.startswith(('tests/', 'configs/', 'tools/')) for n in names)
    # every config that the model index names is shipped
    assert metafiles
    for meta in metafiles.values():
        for model in meta['Models']:
            assert f"mmaff/.mim/{model['Config']}" in names, model['Config']


def test_sdist_carries_what_the_wheel_needs(builds):
    with tarfile.open(builds['sdist']) as tf:
        top = tf.getnames()[0].split('/')[0]
        names = {n[len(top) + 1:] for n in tf.getnames()}
    for must in ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md',
                 'model-index.yml', 'requirements/runtime.txt',
                 'configs/' + CAM_CONFIG, 'tools/train.py',
                 'tools/dist_train.sh', 'mmaff/__init__.py'):
        assert must in names, must
    assert not any('__pycache__' in n or n.endswith('.pyc') for n in names)
    # pip building from the sdist (a source release) gives the same .mim
    assert _mim_names(builds['wheel_from_sdist']) == \
        _mim_names(builds['wheel'])


def _fresh_venv_with_wheel(root: str, wheel: str) -> str:
    """A venv holding the wheel's mmaff, dependencies from this interpreter.

    Returns:
        str: The venv's site-packages.
    """
    venv = osp.join(root, 'venv')
    _run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=root)
    python = osp.join(venv, 'bin', 'python')
    _run([
        sys.executable, '-m', 'pip', '--python', python, 'install',
        '--no-deps', '--no-index', '--no-compile', wheel
    ],
         cwd=root)
    site = _one(osp.join(venv, 'lib', 'python3*', 'site-packages'))
    assert osp.isdir(osp.join(site, 'mmaff', '.mim', 'configs'))
    # dependencies: the folders this interpreter imports them from
    import mmengine
    import mmseg
    import torch
    dep_dirs: List[str] = []
    for module in (torch, mmengine, mmseg):
        path = osp.dirname(osp.dirname(osp.abspath(module.__file__)))
        if path not in dep_dirs:
            dep_dirs.append(path)
    with open(osp.join(site, '_mmaff_test_deps.pth'), 'w') as f:
        f.write(''.join(f'{path}\n' for path in dep_dirs))
    return site


_CHECK = '''
import json, sys
import mmaff
from mmengine.config import Config
from mmaff.registry import MODELS
from mmaff.utils.compat import mim_root
cfg = Config.fromfile('my_cam.py')
cfg.model.backbone.init_cfg = None  # no pretrained weights
model = MODELS.build(cfg.model)
print(json.dumps(dict(
    mmaff=mmaff.__file__, mim_root=mim_root(), sys_path=sys.path,
    text=cfg.text, model=type(model).__name__, scope=cfg.model._scope_,
    default_scope=cfg.default_scope, max_iters=cfg.train_cfg.max_iters,
    loop=cfg.train_cfg.type)))
'''


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def test_wheel_works_outside_the_repo(builds, tmp_path):
    root = str(tmp_path)
    assert not _inside(root, REPO)
    site = _fresh_venv_with_wheel(root, builds['wheel'])
    python = osp.join(root, 'venv', 'bin', 'python')
    project = osp.join(root, 'my_project')
    os.makedirs(project)
    with open(osp.join(project, 'my_cam.py'), 'w') as f:
        f.write(USER_CONFIG)

    proc = _run([python, '-c', _CHECK], cwd=project)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    mim = osp.join(site, 'mmaff', '.mim')
    assert _inside(out['mmaff'], osp.join(site, 'mmaff'))
    assert out['mim_root'] == mim
    assert not any(
        osp.realpath(p or project) in (osp.realpath(REPO),
                                       osp.join(osp.realpath(REPO), 'mmaff'))
        for p in out['sys_path'])
    # mmaff:: bases came from the wheel, their mmseg:: bases from mmseg's
    assert osp.join(mim, 'configs', CAM_CONFIG) in out['text']
    assert osp.join(mim, 'configs', '_base_', 'default_runtime.py') in \
        out['text']
    assert osp.join('mmseg', '.mim', 'configs', '_base_',
                    'default_runtime.py') in out['text']
    assert osp.join(REPO, 'configs') not in out['text']
    assert out['model'] == 'CAMClassifier'
    assert out['scope'] == out['default_scope'] == 'mmaff'
    assert out['max_iters'] == 10
    assert out['loop'] == 'IterBasedTrainLoop'

    # the README's training command, with the installed tool
    train = _run(
        [python,
         osp.join(out['mim_root'], 'tools', 'train.py'), 'my_cam.py'],
        cwd=project,
        check=False)
    log = train.stdout + train.stderr
    assert train.returncode != 0, log[-3000:]
    assert 'does not support to load' not in log
    assert 'FileNotFoundError' in log and \
        'data/VOCdevkit/VOC2012/ImageSets/Segmentation/trainaug.txt' in log, \
        log[-3000:]
    assert osp.join(site, 'mmaff', 'datasets') in log  # the wheel's code
    assert osp.isdir(osp.join(project, 'work_dirs', 'my_cam'))


def test_readme_shows_the_config_this_module_runs():
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    assert f"cat > my_cam.py <<'EOF'\n{USER_CONFIG}EOF\n" in readme

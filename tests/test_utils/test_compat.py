# Copyright (c) mmaff contributors. All rights reserved.
import datetime
import importlib
import importlib.machinery
import importlib.util
import os.path as osp
import pickle
import socket
import subprocess
import sys
import types
import warnings
import zipfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader, load_checkpoint

import mmaff  # noqa: F401  (applies the fixes)
from mmaff.utils import compat
from mmaff.utils.compat import (TRUST_ENV, CheckpointRefusedError,
                                checkpoints_trusted, cpu_ddp_wrapper_cfg,
                                init_cpu_distributed, load_checkpoint_file,
                                patch_mmcv_ops, weights_only_mode)


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          timeout=300)


# ---------------------------------------------------------------- mmcv.ops


def test_import_mmseg_models_in_fresh_process():
    proc = _run_python('import mmaff\n'
                       'import mmseg.models\n'
                       'from mmseg.models import EncoderDecoder\n'
                       'import mmcv.ops, sys\n'
                       "print(type(sys.modules['mmcv.ops']).__name__)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '_LiteOpsModule'


def test_without_the_fix_mmseg_models_does_not_import():
    """The premise of the fix: mmcv-lite alone cannot import mmseg.models."""
    if compat._has_compiled_mmcv_ops():
        pytest.skip('full mmcv with compiled ops is installed')
    proc = _run_python('import mmseg.models\n')
    assert proc.returncode != 0
    assert 'mmcv._ext' in proc.stderr or 'mmcv.ops' in proc.stderr


def test_point_sample_is_the_pure_pytorch_function():
    import mmcv
    import mmcv.ops
    from mmcv.ops import point_sample
    assert point_sample.__module__ == 'mmcv.ops.point_sample'
    assert osp.samefile(
        point_sample.__code__.co_filename,
        osp.join(osp.dirname(mmcv.__file__), 'ops', 'point_sample.py'))
    assert mmcv.ops.point_sample is point_sample

    rng = torch.Generator().manual_seed(0)
    feats = torch.rand(2, 3, 5, 7, generator=rng)
    points = torch.rand(2, 11, 2, generator=rng)  # (x, y) in [0, 1]
    out = point_sample(feats, points)
    assert out.shape == (2, 3, 11)
    grid = (2 * points - 1).unsqueeze(2)  # (N, P, 1, 2) in [-1, 1]
    direct = F.grid_sample(feats, grid, align_corners=False).squeeze(3)
    torch.testing.assert_close(out, direct)
    # at pixel centres the samples are the pixel values themselves
    ys, xs = torch.meshgrid(torch.arange(5), torch.arange(7), indexing='ij')
    centres = torch.stack([(xs + 0.5) / 7, (ys + 0.5) / 5],
                          -1).reshape(1, -1, 2).expand(2, -1, -1)
    torch.testing.assert_close(point_sample(feats, centres), feats.flatten(2))


def test_other_ops_raise_module_not_found():
    with pytest.raises(ModuleNotFoundError, match='mmcv-lite') as err:
        from mmcv.ops import RoIAlign  # noqa: F401
    assert err.value.name == 'mmcv._ext'
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module('mmcv.ops.roi_align')
    # an ImportError, so that mmseg's guarded imports work
    with pytest.raises(ImportError):
        from mmcv.ops import nms  # noqa: F401
    import mmcv.ops
    with pytest.raises(ModuleNotFoundError, match='DeformConv2d'):
        getattr(mmcv.ops, 'DeformConv2d')


def test_sigmoid_focal_loss_stand_in():
    from mmcv.ops import sigmoid_focal_loss  # importing works
    with pytest.raises(ModuleNotFoundError, match='sigmoid_focal_loss') as e:
        sigmoid_focal_loss(
            torch.zeros(2, 3),
            torch.zeros(2).long(), 2.0, 0.25, None, 'mean')
    assert e.value.name == 'mmcv._ext'


def _fake_ext_find_spec(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, package=None):
        if name == 'mmcv._ext':
            return importlib.machinery.ModuleSpec('mmcv._ext', None)
        return real(name, package)

    monkeypatch.setattr(importlib.util, 'find_spec', find_spec)


def test_patch_is_a_no_op_with_compiled_ops(monkeypatch):
    import mmcv
    _fake_ext_find_spec(monkeypatch)
    assert compat._has_compiled_mmcv_ops()
    monkeypatch.setitem(compat._PATCHED, 'mmcv_ops', False)
    monkeypatch.delitem(sys.modules, 'mmcv.ops')
    monkeypatch.delitem(sys.modules, 'mmcv.ops.point_sample')
    monkeypatch.delattr(mmcv, 'ops')
    assert patch_mmcv_ops() is False
    assert 'mmcv.ops' not in sys.modules
    assert not hasattr(mmcv, 'ops')
    assert compat._PATCHED['mmcv_ops'] is False


def test_patch_keeps_a_working_mmcv_ops(monkeypatch):
    real_ops = types.ModuleType('mmcv.ops')  # stands for full mmcv's
    monkeypatch.setitem(compat._PATCHED, 'mmcv_ops', False)
    monkeypatch.setitem(sys.modules, 'mmcv.ops', real_ops)
    assert patch_mmcv_ops() is False
    assert sys.modules['mmcv.ops'] is real_ops


def test_patch_from_fresh_state(monkeypatch):
    import mmcv
    if compat._has_compiled_mmcv_ops():
        pytest.skip('full mmcv with compiled ops is installed')
    monkeypatch.setitem(compat._PATCHED, 'mmcv_ops', False)
    monkeypatch.delitem(sys.modules, 'mmcv.ops')
    monkeypatch.delitem(sys.modules, 'mmcv.ops.point_sample')
    monkeypatch.setattr(mmcv, 'ops', None)
    assert patch_mmcv_ops() is True
    ops = sys.modules['mmcv.ops']
    assert isinstance(ops, compat._LiteOpsModule)
    assert mmcv.ops is ops
    assert ops.point_sample.__module__ == 'mmcv.ops.point_sample'
    assert patch_mmcv_ops() is True  # idempotent: nothing replaced
    assert sys.modules['mmcv.ops'] is ops


# ------------------------------------------------------------ checkpoints


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


@pytest.fixture
def training_ckpt(tmp_path):
    model = _model()
    history = HistoryBuffer()
    history.update(0.5)
    history.update(0.25)
    ckpt = dict(
        meta=dict(
            epoch=3, seed=np.int64(7), lr=np.float64(0.1), arr=np.arange(3)),
        state_dict=model.state_dict(),
        message_hub=dict(
            log_scalars={
                'train/loss': history,
                'val/never_updated': HistoryBuffer()  # empty arrays: bytes()
            }))
    path = str(tmp_path / 'epoch_3.pth')
    torch.save(ckpt, path)
    return path, model


@pytest.fixture
def plain_ckpt(tmp_path):
    model = _model()
    path = str(tmp_path / 'published.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return path, model


def test_training_checkpoint_premise(training_ckpt):
    """torch's own default (weights_only=True) refuses the file."""
    path, _ = training_ckpt
    with pytest.raises(Exception, match='weights_only|Unsupported global'):
        torch.load(path, weights_only=True)


def test_training_checkpoint_loads_through_mmengine(training_ckpt):
    path, model = training_ckpt
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # safe loading: no fallback warning
        ckpt = CheckpointLoader.load_checkpoint(path)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(0.375)
    assert buf.statistics('max') == pytest.approx(0.5)
    assert ckpt['meta']['seed'] == 7
    assert isinstance(ckpt['meta']['lr'], np.float64)
    np.testing.assert_array_equal(ckpt['meta']['arr'], np.arange(3))

    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        load_checkpoint(fresh, path, map_location='cpu')
    for key, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)


def test_training_checkpoint_never_fully_unpickled(training_ckpt, monkeypatch):
    path, _ = training_ckpt
    real_load = torch.load

    def guarded_load(*args, **kwargs):
        assert kwargs.get('weights_only') is True, 'full unpickling'
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', guarded_load)
    ckpt = load_checkpoint_file(path)
    assert ckpt['meta']['epoch'] == 3


def test_training_checkpoint_fails_in_weights_only_mode(training_ckpt):
    path, _ = training_ckpt
    with weights_only_mode():
        with pytest.raises(
                CheckpointRefusedError, match='weights_only=False') as err:
            CheckpointLoader.load_checkpoint(path)
        assert path in str(err.value) and TRUST_ENV in str(err.value)
        with pytest.raises(CheckpointRefusedError):
            load_checkpoint(_model(), path)
    # the mode ends with the block; non-strict mode is the default
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        CheckpointLoader.load_checkpoint(path)
        with weights_only_mode(strict=False):
            CheckpointLoader.load_checkpoint(path)
        # the caller's explicit trust loads without a warning
        ckpt = load_checkpoint_file(path, weights_only=False)
    assert ckpt['meta']['epoch'] == 3


def test_plain_checkpoint_loads_weights_only(plain_ckpt):
    path, model = plain_ckpt
    direct = torch.load(path, weights_only=True)
    ours = load_checkpoint_file(path, weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(direct['state_dict'][key], value)
        torch.testing.assert_close(ours['state_dict'][key], value)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # safe loading: no warning
        ckpt = CheckpointLoader.load_checkpoint(path)
        with weights_only_mode():
            fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            load_checkpoint(fresh, path)
    assert set(ckpt['state_dict']) == set(model.state_dict())
    torch.testing.assert_close(fresh[0].weight, model[0].weight)


def test_missing_checkpoint(tmp_path):
    path = str(tmp_path / 'nowhere.pth')
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        CheckpointLoader.load_checkpoint(path)


def test_work_dir_stands_for_its_last_checkpoint(plain_ckpt, tmp_path):
    path, model = plain_ckpt
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(FileNotFoundError, match='last_checkpoint record'):
        load_checkpoint_file(str(work))
    (work / 'last_checkpoint').write_text(f'{path}\n')
    ckpt = CheckpointLoader.load_checkpoint(str(work))
    torch.testing.assert_close(ckpt['state_dict']['0.weight'],
                               model.state_dict()['0.weight'])


def test_local_scheme_is_replaced():
    loader = CheckpointLoader._get_checkpoint_loader('/some/file.pth')
    assert loader.__module__ == compat.__name__


class _CreatesMarker:
    """Unpickles to ``open(marker, 'w')``: creates an empty marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


class _Reduce:
    """Unpickles to ``func(*args)`` (then ``__setstate__(state)``)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        if self.state is None:
            return (self.func, self.args)
        return (self.func, self.args, self.state)


@pytest.fixture
def no_trust(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


@pytest.fixture
def hostile_ckpt(tmp_path):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'hostile.pth')
    torch.save(
        dict(
            state_dict=_model().state_dict(),
            meta=dict(payload=_CreatesMarker(marker))), path)
    return path, marker


def test_hostile_checkpoint_is_refused(hostile_ckpt, no_trust):
    path, marker = hostile_ckpt
    loads = [
        lambda: load_checkpoint_file(path),
        lambda: load_checkpoint_file(path, weights_only=True),
        lambda: CheckpointLoader.load_checkpoint(path),
        lambda: load_checkpoint(_model(), path, map_location='cpu'),
    ]
    for load in loads:
        with pytest.raises(CheckpointRefusedError) as err:
            load()
        message = str(err.value)
        assert path in message
        assert f'{TRUST_ENV}=1' in message
        assert 'open' in message  # what was refused
        assert not marker.exists()
    with weights_only_mode(), pytest.raises(CheckpointRefusedError):
        load_checkpoint(_model(), path)
    assert isinstance(err.value, pickle.UnpicklingError)
    assert not marker.exists()


def test_getattr_only_resolves_history_buffer_statistics(tmp_path, no_trust):
    refused = [(HistoryBuffer, '__init__'),
               (HistoryBuffer, 'register_statistics'), (np.dtype, 'mro'),
               (torch.Tensor, 'new_empty')]
    for owner, name in refused:
        path = str(tmp_path / f'getattr_{name}.pth')
        torch.save(dict(meta=dict(x=_Reduce(getattr, (owner, name)))), path)
        with pytest.raises(CheckpointRefusedError, match='getattr') as err:
            load_checkpoint_file(path)
        assert path in str(err.value)
    for name in ('min', 'max', 'current', 'mean'):
        path = str(tmp_path / f'method_{name}.pth')
        torch.save(dict(f=getattr(HistoryBuffer, name)), path)
        assert load_checkpoint_file(path)['f'] is getattr(HistoryBuffer, name)
    # the allow-list holds no general-purpose escape hatch
    allowed = dict((name, obj) for obj, name in compat.mmengine_safe_globals())
    assert allowed['builtins.getattr'] is not getattr
    for name in allowed:
        assert not name.startswith(('os.', 'posix.', 'subprocess.', 'sys.'))
        assert name not in ('builtins.eval', 'builtins.exec',
                            'builtins.__import__', 'builtins.open')


def test_history_buffer_statistics_cannot_be_replaced(tmp_path, no_trust):
    state = dict(
        max_length=10,
        _log_history=np.array([1.0]),
        _count_history=np.array([1]),
        statistics_methods=dict(mean=np.ndarray, evil=np.dtype))
    path = str(tmp_path / 'poisoned.pth')
    torch.save(dict(buf=_Reduce(HistoryBuffer, (), state)), path)
    buf = load_checkpoint_file(path)['buf']
    assert isinstance(buf, HistoryBuffer)
    assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.mean
    assert 'evil' not in HistoryBuffer._statistics_methods
    assert buf.mean() == 1.0


def test_numpy_1_names_are_allowed(tmp_path, no_trust):
    """Checkpoints written with numpy < 2 name numpy.core.multiarray."""
    src = str(tmp_path / 'np2.pth')
    dst = str(tmp_path / 'np1.pth')
    torch.save(dict(arr=np.arange(3), eta=np.float64(2.5)), src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith('data.pkl'):
                assert b'numpy._core.multiarray' in data
                data = data.replace(b'numpy._core.multiarray',
                                    b'numpy.core.multiarray')
            zout.writestr(info, data)
    ckpt = load_checkpoint_file(dst)
    np.testing.assert_array_equal(ckpt['arr'], np.arange(3))
    assert ckpt['eta'] == 2.5


def test_opt_in_unpickles_fully(tmp_path, monkeypatch):
    path = str(tmp_path / 'dated.pth')
    when = datetime.date(2024, 5, 17)  # benign, but not allow-listed
    torch.save(
        dict(state_dict=_model().state_dict(), meta=dict(when=when)), path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    assert not checkpoints_trusted()
    with pytest.raises(CheckpointRefusedError, match='datetime.date'):
        CheckpointLoader.load_checkpoint(path)
    for value in ('0', '', 'no'):
        monkeypatch.setenv(TRUST_ENV, value)
        with pytest.raises(CheckpointRefusedError):
            load_checkpoint_file(path)
    monkeypatch.setenv(TRUST_ENV, '1')
    assert checkpoints_trusted()
    with pytest.warns(UserWarning, match=f'full unpickling.*{TRUST_ENV}'):
        ckpt = CheckpointLoader.load_checkpoint(path)
    assert ckpt['meta']['when'] == when
    # strict mode (published models only) ignores the opt-in
    with weights_only_mode(), pytest.raises(CheckpointRefusedError):
        load_checkpoint_file(path)
    # so does nothing else: the caller's explicit trust needs no variable
    monkeypatch.delenv(TRUST_ENV)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert load_checkpoint_file(
            path, weights_only=False)['meta']['when'] == when


# ------------------------------------------------------- CPU distributed

_DIST_VARS = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'LOCAL_RANK')


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for key in _DIST_VARS:
        monkeypatch.delenv(key, raising=False)


def test_init_cpu_distributed_other_launchers(no_cuda):
    assert init_cpu_distributed('none') is False
    assert init_cpu_distributed('slurm') is False


def test_init_cpu_distributed_needs_env(no_cuda, monkeypatch):
    with pytest.raises(RuntimeError, match='RANK.*torchrun'):
        init_cpu_distributed('pytorch')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    with pytest.raises(RuntimeError, match='MASTER_PORT'):
        init_cpu_distributed('pytorch')


def test_init_cpu_distributed_with_cuda_does_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    for key in _DIST_VARS:
        monkeypatch.delenv(key, raising=False)
    assert init_cpu_distributed('pytorch') is False  # mmengine's job


def test_init_cpu_distributed_gloo_group(no_cuda, monkeypatch):
    if dist.is_initialized():
        pytest.skip('another test left a process group initialised')
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(_free_port()))
    try:
        assert init_cpu_distributed('pytorch') is True
        assert dist.is_initialized()
        assert dist.get_backend() == 'gloo'
        assert dist.get_world_size() == 1 and dist.get_rank() == 0
        value = torch.tensor([2.0, 3.0])
        dist.all_reduce(value)
        assert value.tolist() == [2.0, 3.0]
        # a group exists already: nothing to do
        assert init_cpu_distributed('pytorch') is False
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert not dist.is_initialized()


def test_cpu_ddp_wrapper_cfg(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(model=dict(type='X')))
    cpu_ddp_wrapper_cfg(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', device_ids=None)
    cfg = Config(
        dict(
            model_wrapper_cfg=dict(
                type='MMDistributedDataParallel',
                find_unused_parameters=True)))
    cpu_ddp_wrapper_cfg(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel',
        find_unused_parameters=True,
        device_ids=None)
    # with CUDA the config is left alone
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = Config(dict(model=dict(type='X')))
    cpu_ddp_wrapper_cfg(cfg)
    assert 'model_wrapper_cfg' not in cfg


# ------------------------------------------------------- mmaff:: config bases

_CAM_CONFIG = ('affinitynet/'
               'affinitynet-cam_resnet38d_4xb4-15e_voc12aug-448x448.py')


def _fake_mim_root(root) -> None:
    (root / 'configs' / '_base_').mkdir(parents=True)
    (root / 'model-index.yml').write_text('Import: []\n')
    (root / 'configs' / '_base_' / 'x.py').write_text('x = 1\n')


def test_mim_root_of_this_install():
    """The editable install (or a wheel's ``.mim``) has the configs."""
    package_dir = osp.dirname(osp.abspath(mmaff.__file__))
    root = compat.mim_root()
    assert root in (osp.join(package_dir, '.mim'), osp.dirname(package_dir))
    for name in ('configs', 'tools'):
        assert osp.isdir(osp.join(root, name))
    assert osp.isfile(osp.join(root, 'model-index.yml'))
    assert compat.resolve_config_path(f'mmaff::{_CAM_CONFIG}') == \
        osp.join(root, 'configs', _CAM_CONFIG)
    assert compat.resolve_config_path(_CAM_CONFIG) == \
        osp.join(root, 'configs', _CAM_CONFIG)


def test_mim_root_prefers_the_package_mim(tmp_path):
    package_dir = tmp_path / 'site' / 'mmaff'
    package_dir.mkdir(parents=True)
    # a site-packages with a stray configs/ is no mmaff checkout
    (tmp_path / 'site' / 'configs').mkdir()
    with pytest.raises(FileNotFoundError, match='configs are not installed'):
        compat.mim_root(str(package_dir))
    # an mmaff checkout above the package (editable install)
    _fake_mim_root(tmp_path / 'site2')
    (tmp_path / 'site2' / 'mmaff').mkdir()
    assert compat.mim_root(str(tmp_path / 'site2' / 'mmaff')) == \
        str(tmp_path / 'site2')
    # the package's .mim (a wheel install) wins over anything above it
    _fake_mim_root(package_dir / '.mim')
    assert compat.mim_root(str(package_dir)) == str(package_dir / '.mim')
    assert compat.resolve_config_path(
        'mmaff::_base_/x.py', str(package_dir)) == \
        str(package_dir / '.mim' / 'configs' / '_base_' / 'x.py')


def test_resolve_config_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        compat.resolve_config_path('mmaff::affinitynet/no_such.py')
    # nothing outside configs/ is reachable
    with pytest.raises(FileNotFoundError):
        compat.resolve_config_path('mmaff::../setup.py')
    with pytest.raises(FileNotFoundError):
        compat.resolve_config_path('mmaff::' + osp.abspath(__file__))
    with pytest.raises(ValueError, match='not an mmaff:: config'):
        compat.resolve_config_path('mmseg::_base_/default_runtime.py')


def test_mmaff_scope_base_with_mmseg_bases(tmp_path):
    """A user's config outside the repo inherits ``mmaff::`` (and, through
    it, ``mmseg::``) bases; other scopes still go to mmengine."""
    assert compat.patch_config_scope() is True  # applied by import mmaff
    cfg_file = tmp_path / 'my_cam.py'
    cfg_file.write_text(f"_base_ = 'mmaff::{_CAM_CONFIG}'\n"
                        'train_cfg = dict(max_iters=10)\n')
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'CAMClassifier'
    assert cfg.model._scope_ == 'mmaff'  # built from mmaff's registries
    assert cfg.default_scope == 'mmaff'
    assert cfg.train_cfg.max_iters == 10
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'  # merged, not replaced
    text = cfg.text
    assert compat.resolve_config_path(_CAM_CONFIG) in text
    assert osp.join('mmseg', '.mim', 'configs', '_base_',
                    'default_runtime.py') in text
    # mmseg:: bases of the user's own config are mmengine's business
    cfg_file.write_text("_base_ = 'mmseg::_base_/schedules/schedule_20k.py'\n")
    assert Config.fromfile(str(cfg_file)).train_cfg.max_iters == 20000


def test_patch_config_scope_noop_when_mmengine_supports_mmaff(monkeypatch):
    from mmengine.config.utils import MODULE2PACKAGE
    patched = Config.__dict__['_get_cfg_path']
    monkeypatch.setitem(compat._PATCHED, 'config_scope', False)
    monkeypatch.setitem(MODULE2PACKAGE, 'mmaff', 'mmaff')
    assert compat.patch_config_scope() is False
    assert Config.__dict__['_get_cfg_path'] is patched
    assert compat._PATCHED['config_scope'] is False


def test_without_the_patch_mmaff_scope_fails(tmp_path):
    """The premise: plain mmengine refuses ``mmaff::`` bases."""
    cfg_file = tmp_path / 'my_cam.py'
    cfg_file.write_text(f"_base_ = 'mmaff::{_CAM_CONFIG}'\n")
    original = Config._get_cfg_path._mmaff_original
    with pytest.raises(AssertionError, match='does not support to load mmaff'):
        original(f'mmaff::{_CAM_CONFIG}', str(cfg_file))

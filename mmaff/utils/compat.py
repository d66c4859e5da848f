# Copyright (c) mmaff contributors. All rights reserved.
"""The three fixes that the pinned environment needs, in one place.

Each fix is a no-op where the environment does not need it:

1. :func:`patch_mmcv_ops` - ``mmcv-lite`` has no compiled ops (``mmcv._ext``),
   yet mmseg 1.2.2 imports ``mmcv.ops`` unguarded in four modules. We register
   a light ``mmcv.ops`` package that exposes the pure-PyTorch
   ``mmcv/ops/point_sample.py`` and raises ``ModuleNotFoundError`` for any
   other name, so mmseg's own guarded imports behave as without mmcv-full.
   Nothing happens when full mmcv (with ``mmcv._ext``) is installed.
2. :func:`patch_checkpoint_loading` - torch >= 2.6 loads with
   ``weights_only=True`` by default while mmengine 0.10.7 calls ``torch.load``
   without the argument, so training checkpoints (which hold
   ``HistoryBuffer``, numpy objects, ...) fail to load. mmengine's local
   scheme is re-registered with :func:`load_checkpoint_file`, which loads
   safely (``weights_only=True``) first and falls back to full unpickling
   only for the user's own training checkpoints (with a warning), unless
   strict mode (:func:`weights_only_mode`) forbids it. Published models
   (``publish_model.py``) always load with ``weights_only=True``.
3. :func:`init_cpu_distributed` - mmengine's ``_init_dist_pytorch`` always
   calls ``torch.cuda.set_device``, which fails on machines without CUDA.
   When CUDA is absent we initialise a gloo process group first (the Runner
   skips its own init when a group exists) and tell the DDP wrapper not to
   pin a device.
"""
import contextlib
import importlib.util
import os
import os.path as osp
import sys
import types
import warnings
from typing import Iterator, Optional

import torch

_PATCHED = {'mmcv_ops': False, 'checkpoint': False}
# None: safe first, full unpickling as a warned fallback; True: safe only.
_WEIGHTS_ONLY: Optional[bool] = None


def _has_compiled_mmcv_ops() -> bool:
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


# Names that mmseg imports from mmcv.ops without a guard (besides
# point_sample): they resolve to a stand-in that fails only when called.
_UNGUARDED_NAMES = ('sigmoid_focal_loss', )


def _missing_op_message(name: str) -> str:
    return (f"mmcv.ops.{name} needs mmcv's compiled ops (mmcv._ext), which "
            'mmcv-lite does not ship. Install full mmcv>=2.0.0rc4,<2.2.0 to '
            'use it.')


def _missing_op(name: str):

    def _raise(*args, **kwargs):
        raise ModuleNotFoundError(_missing_op_message(name), name='mmcv._ext')

    _raise.__name__ = name
    return _raise


class _LiteOpsModule(types.ModuleType):
    """``mmcv.ops`` stand-in: pure-PyTorch point sampling, nothing else."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        if name in _UNGUARDED_NAMES:
            return _missing_op(name)
        raise ModuleNotFoundError(
            _missing_op_message(name), name='mmcv._ext')


def patch_mmcv_ops() -> bool:
    """Install the light ``mmcv.ops`` package if compiled ops are missing.

    Returns:
        bool: True if the light package is (now) in place, False if the real
        ``mmcv.ops`` is usable and nothing was changed.
    """
    if _PATCHED['mmcv_ops']:
        return True
    if _has_compiled_mmcv_ops():
        return False
    existing = sys.modules.get('mmcv.ops')
    if existing is not None and not isinstance(existing, _LiteOpsModule):
        return False  # someone imported a working mmcv.ops already
    import mmcv
    ops_dir = osp.join(osp.dirname(mmcv.__file__), 'ops')
    spec = importlib.util.spec_from_file_location(
        'mmcv.ops.point_sample', osp.join(ops_dir, 'point_sample.py'))
    point_sample_mod = importlib.util.module_from_spec(spec)
    ops = _LiteOpsModule('mmcv.ops')
    ops.__path__ = []  # a package, so 'mmcv.ops.x' lookups go through us
    ops.__file__ = osp.join(ops_dir, '__init__.py')
    sys.modules['mmcv.ops'] = ops
    sys.modules['mmcv.ops.point_sample'] = point_sample_mod
    spec.loader.exec_module(point_sample_mod)
    for name in ('point_sample', 'bilinear_grid_sample',
                 'rel_roi_point_to_rel_img_point'):
        if hasattr(point_sample_mod, name):
            setattr(ops, name, getattr(point_sample_mod, name))
    ops.point_sample_module = point_sample_mod
    mmcv.ops = ops
    _PATCHED['mmcv_ops'] = True
    return True


def _torch_defaults_to_weights_only() -> bool:
    major, minor = (int(x) for x in torch.__version__.split('.')[:2])
    return (major, minor) >= (2, 6)


@contextlib.contextmanager
def weights_only_mode(strict: bool = True) -> Iterator[None]:
    """Within the block, checkpoint loading through mmengine is safe-only.

    Args:
        strict (bool): True forbids the full-unpickling fallback.
    """
    global _WEIGHTS_ONLY
    previous = _WEIGHTS_ONLY
    _WEIGHTS_ONLY = True if strict else None
    try:
        yield
    finally:
        _WEIGHTS_ONLY = previous


def load_checkpoint_file(filename: str,
                         map_location=None,
                         weights_only: Optional[bool] = None) -> dict:
    """Load a local checkpoint file with an explicit ``weights_only`` choice.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Same as :func:`torch.load`.
        weights_only (bool, optional): True loads tensors and plain containers
            only (published models); False unpickles everything (the user's
            own training checkpoints); None tries True first and falls back
            to False with a warning, unless :func:`weights_only_mode` is
            active. Defaults to None.

    Returns:
        dict: The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    if weights_only is None and _WEIGHTS_ONLY:
        weights_only = True
    if weights_only is not None:
        return torch.load(
            filename, map_location=map_location, weights_only=weights_only)
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises UnpicklingError
        if 'weights_only' not in str(err) and 'Unsupported global' not in str(
                err):
            raise
        warnings.warn(
            f'{filename} holds Python objects beyond tensors (a training '
            'checkpoint); loading it with full unpickling. Only load '
            'checkpoints you trust.')
        return torch.load(
            filename, map_location=map_location, weights_only=False)


def patch_checkpoint_loading() -> bool:
    """Re-register mmengine's local checkpoint scheme (torch >= 2.6 only).

    Returns:
        bool: True if the scheme was replaced.
    """
    if _PATCHED['checkpoint']:
        return True
    if not _torch_defaults_to_weights_only():
        return False
    from mmengine.runner.checkpoint import CheckpointLoader

    def _load_from_local(filename, map_location):
        return load_checkpoint_file(filename, map_location)

    CheckpointLoader.register_scheme(
        prefixes='', loader=_load_from_local, force=True)
    _PATCHED['checkpoint'] = True
    return True


def init_cpu_distributed(launcher: str) -> bool:
    """Start a gloo process group for ``launcher='pytorch'`` without CUDA.

    Args:
        launcher (str): The tools' ``--launcher`` value.

    Returns:
        bool: True if this function initialised the process group.
    """
    import torch.distributed as dist
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    if dist.is_available() and dist.is_initialized():
        return False
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if key not in os.environ:
            raise RuntimeError(
                f'--launcher pytorch needs the environment variable {key}; '
                'start the tool with torchrun (tools/dist_train.sh).')
    dist.init_process_group(
        backend='gloo',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']))
    return True


def cpu_ddp_wrapper_cfg(cfg) -> None:
    """Make the DDP wrapper of ``cfg`` CPU-friendly (no ``device_ids``).

    Args:
        cfg (mmengine.Config): The run's config, changed in place when CUDA is
            unavailable.
    """
    if torch.cuda.is_available():
        return
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def apply_all() -> None:
    """Apply the fixes that need no arguments (import time of mmaff)."""
    patch_mmcv_ops()
    patch_checkpoint_loading()

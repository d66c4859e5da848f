# Copyright (c) mmaff contributors. All rights reserved.
"""The three fixes that the pinned environment needs, in one place.

Fixes 1 and 3 are no-ops where the environment does not need them:

1. :func:`patch_mmcv_ops` - ``mmcv-lite`` has no compiled ops (``mmcv._ext``),
   yet mmseg 1.2.2 imports ``mmcv.ops`` unguarded in four modules. We register
   a light ``mmcv.ops`` package that exposes the pure-PyTorch
   ``mmcv/ops/point_sample.py`` and raises ``ModuleNotFoundError`` for any
   other name, so mmseg's own guarded imports behave as without mmcv-full.
   Nothing happens when full mmcv (with ``mmcv._ext``) is installed.
2. :func:`patch_checkpoint_loading` - mmengine 0.10.7 calls ``torch.load``
   without ``weights_only``: with torch >= 2.6 training checkpoints (which
   hold ``HistoryBuffer``, numpy objects, ...) fail to load, with older torch
   every file is fully unpickled and may run code. mmengine's local scheme
   (``tools/test.py CKPT``, ``--resume``, ``load_from``, ``init_cfg``
   ``Pretrained``) is re-registered with :func:`load_checkpoint_file`, which
   always loads with ``weights_only=True`` plus an allow-list of exactly what
   mmengine's training checkpoints hold (:func:`mmengine_safe_globals`).
   Anything else is refused with :class:`CheckpointRefusedError`; full
   unpickling happens only for files the user trusts explicitly: the
   environment variable ``MMAFF_TRUST_CHECKPOINTS=1`` (:data:`TRUST_ENV`) or
   ``weights_only=False`` passed by the caller (the tools'
   ``--trust-checkpoint`` flag). Strict mode (:func:`weights_only_mode`,
   ``init_model``'s default) accepts tensors and plain containers only
   (published models).
3. :func:`init_cpu_distributed` - mmengine's ``_init_dist_pytorch`` always
   calls ``torch.cuda.set_device``, which fails on machines without CUDA.
   When CUDA is absent we initialise a gloo process group first (the Runner
   skips its own init when a group exists) and tell the DDP wrapper not to
   pin a device.
4. :func:`patch_config_scope` - mmengine resolves ``_base_ = 'pkg::path'``
   only for the OpenMMLab packages it lists (``MODULE2PACKAGE``), so
   ``mmaff::`` bases fail with "mmengine does not support to load mmaff
   config". ``Config._get_cfg_path`` is wrapped so that ``mmaff::<path>``
   resolves to mmaff's shipped configs (under :func:`mim_root`: the
   installed package's ``.mim/configs``, or the checkout's ``configs/`` for
   an editable install); every other base goes to mmengine unchanged.
   Nothing happens when mmengine lists mmaff itself.
"""
import contextlib
import importlib.util
import os
import os.path as osp
import pickle
import re
import sys
import types
import warnings
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import torch

_PATCHED = {'mmcv_ops': False, 'checkpoint': False, 'config_scope': False}
# None: weights-only with the mmengine allow-list (full unpickling only when
# trusted); True: weights-only without the allow-list (published models).
_WEIGHTS_ONLY: Optional[bool] = None

#: Environment variable that lets checkpoints refused by the safe loader be
#: fully unpickled (``1``, ``true``, ``yes`` or ``on``).
TRUST_ENV = 'MMAFF_TRUST_CHECKPOINTS'
_TRUE_VALUES = ('1', 'true', 'yes', 'on')


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


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint was not loaded because unpickling it could run code."""


def checkpoints_trusted() -> bool:
    """Whether the user opted in to full unpickling (:data:`TRUST_ENV`).

    Returns:
        bool: True if ``MMAFF_TRUST_CHECKPOINTS`` is 1, true, yes or on.
    """
    return os.environ.get(TRUST_ENV, '').strip().lower() in _TRUE_VALUES


# The statistics methods HistoryBuffer pickles with its state. Pickle
# protocol 2 (torch.save's) writes them as getattr(HistoryBuffer, name).
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: Any, name: Any) -> Callable:
    """``getattr`` as the safe loader sees it: HistoryBuffer's statistics.

    Resolves ``getattr(HistoryBuffer, 'min' | 'max' | 'current' | 'mean')``
    and nothing else, so the name ``builtins.getattr`` in a checkpoint cannot
    reach any other attribute.
    """
    from mmengine.logging import HistoryBuffer
    if (owner is HistoryBuffer and isinstance(name, str)
            and name in _HISTORY_BUFFER_METHODS):
        return getattr(HistoryBuffer, name)
    owner_name = getattr(owner, '__qualname__', type(owner).__qualname__)
    raise pickle.UnpicklingError(
        f'refused getattr({owner_name}, {name!r}): only HistoryBuffer.'
        f"{'/'.join(_HISTORY_BUFFER_METHODS)} may be looked up")


def mmengine_safe_globals() -> List[Tuple[Callable, str]]:
    """The globals a training checkpoint written by mmengine needs.

    Beyond torch's own weights-only set (tensors, storages, ``OrderedDict``,
    ``_codecs.encode``, ...), mmengine's checkpoints hold the message hub's
    ``HistoryBuffer`` objects (numpy arrays, and the statistics methods as
    ``getattr(HistoryBuffer, name)``) and numpy scalars (``eta``, metrics).
    Every entry builds data and runs no code chosen by the file:

    - ``HistoryBuffer``: a plain class; its ``__setstate__`` only stores the
      given values.
    - ``numpy.ndarray``, ``numpy.dtype`` and ``numpy._core.multiarray``'s
      ``_reconstruct`` / ``scalar``: numpy's own array, dtype and scalar
      rebuilders (object arrays only hold objects built by this same
      loader), also under their numpy < 2 names ``numpy.core.multiarray.*``.
    - the classes of numpy's built-in dtypes (``numpy.dtypes.Float64DType``
      ...): a pickled dtype is an instance of one of them, whose state the
      loader must be allowed to set.
    - ``builtins.bytes``: pickle protocol 2 writes an empty ``bytes`` (the
      data of an empty array, e.g. a ``HistoryBuffer`` never updated) as
      ``bytes()``; it only builds a bytes object (torch allows
      ``bytearray`` already).
    - ``builtins.getattr``: mapped to :func:`_history_buffer_method`, which
      only returns ``HistoryBuffer.min/max/current/mean``.

    Returns:
        list[tuple]: ``(object, name in the pickle)`` pairs for
        :func:`torch.serialization.safe_globals`.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    multiarray = (
        np._core.multiarray if hasattr(np, '_core') else np.core.multiarray)
    entries = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
        (bytes, 'builtins.bytes'),
        (_history_buffer_method, 'builtins.getattr'),
    ]
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{module}._reconstruct'))
        entries.append((multiarray.scalar, f'{module}.scalar'))
    dtype_classes = {type(np.dtype(code)) for code in np.typecodes['All']}
    for cls in sorted(dtype_classes, key=lambda c: c.__qualname__):
        if cls is not np.dtype:
            entries.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return entries


@contextlib.contextmanager
def _mmengine_globals_allowed() -> Iterator[None]:
    """Allow-list :func:`mmengine_safe_globals` for the block.

    Only entries not registered already are added (and removed afterwards).
    ``HistoryBuffer``'s class-level statistics table, which its
    ``__setstate__`` updates from the file, is restored on exit (plus the
    default methods, as ``__setstate__`` registers them), so a file cannot
    replace the methods other buffers call.
    """
    from mmengine.logging import HistoryBuffer
    serialization = torch.serialization
    methods = HistoryBuffer._statistics_methods
    saved = dict(methods)
    try:
        if hasattr(serialization, 'safe_globals'):
            present = set(serialization.get_safe_globals())
            missing = [g for g in mmengine_safe_globals() if g not in present]
            with serialization.safe_globals(missing):
                yield
        else:  # torch < 2.5: no allow-list, training checkpoints need trust
            yield
    finally:
        methods.clear()
        methods.update(saved)
        for name in _HISTORY_BUFFER_METHODS:  # what __setstate__ registers
            methods.setdefault(name, getattr(HistoryBuffer, name))


def _refusal_reason(message: str) -> str:
    """What the weights-only unpickler refused, from torch's error."""
    found = re.search(r'GLOBAL (\S+) was not an allowed global', message)
    if found:
        return f'it needs `{found.group(1)}`, which is not allow-listed'
    found = re.search(r'GLOBAL (\S+) whose module (\S+) is blocked', message)
    if found:
        return (f'it needs `{found.group(1)}` (module `{found.group(2)}` is '
                'never allowed)')
    # otherwise torch's own words, without its advice to unpickle fully
    skip = ('Weights only load failed', 'Check the documentation',
            'Please file an issue', '(1) In PyTorch', '(2) Alternatively')
    lines = [
        line.strip() for line in message.splitlines()
        if line.strip() and not line.strip().startswith(skip)
    ]
    return lines[0] if lines else 'weights-only unpickling refused it'


def _is_weights_only_refusal(err: BaseException) -> bool:
    if not isinstance(err, pickle.UnpicklingError):
        return False
    text = str(err)
    return any(key in text for key in ('Weights only load failed',
                                       'weights_only', 'Unsupported global'))


def _refusal_message(filename: str, reason: str, strict: bool) -> str:
    head = f'Refused to load the checkpoint {filename}: {reason}. '
    if strict:
        return head + (
            'This load accepts weights only (tensors and plain Python '
            'containers, as published models hold; the default of '
            'mmaff.apis.init_model): unpickling anything else can run code '
            'hidden in the file. For an mmengine training checkpoint pass '
            'weights_only=False (it then loads safely with an allow-list); '
            'only if you trust this file and it needs full unpickling, also '
            f'set the environment variable {TRUST_ENV}=1.')
    return head + (
        'Checkpoints load with torch.load(weights_only=True) plus only what '
        'mmengine training checkpoints hold (HistoryBuffer, numpy arrays, '
        'scalars and dtypes): unpickling anything else can run code hidden '
        'in the file. Only if you trust this file, load it with full '
        f'unpickling: set the environment variable {TRUST_ENV}=1 '
        '(tools/misc/publish_model.py and '
        'tools/analysis_tools/visualize_pipeline.py also take '
        '--trust-checkpoint).')


@contextlib.contextmanager
def weights_only_mode(strict: bool = True) -> Iterator[None]:
    """Within the block, checkpoint loading through mmengine is weights-only.

    Args:
        strict (bool): True accepts tensors and plain containers only
            (published models), refusing even mmengine's training
            checkpoints and ignoring :data:`TRUST_ENV`. False is the default
            behaviour (see :func:`load_checkpoint_file`).
    """
    global _WEIGHTS_ONLY
    previous = _WEIGHTS_ONLY
    _WEIGHTS_ONLY = True if strict else None
    try:
        yield
    finally:
        _WEIGHTS_ONLY = previous


def last_checkpoint_of(work_dir: str) -> str:
    """The checkpoint mmengine recorded last in a work dir.

    Args:
        work_dir (str): A training's work dir (it holds the text file
            ``last_checkpoint`` naming the checkpoint saved last).

    Returns:
        str: That checkpoint's path.
    """
    record = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(record):
        raise FileNotFoundError(
            f'{work_dir} is a folder without a last_checkpoint record: give '
            'a checkpoint file, or the work dir of a training that saved one')
    with open(record) as f:
        path = f.read().strip()
    if not path:
        raise ValueError(f'{record} is empty')
    return path


def load_checkpoint_file(filename: str,
                         map_location: Union[str, Callable, None] = None,
                         weights_only: Optional[bool] = None) -> dict:
    """Load a local checkpoint file without running code from it.

    Args:
        filename (str): Path of the checkpoint, or a training's work dir,
            which stands for the checkpoint it saved last
            (:func:`last_checkpoint_of`): configs can name "the last
            checkpoint of stage X" without an iteration number.
        map_location: Same as :func:`torch.load`.
        weights_only (bool, optional): True loads tensors and plain
            containers only (published models). None (the default, and what
            mmengine's loaders use) also accepts what mmengine training
            checkpoints hold (:func:`mmengine_safe_globals`); other files are
            refused unless :data:`TRUST_ENV` is set, in which case they are
            fully unpickled with a warning. False fully unpickles the file:
            only for a caller that trusts it explicitly (a
            ``--trust-checkpoint`` flag). Within :func:`weights_only_mode`
            None means True.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        CheckpointRefusedError: If safe loading refused the file and full
            unpickling was not allowed. The message names the file, what
            was refused and how to opt in.
    """
    filename = osp.expanduser(filename)
    if osp.isdir(filename):
        filename = last_checkpoint_of(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    if weights_only is None and _WEIGHTS_ONLY:
        weights_only = True
    if weights_only is False:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    try:
        if weights_only:
            return torch.load(
                filename, map_location=map_location, weights_only=True)
        with _mmengine_globals_allowed():
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not _is_weights_only_refusal(err):
            raise
        reason = _refusal_reason(str(err))
    if not weights_only and checkpoints_trusted():
        warnings.warn(
            f'{filename}: {reason}; loading it with full unpickling because '
            f'{TRUST_ENV} is set. Only do this for files you trust.')
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    raise CheckpointRefusedError(
        _refusal_message(filename, reason, strict=bool(weights_only)))


def patch_checkpoint_loading() -> bool:
    """Re-register mmengine's local checkpoint scheme with the safe loader.

    Done whatever the torch version: before torch 2.6 mmengine's own loader
    unpickles every file fully.

    Returns:
        bool: True if the scheme is (now) replaced.
    """
    if _PATCHED['checkpoint']:
        return True
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


#: The scope of mmaff's configs in ``_base_ = 'mmaff::<path>'``.
CONFIG_SCOPE = 'mmaff'


def _is_mim_root(root: str) -> bool:
    """Whether ``root`` holds mmaff's ``configs/`` and ``model-index.yml``."""
    return (osp.isdir(osp.join(root, 'configs'))
            and osp.isfile(osp.join(root, 'model-index.yml')))


def mim_root(package_dir: Optional[str] = None) -> str:
    """The folder with mmaff's ``configs/``, ``tools/`` and model index.

    The OpenMMLab convention: an installed package carries its configs,
    model index and tools in ``<package>/.mim`` (mmaff's ``setup.py`` copies
    them there when it builds a wheel). An editable install
    (``pip install -e .``) has no ``.mim``: its package folder is the
    checkout's ``mmaff/``, and the checkout (the folder above it) holds
    ``configs/``, ``tools/`` and ``model-index.yml`` itself. Either way
    ``<root>/tools/train.py`` is the training tool.

    Args:
        package_dir (str, optional): The ``mmaff`` package folder. Defaults
            to the one this module belongs to.

    Returns:
        str: ``<package>/.mim`` if it holds ``configs/`` and
        ``model-index.yml``, else the folder above the package if it does.

    Raises:
        FileNotFoundError: If neither does (a broken install).
    """
    if package_dir is None:
        package_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    candidates = (osp.join(package_dir, '.mim'), osp.dirname(package_dir))
    for root in candidates:
        if _is_mim_root(root):
            return root
    raise FileNotFoundError(
        f"mmaff's configs are not installed: neither {candidates[0]} nor "
        f'{candidates[1]} holds configs/ and model-index.yml. Reinstall '
        'mmaff from a wheel or sdist built by its setup.py, or install the '
        'checkout with `pip install -e .`.')


def resolve_config_path(cfg_path: str,
                        package_dir: Optional[str] = None) -> str:
    """The file that ``mmaff::<path>`` names.

    Args:
        cfg_path (str): ``mmaff::<path>`` or ``<path>``, relative to mmaff's
            ``configs/`` (e.g. ``mmaff::_base_/default_runtime.py``).
        package_dir (str, optional): See :func:`mim_root`.

    Returns:
        str: Absolute path of the config file.

    Raises:
        ValueError: If ``cfg_path`` names another scope.
        FileNotFoundError: If the config does not exist.
    """
    scope, sep, rel_path = cfg_path.partition('::')
    if not sep:
        rel_path = cfg_path
    elif scope != CONFIG_SCOPE:
        raise ValueError(f'{cfg_path} is not an {CONFIG_SCOPE}:: config')
    configs = osp.abspath(osp.join(mim_root(package_dir), 'configs'))
    path = osp.abspath(osp.join(configs, rel_path))
    inside = osp.commonpath([configs, path]) == configs
    if not inside or not osp.isfile(path):
        raise FileNotFoundError(
            f"{cfg_path}: there is no {rel_path!r} in mmaff's configs "
            f'({configs})')
    return path


def patch_config_scope() -> bool:
    """Let mmengine's configs inherit ``mmaff::<path>`` bases.

    mmengine 0.10 asserts that the scope of a ``pkg::path`` base is one of
    its ``MODULE2PACKAGE``; adding mmaff there would not do, as it then looks
    for ``<site-packages>/mmaff/.mim``, which an editable install lacks.
    ``Config._get_cfg_path`` is wrapped instead: ``mmaff::`` bases resolve
    with :func:`resolve_config_path` (scope ``mmaff``, so their components
    build from mmaff's registries, as for mmseg's bases), the rest is left to
    mmengine (``mmseg::`` bases inside mmaff's configs resolve as usual).

    The patch is applied by ``import mmaff``, which must come before
    ``Config.fromfile`` of a config with ``mmaff::`` bases: mmengine resolves
    ``_base_`` before it processes ``custom_imports``. mmaff's tools import
    mmaff first.

    Returns:
        bool: True if ``mmaff::`` bases are (now) resolved by this module,
        False if mmengine supports mmaff natively and nothing was changed.
    """
    if _PATCHED['config_scope']:
        return True
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    if CONFIG_SCOPE in MODULE2PACKAGE:
        return False
    original = Config._get_cfg_path
    prefix = f'{CONFIG_SCOPE}::'

    def _get_cfg_path(cfg_path: str,
                      filename: str) -> Tuple[str, Optional[str]]:
        if isinstance(cfg_path, str) and cfg_path.startswith(prefix):
            return resolve_config_path(cfg_path), CONFIG_SCOPE
        return original(cfg_path, filename)

    _get_cfg_path.__doc__ = original.__doc__
    _get_cfg_path._mmaff_original = original  # type: ignore[attr-defined]
    Config._get_cfg_path = staticmethod(_get_cfg_path)
    _PATCHED['config_scope'] = True
    return True


def apply_all() -> None:
    """Apply the fixes that need no arguments (import time of mmaff)."""
    patch_mmcv_ops()
    patch_checkpoint_loading()
    patch_config_scope()

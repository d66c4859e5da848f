# Copyright (c) mmaff contributors. All rights reserved.
"""mmaff's registries: children of mmseg's, in the scope ``mmaff``.

A config with ``default_scope='mmaff'`` finds mmaff's components first, then
mmseg's (the parent), then mmengine's; mmpretrain's components are reached
as ``mmpretrain.Name``. Each registry's ``locations`` also name mmseg's
modules, so building by name imports whatever is needed.

mmseg's configs (``_base_ = 'mmseg::...'``) build some components in the
``mmseg`` scope (mmengine tags every dict of a ``mmseg::`` base with
``_scope_='mmseg'``; a training loop built there builds its dataloader
there too). So that mmaff's components are found from that scope as well,
without scope prefixes in configs, each mmaff component is also registered,
under its own name, in the parent mmseg registry; it never replaces a
component that mmseg has (mmseg's keeps priority in mmseg's scope).
"""
from mmseg.registry import DATA_SAMPLERS as MMSEG_DATA_SAMPLERS
from mmseg.registry import DATASETS as MMSEG_DATASETS
from mmseg.registry import EVALUATOR as MMSEG_EVALUATOR
from mmseg.registry import HOOKS as MMSEG_HOOKS
from mmseg.registry import LOOPS as MMSEG_LOOPS
from mmseg.registry import METRICS as MMSEG_METRICS
from mmseg.registry import MODEL_WRAPPERS as MMSEG_MODEL_WRAPPERS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as \
    MMSEG_OPTIM_WRAPPER_CONSTRUCTORS
from mmseg.registry import OPTIM_WRAPPERS as MMSEG_OPTIM_WRAPPERS
from mmseg.registry import OPTIMIZERS as MMSEG_OPTIMIZERS
from mmseg.registry import PARAM_SCHEDULERS as MMSEG_PARAM_SCHEDULERS
from mmseg.registry import RUNNERS as MMSEG_RUNNERS
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS
from mmseg.registry import VISBACKENDS as MMSEG_VISBACKENDS
from mmseg.registry import VISUALIZERS as MMSEG_VISUALIZERS
from mmseg.registry import WEIGHT_INITIALIZERS as MMSEG_WEIGHT_INITIALIZERS
from mmengine.registry import Registry as _BaseRegistry


class Registry(_BaseRegistry):
    """A child registry whose modules are also visible from its parent.

    See the module docstring: registering ``Foo`` here also registers it in
    ``parent`` under the same name, unless the parent has a ``Foo``.
    """

    def _register_module(self, module, module_name=None, force=False):
        super()._register_module(module, module_name, force)
        names = module_name or module.__name__
        for name in [names] if isinstance(names, str) else names:
            if self.parent is not None and \
                    name not in self.parent.module_dict:
                self.parent._register_module(module, name)


RUNNERS = Registry('runner', parent=MMSEG_RUNNERS)
LOOPS = Registry('loop', parent=MMSEG_LOOPS)
HOOKS = Registry(
    'hook',
    parent=MMSEG_HOOKS,
    locations=['mmaff.engine.hooks', 'mmseg.engine.hooks'])
DATASETS = Registry(
    'dataset',
    parent=MMSEG_DATASETS,
    locations=['mmaff.datasets', 'mmseg.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMSEG_DATA_SAMPLERS, locations=['mmseg.datasets'])
TRANSFORMS = Registry(
    'transform',
    parent=MMSEG_TRANSFORMS,
    locations=['mmaff.datasets', 'mmseg.datasets'])
MODELS = Registry(
    'model', parent=MMSEG_MODELS, locations=['mmaff.models', 'mmseg.models'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMSEG_MODEL_WRAPPERS)
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMSEG_WEIGHT_INITIALIZERS)
OPTIMIZERS = Registry(
    'optimizer', parent=MMSEG_OPTIMIZERS, locations=['mmseg.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMSEG_OPTIM_WRAPPERS, locations=['mmseg.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMSEG_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmseg.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMSEG_PARAM_SCHEDULERS,
    locations=['mmseg.engine'])
METRICS = Registry(
    'metric',
    parent=MMSEG_METRICS,
    locations=['mmaff.evaluation', 'mmseg.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMSEG_EVALUATOR)
VISUALIZERS = Registry(
    'visualizer',
    parent=MMSEG_VISUALIZERS,
    locations=['mmaff.visualization', 'mmseg.visualization'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMSEG_VISBACKENDS, locations=['mmseg.visualization'])

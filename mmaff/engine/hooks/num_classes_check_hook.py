# Copyright (c) mmaff contributors. All rights reserved.
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from mmaff.registry import HOOKS


@HOOKS.register_module()
class NumClassesCheckHook(Hook):
    """Check that a segmentation model's heads predict the dataset's classes.

    A decode (or auxiliary) head with fewer classes than the dataset fails
    deep inside the loss with a bare ``IndexError``; one with more trains
    silently on classes no label has. Before training and testing, this hook
    compares every head's ``num_classes`` with the number of classes of the
    run's datasets (their ``metainfo['classes']``) and raises an error that
    names both. Heads without ``num_classes`` (mmaff's CAM and affinity
    heads count foreground classes or none) are not checked.
    """

    priority = 'VERY_HIGH'

    def _check(self, runner, loader_name: str) -> None:
        loader = getattr(runner, loader_name, None)
        dataset = getattr(loader, 'dataset', None)
        meta: Optional[dict] = getattr(dataset, 'metainfo', None)
        if not meta or not meta.get('classes'):
            return
        num = len(meta['classes'])
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        for name in ('decode_head', 'auxiliary_head'):
            heads = getattr(model, name, None)
            if heads is None:
                continue
            for head in heads if isinstance(heads, nn.ModuleList) \
                    else [heads]:
                got = getattr(head, 'num_classes', None)
                if got is not None and got != num:
                    raise ValueError(
                        f'{name} predicts {got} classes but the '
                        f'{loader_name} dataset ({type(dataset).__name__}) '
                        f'has {num}: {tuple(meta["classes"])}; set '
                        f'model.{name}.num_classes={num}')

    def before_train(self, runner) -> None:
        """Check against the training data."""
        self._check(runner, 'train_dataloader')

    def before_test(self, runner) -> None:
        """Check against the test data."""
        self._check(runner, 'test_dataloader')

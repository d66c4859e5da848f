# Copyright (c) mmaff contributors. All rights reserved.
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all modules of mmaff (and mmseg's) into the registries.

    Args:
        init_default_scope (bool): Whether to set the default scope to
            ``'mmaff'`` so that registries find mmaff's components first.
            Defaults to True.
    """
    import mmaff.datasets  # noqa: F401,F403
    import mmaff.engine  # noqa: F401,F403
    import mmaff.evaluation  # noqa: F401,F403
    import mmaff.models  # noqa: F401,F403
    from mmseg.utils import register_all_modules as mmseg_register
    mmseg_register(init_default_scope=False)

    if init_default_scope:
        never_created = DefaultScope.get_current_instance() is None \
            or not DefaultScope.check_instance_created('mmaff')
        if never_created:
            DefaultScope.get_instance('mmaff', scope_name='mmaff')
            return
        current_scope = DefaultScope.get_current_instance()
        if current_scope.scope_name != 'mmaff':
            warnings.warn('The current default scope '
                          f'"{current_scope.scope_name}" is not "mmaff", '
                          '`register_all_modules` will force the current'
                          'default scope to be "mmaff". If this is not '
                          'expected, please set `init_default_scope=False`.')
            new_instance_name = f'mmaff-{datetime.datetime.now()}'
            DefaultScope.get_instance(new_instance_name, scope_name='mmaff')

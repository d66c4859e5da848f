# Copyright (c) mmaff contributors. All rights reserved.
"""Named hand-overs: the files one stage writes and another reads.

Every hand-over (CAM files, confident-region maps, pseudo labels, a stage's
work dir with its checkpoints, the background threshold the CAM sweep
chose) is one key of the ``handovers`` dict of
``configs/_base_/handovers.py``, and every stage config refers to it as
``'{handovers.NAME}'`` instead of writing the folder. The values may use
``{handover_root}``; a pipeline sets ``handover_root`` to its work dir, so
one option moves every stage's inputs and outputs. See ``docs/method.md``
("Hand-overs") for the table.

mmaff's tools (``tools/train.py``, ``tools/test.py``, the stage-2 tool,
:func:`mmaff.apis.init_model`) fill the references in after the
``--cfg-options`` are merged, so ``--cfg-options handover_root=DIR`` or
``handovers.cams=DIR`` reaches every place that names them.
"""
import re
from typing import Any, Dict

__all__ = ['resolve_handovers', 'handover_values']

_REF = re.compile(r'\{handovers\.(\w+)\}')
_ROOT = '{handover_root}'


def handover_values(cfg) -> Dict[str, Any]:
    """The config's hand-overs with ``{handover_root}`` filled in.

    Args:
        cfg (Config | dict): A config with ``handovers`` (and
            ``handover_root`` when a value uses it).

    Returns:
        dict: Hand-over name -> value (paths as strings, numbers as they
        are); empty when the config has no ``handovers``.
    """
    handovers = cfg.get('handovers') or {}
    root = cfg.get('handover_root')
    values = {}
    for name, value in handovers.items():
        if isinstance(value, str) and _ROOT in value:
            if not root:
                raise KeyError(f'handovers.{name} = {value!r} uses '
                               '{handover_root}, which the config does not '
                               'set')
            value = value.replace(_ROOT, str(root).rstrip('/'))
        values[name] = value
    return values


def _fill(value: Any, values: Dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        names = [whole.group(1)] if whole else _REF.findall(value)
        for name in names:
            if name not in values:
                raise KeyError(
                    f'{where} = {value!r} names the hand-over {name!r}, '
                    f'which the config does not define; known: '
                    f'{sorted(values)} (configs/_base_/handovers.py)')
        if whole:  # keep the value's type (e.g. a threshold)
            return values[whole.group(1)]
        return _REF.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, dict):
        for key in list(value.keys()):
            value[key] = _fill(value[key], values, f'{where}.{key}')
        return value
    if isinstance(value, list):
        return [_fill(v, values, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(
            _fill(v, values, f'{where}[{i}]') for i, v in enumerate(value))
    return value


def resolve_handovers(cfg) -> None:
    """Fill every ``'{handovers.NAME}'`` of ``cfg`` in, in place.

    A string that is exactly one reference takes the hand-over's value
    (type included); references inside a longer string are formatted in.
    ``handovers`` itself is replaced by its resolved values.

    Args:
        cfg (Config | dict): The config, after ``--cfg-options``.

    Raises:
        KeyError: A reference to a hand-over the config does not define,
            naming the config key that holds it.
    """
    values = handover_values(cfg)
    if 'handovers' in cfg:
        cfg['handovers'] = dict(values)
    for key in list(cfg.keys()):
        if key in ('handovers', 'handover_root'):
            continue
        cfg[key] = _fill(cfg[key], values, key)

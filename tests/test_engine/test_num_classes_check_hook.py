# Copyright (c) mmaff contributors. All rights reserved.
from types import SimpleNamespace

import pytest
from torch import nn

from mmaff.engine.hooks import NumClassesCheckHook


def _runner(head_classes, aux_classes=None, data_classes=('bg', 'a', 'b')):
    model = nn.Module()
    model.decode_head = SimpleNamespace(num_classes=head_classes)
    if aux_classes is not None:
        model.auxiliary_head = nn.ModuleList()
        for n in aux_classes:
            aux = nn.Module()
            aux.num_classes = n
            model.auxiliary_head.append(aux)
    dataset = SimpleNamespace(metainfo=dict(classes=data_classes))
    loader = SimpleNamespace(dataset=dataset)
    return SimpleNamespace(
        model=model, train_dataloader=loader, test_dataloader=loader)


@pytest.mark.parametrize('num', [2, 4])
def test_head_classes_must_match_the_data(num):
    hook = NumClassesCheckHook()
    with pytest.raises(ValueError,
                       match=rf'decode_head predicts {num} classes.*has 3'):
        hook.before_train(_runner(num))
    with pytest.raises(ValueError, match='num_classes=3'):
        hook.before_test(_runner(num))


def test_matching_heads_pass_and_auxiliary_heads_are_checked():
    hook = NumClassesCheckHook()
    hook.before_train(_runner(3))
    hook.before_train(_runner(3, aux_classes=[3, 3]))
    with pytest.raises(ValueError, match='auxiliary_head predicts 21'):
        hook.before_train(_runner(3, aux_classes=[3, 21]))
    # no classes in the metainfo, or no head with num_classes: nothing to do
    hook.before_train(_runner(5, data_classes=()))
    hook.before_test(SimpleNamespace(model=nn.Module(), test_dataloader=None))

# Copyright (c) mmaff contributors. All rights reserved.
from .transforms import *  # noqa: F401,F403
from .base_voc import OwnClassesVOCDataset
from .image_labels import (labels_from_mask, labels_from_xml, read_label_file,
                           write_label_file)
from .pseudo_label import PseudoLabelDataset
from .voc_image_label import VOCImageLabelDataset

__all__ = [
    'OwnClassesVOCDataset', 'VOCImageLabelDataset', 'PseudoLabelDataset',
    'labels_from_xml', 'labels_from_mask', 'read_label_file',
    'write_label_file'
]

# Copyright (c) mmaff contributors. All rights reserved.
"""Pure tensor functions: the one home of each formula of the method."""
from .affinity import (affinity_from_features, affinity_labels, pair_offsets,
                       pair_slices, pair_valid_mask)
from .cam import (aggregate_cams, background_score, cams_to_label,
                  normalize_cams, pool_to_grid)
from .confident import (confident_region_map, confident_region_stats,
                        fuse_confident_regions, summarize_confident_stats)
from .crf import dense_crf
from .par import par_affinity, par_offsets, par_refine
from .propagation import (crf_label, propagate_cams, refine_label,
                          scores_to_label)
from .random_walk import (chebyshev_power_coefficients, random_walk,
                          sparse_transition)

__all__ = [
    'aggregate_cams', 'normalize_cams', 'background_score', 'cams_to_label',
    'pair_offsets', 'pair_slices', 'pair_valid_mask', 'affinity_from_features',
    'affinity_labels', 'random_walk', 'sparse_transition', 'dense_crf',
    'pool_to_grid', 'fuse_confident_regions', 'confident_region_map',
    'confident_region_stats', 'summarize_confident_stats', 'propagate_cams',
    'scores_to_label', 'crf_label', 'refine_label', 'par_offsets',
    'par_affinity', 'par_refine', 'chebyshev_power_coefficients'
]

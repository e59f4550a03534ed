import warnings

import pytest

from model.config import M3VIT_TINY
from model.weights import load_edge_moe, load_image, shared_weights_dir


@pytest.fixture(scope="session")
def edge_moe():
    """The published Edge-MoE weights (synthetic experts) and image; skips without ../shared."""
    directory = shared_weights_dir()
    if directory is None:
        pytest.skip("Edge-MoE weights not present (../shared/edge-moe/weights or $EDGEMOE_WEIGHTS)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = load_edge_moe(directory, M3VIT_TINY, seed=0)
    return weights, load_image(directory, M3VIT_TINY)

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # On a shared, oversubscribed CPU two OpenMP threads spin against each other (3-4x slower).
    torch.set_num_threads(1)

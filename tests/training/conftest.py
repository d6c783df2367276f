"""Shared fixtures of the training tests."""

import pytest
from training_shards import write_fake_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    return write_fake_shards(tmp_path_factory.mktemp("shards"))

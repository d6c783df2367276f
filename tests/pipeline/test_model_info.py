import json

import pytest

from mirage.pipeline.model_info import model_defaults, synthetic_supersample


def test_model_info_reads_the_folders_mirage_json(tmp_path):
    assert model_defaults(tmp_path) == {} and synthetic_supersample(tmp_path) == 1  # plain Wan2.2
    info = {"generation": {"height": 64, "sky_distance": 1000.0}, "synthetic": {"supersample": 2}}
    (tmp_path / "mirage.json").write_text(json.dumps(info))
    assert model_defaults(tmp_path) == {"height": 64, "sky_distance": 1000.0}
    assert synthetic_supersample(tmp_path) == 2


@pytest.mark.parametrize("text", ["{not json", '["a list"]', '{"synthetic": 3}'])
def test_model_info_refuses_a_broken_mirage_json(tmp_path, text):
    (tmp_path / "mirage.json").write_text(text)
    with pytest.raises(ValueError, match="mirage.json"):
        synthetic_supersample(tmp_path)

import pytest

from au_llm.config_checks import ConfigError
from au_llm.spot.config import SpotConfig, frames_at, load_spot_config


def test_defaults_and_a_file_with_overrides(tmp_path):
    assert load_spot_config(None) == SpotConfig()
    path = tmp_path / "spot.yaml"
    path.write_text("feature: diff\nmicro:\n  p: 0.2\nkinds: [micro]\n")
    cfg = load_spot_config(path, ["micro.k_seconds=0.2", "regions=[mouth]"])
    assert (cfg.feature, cfg.micro.p, cfg.micro.k_seconds) == ("diff", 0.2, 0.2)
    assert cfg.kinds == ["micro"] and cfg.regions == ["mouth"] and cfg.top_regions == 1
    assert cfg.macro == SpotConfig().macro


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["micro.q=1"], "command line: key 'micro.q'"),
        (["micro.p=1.5"], r"spot.micro.p = 1.5: expected a fraction in 0..1"),
        (["macro.k_seconds=0"], r"spot.macro.k_seconds = 0.0: expected a value > 0"),
        (["feature=tvl1"], "spot.feature = 'tvl1': expected one of diff, farneback, dis"),
        (["regions=[nose]"], "spot.regions = 'nose'"),
        (["top_regions=5"], "spot.top_regions = 5: expected 1..4"),
        (["kinds=[]"], "spot.kinds: expected micro, macro or both"),
        (["size=8"], "spot.size = 8"),
        (["micro.p"], "expected key=value"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_spot_config(None, overrides)


def test_a_bad_file_is_named(tmp_path):
    path = tmp_path / "spot.yaml"
    path.write_text("micro:\n  p: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}: spot.micro.p = 2"):
        load_spot_config(path)


def test_seconds_become_frames_at_the_recordings_rate():
    assert frames_at(0.167, 30.0) == 5
    assert frames_at(0.167, 200.0) == 33
    assert frames_at(0.001, 30.0) == 1  # never below one frame

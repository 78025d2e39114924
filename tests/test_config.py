import pytest

from vlnav.config import ConfigError, EnvConfig, apply_overrides, load_config


def test_env_yaml_loads_with_overrides(tmp_path):
    p = tmp_path / "env.yaml"
    p.write_text("name: x\nsensor:\n  width: 64\n")
    cfg = load_config(EnvConfig, p, ["sensor.height=32", "agent.turn_angle=30"])
    assert (cfg.sensor.width, cfg.sensor.height, cfg.agent.turn_angle) == (64, 32, 30.0)
    assert cfg.episodes_path("train").name == "train.json.gz"


def test_shipped_env_files_load():
    from pathlib import Path

    for p in Path("envs").glob("*.yaml"):
        load_config(EnvConfig, p)


@pytest.mark.parametrize(
    "override, message",
    [
        ("sensor.widht=64", "unknown config key 'sensor.widht'"),
        ("sensor.width=2", "sensor.width=2 is out of range"),
        ("backend=unity", "backend='unity' is not one of"),
        ("agent.radius=big", "agent.radius='big' should be float"),
        ("sensor.sensors=[rgb, thermal]", "sensor.sensors='thermal' is not one of"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(EnvConfig, None, [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("sensor: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(EnvConfig, p)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(EnvConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="should look like"):
        apply_overrides({}, ["sensor.width"])

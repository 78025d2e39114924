"""``vlnav describe IMAGE...`` on a real photograph (scikit-image's sample photos)."""

from __future__ import annotations

import numpy as np
import pytest

from vlnav.cli import main

skimage_data = pytest.importorskip(
    "skimage.data", reason="scikit-image is in the dev extra: pip install -e '.[dev]'"
)
pytest.importorskip("torch", reason="torch is in the dev extra: pip install -e '.[dev]'")


@pytest.fixture
def photos(tmp_path):
    import imageio.v3 as iio

    astronaut = tmp_path / "astronaut.png"
    iio.imwrite(astronaut, skimage_data.astronaut())  # 512 x 512 RGB photograph
    cat = tmp_path / "chelsea.jpg"
    iio.imwrite(cat, skimage_data.chelsea())  # 300 x 451, not square
    grey = tmp_path / "camera.png"
    iio.imwrite(grey, skimage_data.camera())  # greyscale
    return [astronaut, cat, grey]


def test_describe_with_the_learned_captioner(photos, tmp_path, capsys):
    from test_features import write_untrained_checkpoint

    ckpt = write_untrained_checkpoint(tmp_path / "ckpt")
    rc = main(["describe", *map(str, photos), "--captioner", f"learned:{ckpt}"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{p}:") for line, p in zip(lines, photos))
    rc = main(["describe", str(photos[0]), "--captioner", f"learned:{ckpt}"])
    assert rc == 0 and capsys.readouterr().out.count("\n") == 1  # one image: the caption alone


def test_describe_with_an_hf_captioner(photos, tmp_path, capsys, monkeypatch):
    pytest.importorskip("transformers", reason="transformers is in the dev extra")
    from test_perception_pretrained import save_tiny_blip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = save_tiny_blip(tmp_path / "blip")
    assert main(["describe", str(photos[0]), "--captioner", f"hf:{model}"]) == 0
    assert "sofa" in capsys.readouterr().out.lower()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # imageio tries its DICOM plugin
def test_describe_errors_are_one_line(photos, tmp_path, capsys):
    assert main(["describe", str(photos[0]), "--captioner", "semantic"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs simulator sensors" in err and "\n" not in err

    assert main(["describe", str(tmp_path / "nope.png"), "--captioner", "learned:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "image not found" in err and "nope.png" in err

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["describe", str(bad), "--captioner", "learned:x"]) == 2
    assert "cannot read image" in capsys.readouterr().err

    missing = tmp_path / "no-ckpt"
    assert main(["describe", str(photos[0]), "--captioner", f"learned:{missing}"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and err.count("\n") == 0


def test_read_image_normalises_to_rgb_uint8(photos):
    from vlnav.perception.cli import read_image

    for p in photos:
        img = read_image(str(p))
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8

"""Bad input: image files whose layout is not one 2-D image (issue 15, case 6), and ``--axes``.

The layout rule of :func:`nucleai.labelio.read_image`: grey, channels-last or channels-first
(at most 4 channels) are images; a stack or volume is refused with the file named, since until
3-D is supported reading it as one image with hundreds of channels gives silent nonsense.
"""
import numpy as np
import pytest
import tifffile

from nucleai.errors import InputError
from nucleai.labelio import read_image


def _write(tmp_path, name, array, **kwargs):
    path = tmp_path / name
    tifffile.imwrite(path, array, **kwargs)
    return path


def test_a_z_stack_is_refused_naming_the_file(tmp_path):
    path = _write(tmp_path, "stack.tif", np.zeros((8, 256, 256), np.uint16))
    with pytest.raises(InputError, match=r"stack\.tif: shape \(8, 256, 256\) looks like a stack"):
        read_image(path)


def test_a_tiff_whose_axes_say_z_is_refused_even_with_few_planes(tmp_path):
    path = _write(tmp_path, "z3.tif", np.zeros((3, 64, 64), np.uint16), metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="TIFF axes ZYX"):
        read_image(path)


def test_a_4d_hyperstack_is_refused(tmp_path):
    path = _write(tmp_path, "zc.tif", np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(InputError, match="stack or volume"):
        read_image(path)


def test_channels_first_and_last_are_read_channels_last(tmp_path):
    planar = np.arange(3 * 32 * 40, dtype=np.uint8).reshape(3, 32, 40)
    first = read_image(_write(tmp_path, "planar.tif", planar))
    last = read_image(_write(tmp_path, "rgb.tif", np.moveaxis(planar, 0, -1)))
    assert first.shape == last.shape == (32, 40, 3)
    np.testing.assert_array_equal(first, last)


def test_axes_read_a_many_channel_image_and_refuse_volumes(tmp_path):
    path = _write(tmp_path, "spectral.tif", np.zeros((8, 64, 48), np.uint16))
    assert read_image(path, axes="CYX").shape == (64, 48, 8)
    with pytest.raises(InputError, match="3-D and time series are not supported") as error:
        read_image(path, axes="ZYX")
    assert error.value.field == "axes"
    with pytest.raises(InputError, match="name 2 axes but the image has shape") as error:
        read_image(path, axes="YX")
    with pytest.raises(InputError, match="give each of Y and X once"):
        read_image(path, axes="YYX")


def test_an_unreadable_file_names_it(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png: cannot read the image"):
        read_image(path)


# --------------------------------------------------------------------------------------------
# The commands' --axes flag: read_image(path, axes=...) for every image of the run


def test_segment_axes_reads_a_many_channel_image_on_the_chosen_channel(tmp_path):
    from nucleai import models, predict
    from nucleai.cli import main
    from tiny_model import synthetic_image, tiny_model_dir
    from testdata import DEFAULT_PRECISION

    image, _ = synthetic_image(np.random.default_rng(3), (96, 96))
    planes = np.stack([image * k for k in range(1, 9)])  # 8 channels first: a stack by the rule
    folder = tmp_path / "images"
    folder.mkdir()
    _write(folder, "spectral.tif", planes.astype(np.float32))
    out = tmp_path / "out"
    assert main(["segment", "--model", str(tiny_model_dir()), "--input", str(folder), "--output", str(out),
                 "--axes", "CYX", "--channel", "2"]) == 0
    expected = predict.segment(planes[2], models.load(tiny_model_dir(), precision=DEFAULT_PRECISION)).labels
    np.testing.assert_array_equal(tifffile.imread(out / "spectral.tif"), expected)


@pytest.mark.parametrize("command", ["segment", "refine"])
def test_bad_axes_letters_stop_the_command_before_any_image(tmp_path, capsys, command):
    from nucleai.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    _write(folder, "a.tif", np.zeros((32, 32), np.uint8))
    argv = {"segment": ["segment", "--model", "any", "--input", str(folder), "--output", str(tmp_path / "out")],
            "refine": ["refine", "--objects", str(folder), "--input", str(folder), "--model", "any",
                       "--output", str(tmp_path / "out")]}[command]
    assert main(argv + ["--axes", "YYX"]) == 2
    assert "--axes: axes 'YYX': give each of Y and X once" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

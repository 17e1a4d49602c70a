"""The haematoxylin density (nucleai.stain): dark nuclei become bright, on any intensity scale."""
import numpy as np
import pytest
from skimage.color import rgb2hed

from nucleai import stain
from nucleai.errors import InputError


def test_a_grey_image_becomes_its_optical_density_dark_nuclei_bright():
    grey = np.array([[255, 128], [64, 8]], np.uint8)
    density = stain.haematoxylin(grey)
    assert density.dtype == np.float32 and density.shape == grey.shape
    assert density[0, 0] == 0  # the brightest pixel absorbs nothing
    assert density[0, 0] < density[0, 1] < density[1, 0] < density[1, 1]
    optical_density = -np.log(grey / 255.0)
    np.testing.assert_allclose(density / density[1, 1], optical_density / optical_density[1, 1], rtol=1e-5)


def test_the_intensity_scale_does_not_matter_and_colour_is_deconvolved():
    rng = np.random.default_rng(0)
    rgb = rng.integers(1, 256, (16, 16, 3)).astype(np.uint8)
    np.testing.assert_allclose(stain.haematoxylin(rgb), stain.haematoxylin(rgb / 255.0), rtol=1e-5, atol=1e-7)
    expected = rgb2hed(rgb / rgb.max())[..., 0]
    np.testing.assert_allclose(stain.haematoxylin(rgb), expected, rtol=1e-5, atol=1e-7)
    rgba = np.concatenate([rgb, np.full((16, 16, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(stain.haematoxylin(rgba), stain.haematoxylin(rgb))  # alpha ignored
    black = stain.haematoxylin(np.zeros((4, 4), np.uint8))
    assert np.isfinite(black).all() and np.ptp(black) == 0  # constant, not NaN: segment calls it constant


def test_an_image_of_other_shapes_is_refused():
    with pytest.raises(InputError, match="channels"):
        stain.haematoxylin(np.zeros((4, 4, 2)))
    with pytest.raises(InputError, match="2-D image"):
        stain.haematoxylin(np.zeros((4, 4, 3, 2)))

"""Build and install the nucleai backend (import package ``nucleai`` from ``shared/nucleai``).

The Cython extensions (``*.pyx`` in the package) are compiled here, with OpenMP so the NMS can use
every core. CellProfiler itself is not a dependency of the backend: it is installed beside it by
``scripts/install_env.sh`` because its pinned requirements do not resolve on Python 3.11.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

PACKAGE_ROOT = Path("shared")


def cython_extensions():
    """One extension per ``.pyx`` file under ``shared/nucleai``, compiled with OpenMP."""
    extensions = []
    for pyx in sorted((PACKAGE_ROOT / "nucleai").rglob("*.pyx")):
        module = ".".join(pyx.relative_to(PACKAGE_ROOT).with_suffix("").parts)
        extensions.append(
            Extension(
                module,
                [str(pyx)],
                include_dirs=[numpy.get_include()],
                extra_compile_args=["-O3", "-fopenmp"],
                extra_link_args=["-fopenmp"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return cythonize(extensions, language_level=3)


def read_version():
    namespace = {}
    exec((PACKAGE_ROOT / "nucleai" / "_version.py").read_text(), namespace)
    return namespace["__version__"]


setup(
    name="cellprofiler-nucleai",
    version=read_version(),
    description="Deep-learning nucleus segmentation (star-convex detection, nucleAIzer) for CellProfiler",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11,<3.12",
    package_dir={"": str(PACKAGE_ROOT)},
    packages=find_packages(str(PACKAGE_ROOT)),
    ext_modules=cython_extensions(),
    install_requires=[
        "numpy<2",
        "scipy",
        "scikit-image",
        "tifffile",
        "tqdm",
        "matplotlib",  # training's loss-curve PNG
        "stardist",  # builds the network from a model folder's config.json
    ],
    # TensorFlow is required too, but as an extra so that a machine with a GPU build keeps it:
    # ``pip install cellprofiler-nucleai[tensorflow]`` adds the CPU build, ``[gpu]`` TensorFlow's
    # CUDA build with NVIDIA's CUDA libraries (``make install GPU=1`` does that in .venv).
    extras_require={"tensorflow": ["tensorflow-cpu"], "gpu": ["tensorflow[and-cuda]"]},
    entry_points={"console_scripts": ["nucleai = nucleai.cli:main"]},
    zip_safe=False,
)

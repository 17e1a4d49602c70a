"""The networks' precision (``nucleai.runtime`` and ``models.load(..., precision=)``).

float32 must stay what it was: bit-identical to stardist (test_models checks the network, and
test_predict the labels, at the default precision, float32). bfloat16 only has to agree: the
same objects up to a few at the edge of the thresholds, probabilities within a few hundredths.
bfloat16 runs on every x86-64 CPU TensorFlow supports (emulated where not native), so these
tests need no particular hardware.
"""
import json

import numpy as np
import pytest

from nucleai import metrics, models, predict, runtime
from nucleai.errors import InputError
from nucleai.labelio import read_image
from testdata import EXAMPLES


def test_auto_is_bfloat16_only_with_native_hardware():
    assert runtime.resolve_precision("auto", native=(True, "CPU has avx512_bf16")) == (
        runtime.BFLOAT16, "auto: CPU has avx512_bf16")
    assert runtime.resolve_precision("auto", native=(False, "CPU has no AMX or AVX512-BF16")).name == runtime.FLOAT32
    for chosen in (runtime.FLOAT32, runtime.BFLOAT16):
        assert runtime.resolve_precision(chosen) == (chosen, "chosen")


def test_an_unknown_precision_names_the_field():
    with pytest.raises(InputError, match="--precision must be one of auto, float32, bfloat16, got 'half'") as caught:
        runtime.resolve_precision("half", "--precision")
    assert caught.value.field == "--precision"


def test_native_bfloat16_reads_cpu_flags_and_prefers_the_gpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 avx512_bf16\n")
    flags = runtime.cpu_flags(cpuinfo)
    assert {"amx_bf16", "avx512_bf16"} <= flags
    assert runtime.native_bfloat16(flags, gpu_capabilities=[]) == (True, "CPU has amx_bf16, avx512_bf16")
    assert runtime.native_bfloat16({"avx2"}, gpu_capabilities=[]) == (False, "CPU has no AMX or AVX512-BF16")
    assert runtime.native_bfloat16(flags, gpu_capabilities=[(7, 5)]) == (False, "GPU compute capability 7.5")
    assert runtime.native_bfloat16(set(), gpu_capabilities=[(9, 0)]) == (True, "GPU compute capability 9.0")
    assert runtime.cpu_flags(tmp_path / "missing") == frozenset()


def test_the_policy_is_restored_after_building():
    import keras

    with runtime.dtype_policy(runtime.BFLOAT16):
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


def _image(stem):
    return read_image(EXAMPLES / "images" / f"{stem}.png")


@pytest.fixture(scope="module")
def both():
    return models.load("fluo_nuclei", precision="float32"), models.load("fluo_nuclei", precision="bfloat16")


def test_each_precision_is_its_own_cached_model(both):
    float32, bfloat16 = both
    assert (float32.precision, bfloat16.precision) == ("float32", "bfloat16")
    assert float32 is not bfloat16
    assert models.load("fluo_nuclei") is float32  # the library's default stays float32
    assert models.load("fluo_nuclei", precision="bfloat16") is bfloat16


def test_bfloat16_finds_the_objects_float32_finds(both):
    float32, bfloat16 = both
    stems = sorted(path.stem for path in (EXAMPLES / "images").glob("nuclei_*.png"))
    assert len(stems) >= 4
    matched = total = 0
    for stem in stems:
        image = _image(stem)
        reference = predict.segment(image, float32, return_prob_map=True)
        result = predict.segment(image, bfloat16, return_prob_map=True)
        assert result.labels.dtype == reference.labels.dtype and result.prob_map.dtype == np.float32
        assert np.abs(result.prob_map - reference.prob_map).max() < 0.05, stem
        scores = metrics.evaluate_image(reference.labels, result.labels)  # tp[0]: matched at IoU 0.5
        matched += int(scores.tp[0])
        total += max(reference.count, result.count)
    assert matched / total >= 0.97


def test_the_refinement_unet_runs_in_bfloat16():
    from nucleai.refine import unet

    image = _image(sorted(path.stem for path in (EXAMPLES / "images").glob("nuclei_*.png"))[0])
    float32 = unet.predict_classes(image, models.load("fluo_refine", kind="unet", precision="float32"))
    bfloat16 = unet.predict_classes(image, models.load("fluo_refine", kind="unet", precision="bfloat16"))
    assert bfloat16.dtype == np.float32 and bfloat16.shape == float32.shape
    assert np.abs(bfloat16 - float32).max() < 0.1
    assert np.mean(bfloat16.argmax(-1) == float32.argmax(-1)) > 0.98


def test_the_cli_records_the_precision_and_keeps_float32_labels(tmp_path):
    from nucleai.cli import main

    images = tmp_path / "images"
    images.mkdir()
    stem = sorted(path.stem for path in (EXAMPLES / "images").glob("nuclei_*.png"))[0]
    (images / f"{stem}.png").write_bytes((EXAMPLES / "images" / f"{stem}.png").read_bytes())
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert main(["segment", "--model", "fluo_nuclei", "--input", str(images), "--output", str(out),
                     "--precision", precision, "--timings", str(tmp_path / f"{precision}.json")]) == 0
        report = json.loads((tmp_path / f"{precision}.json").read_text())
        assert (report["precision"], report["precision_reason"]) == (precision, "chosen")
    expected = predict.segment(_image(stem), models.load("fluo_nuclei", precision="float32")).labels
    assert np.array_equal(read_image(tmp_path / "float32" / f"{stem}.tif"), expected)


@pytest.mark.parametrize("flags, message", [
    (["--precision", "half"], "invalid choice: 'half'"),
])
def test_the_cli_refuses_an_unknown_precision(tmp_path, capsys, flags, message):
    from nucleai.cli import main

    with pytest.raises(SystemExit):
        main(["segment", "--model", "fluo_nuclei", "--input", str(tmp_path), "--output", str(tmp_path / "o"), *flags])
    assert message in capsys.readouterr().err


def test_the_cli_names_a_negative_gpu_memory(tmp_path, capsys):
    from nucleai.cli import main

    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(next((EXAMPLES / "images").glob("nuclei_*.png")).read_bytes())
    assert main(["segment", "--model", "fluo_nuclei", "--input", str(images), "--output", str(tmp_path / "o"),
                 "--gpu-memory", "-1"]) == 2
    assert "--gpu-memory must be a whole number of megabytes >= 0, got -1" in capsys.readouterr().err


def test_bfloat16_tta_batches_its_versions_with_the_same_labels_as_one_by_one(both, monkeypatch):
    from nucleai import tta

    float32, bfloat16 = both
    image = _image(sorted(path.stem for path in (EXAMPLES / "images").glob("nuclei_*.png"))[0])
    one_by_one = [tta.invert(predict.segment(tta.transform(image, name), bfloat16).labels, name)
                  for name in tta.PAPER_TRANSFORMS]
    expected = tta.merge_instances(one_by_one).labels
    batches = []
    real = bfloat16.predict_maps_batch
    monkeypatch.setattr(bfloat16, "predict_maps_batch", lambda xs: batches.append(len(xs)) or real(xs))
    np.testing.assert_array_equal(tta.segment_tta(image, bfloat16).labels, expected)
    assert sum(batches) == len(tta.PAPER_TRANSFORMS) and len(batches) <= 2  # square image: one shape

    real32 = float32.predict_maps_batch  # predict_maps passes single inputs through it
    monkeypatch.setattr(float32, "predict_maps_batch",
                        lambda xs: real32(xs) if len(xs) == 1 else pytest.fail("float32 is never batched"))
    float32_versions = [tta.invert(predict.segment(tta.transform(image, name), float32).labels, name)
                        for name in tta.PAPER_TRANSFORMS]
    np.testing.assert_array_equal(tta.segment_tta(image, float32).labels,
                                  tta.merge_instances(float32_versions).labels)

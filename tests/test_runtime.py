"""Worker settings (``nucleai.runtime``): NUCLEAI_THREADS bounds TensorFlow's and the NMS's
threads, the GPU memory cap is applied once per process and a different one later is refused.

TensorFlow fixes its threads and devices when it starts, so each process-level check runs in a
fresh Python process.
"""
import os
import subprocess
import sys

import pytest

from nucleai import nms
from nucleai.errors import InputError
from nucleai.runtime import THREADS_VARIABLE, gpu_memory_from_environment, limit_gpu_memory, worker_threads
from testdata import EXAMPLES, REPO


def run_python(code, **environment):
    env = {**os.environ, **environment}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


@pytest.mark.parametrize("text, expected", [("", None), (" 3 ", 3), ("1", 1)])
def test_worker_threads_reads_the_variable(text, expected):
    assert worker_threads({THREADS_VARIABLE: text}) == expected
    assert worker_threads({}) is None


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_worker_threads_refuses_what_is_not_a_count(text):
    with pytest.raises(InputError, match=f"{THREADS_VARIABLE} must be a whole number >= 1") as caught:
        worker_threads({THREADS_VARIABLE: text})
    assert caught.value.field == THREADS_VARIABLE


def test_gpu_memory_variable_allows_zero_for_no_cap():
    assert gpu_memory_from_environment({"NUCLEAI_GPU_MEMORY_MB": "0"}) == 0
    with pytest.raises(InputError, match="NUCLEAI_GPU_MEMORY_MB must be a whole number >= 0"):
        gpu_memory_from_environment({"NUCLEAI_GPU_MEMORY_MB": "half"})


def test_nms_takes_its_thread_count_from_the_variable(monkeypatch):
    monkeypatch.setenv(THREADS_VARIABLE, "1")
    assert nms._thread_count(None) == 1
    assert nms._thread_count(2) == 2
    monkeypatch.delenv(THREADS_VARIABLE)
    assert nms._thread_count(None) == 0


def test_tensorflow_runs_with_the_bounded_threads():
    result = run_python(
        "from nucleai.runtime import prepare_tensorflow\n"
        "tf = prepare_tensorflow()\n"
        "from nucleai import models\n"
        "models.load('fluo_nuclei')\n"
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n",
        NUCLEAI_THREADS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["1", "1"]


def test_cli_names_a_bad_thread_variable(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nucleai.cli", "segment", "--model", "fluo_nuclei",
         "--input", str(EXAMPLES / "images"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, THREADS_VARIABLE: "many"}, timeout=300)
    assert result.returncode == 2
    assert "NUCLEAI_THREADS must be a whole number >= 1, got 'many'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_different_gpu_memory_cap_is_refused():
    result = run_python(
        "from nucleai.runtime import limit_gpu_memory\n"
        "from nucleai.errors import InputError\n"
        "limit_gpu_memory(512, field='GPU memory per worker (MB)')\n"
        "limit_gpu_memory(512, field='GPU memory per worker (MB)')\n"
        "try:\n"
        "    limit_gpu_memory(1024, field='GPU memory per worker (MB)')\n"
        "except InputError as error:\n"
        "    print('refused:', error.field, '|', error)\n")
    assert result.returncode == 0, result.stderr
    assert "refused: GPU memory per worker (MB) | " in result.stdout
    assert "512 MB" in result.stdout and "1024 MB" in result.stdout


def test_gpu_memory_cap_must_be_a_whole_number():
    with pytest.raises(InputError, match="whole number of megabytes >= 0") as caught:
        limit_gpu_memory(-1, field="GPU memory per worker (MB)")
    assert caught.value.field == "GPU memory per worker (MB)"


def test_gpu_memory_cap_reaches_the_gpu():
    probe = run_python("import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))")
    if probe.returncode != 0 or probe.stdout.split()[-1] == "0":
        pytest.skip("no GPU visible to TensorFlow on this machine (tensorflow-cpu or no device)")
    result = run_python(
        "from nucleai.runtime import prepare_tensorflow\n"
        "tf = prepare_tensorflow()\n"
        "from nucleai import models\n"
        "models.load('fluo_nuclei')\n"
        "gpu = tf.config.list_physical_devices('GPU')[0]\n"
        "print(tf.config.get_logical_device_configuration(gpu)[0].memory_limit)\n",
        NUCLEAI_GPU_MEMORY_MB="512")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "512"

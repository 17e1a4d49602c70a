# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv first when it
# is missing (scripts/install_env.sh), and rebuild the Cython extensions when their sources change.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.nucleai-installed
DEMO_PIPELINE := example_pipelines/starconvex_nuclei.cppipe
CLASSICAL_PIPELINE := example_pipelines/classical_nuclei.cppipe
DEMO_IMAGES := example_pipelines/images
DEMO_OUTPUT := output
JAVA_HOME := $(shell bash scripts/find_java_home.sh)
export JAVA_HOME

GUI_VENV := .venv-gui
GUI_PYTHON := $(GUI_VENV)/bin/python
GUI_STAMP := $(GUI_VENV)/.nucleai-gui-installed
GUI_PIPELINE := $(DEMO_PIPELINE)

.PHONY: FORCE install build demo demo-classical test clean gui gui-build gui-test

install: $(STAMP)

$(STAMP): setup.py constraints.txt scripts/install_env.sh
	bash scripts/install_env.sh

# `make install GPU=1`: TensorFlow's CUDA build instead of tensorflow-cpu (GPU=0 back to the CPU
# build); later rebuilds keep whichever build the environment has.
ifneq ($(GPU),)
export NUCLEAI_GPU := $(GPU)
$(STAMP): FORCE
endif
FORCE:

# Cheap when nothing changed: cythonize only recompiles .pyx files newer than their .c output.
build: $(STAMP)
	$(PYTHON) setup.py -q build_ext --inplace

# run_pipeline PIPELINE OUTPUT: the example pipeline headless on the bundled images.
define run_pipeline
	rm -rf $(2) && mkdir -p $(2)
	$(PYTHON) -m cellprofiler -c -r -p $(1) -i $(DEMO_IMAGES) -o $(2) --plugins-directory plugins --log-level WARNING
	@echo "nucleai: $(1): measurements and label images in $(2)/:" && ls $(2)
endef

demo: build
	$(call run_pipeline,$(DEMO_PIPELINE),$(DEMO_OUTPUT))

demo-classical: build
	$(call run_pipeline,$(CLASSICAL_PIPELINE),output-classical)

test: build
	$(PYTHON) -m pytest tests --ignore=tests/gui

# The GUI: CellProfiler with wx in .venv-gui (scripts/install_gui_env.sh), our plugins and models,
# and nucleai.gui_compat's start-up fix. `make gui GUI_PIPELINE=` starts without a pipeline.
$(GUI_STAMP): setup.py constraints.txt scripts/install_env.sh scripts/install_gui_env.sh
	bash scripts/install_gui_env.sh

gui-build: $(GUI_STAMP)
	$(GUI_PYTHON) setup.py -q build_ext --inplace

gui: gui-build
	@[ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || { echo "nucleai: no display (DISPLAY is unset): run this on a desktop, or under xvfb-run" >&2; exit 1; }
	$(GUI_PYTHON) -m cellprofiler --plugins-directory plugins $(if $(GUI_PIPELINE),-p $(GUI_PIPELINE))

# Real CellProfiler GUI under Xvfb: panels, test-mode figures, Analyze Images (tests/gui/);
# screenshots, report and log in gui-output/.
gui-test: gui-build
	$(GUI_PYTHON) -m pytest tests/gui

clean:
	rm -rf build $(DEMO_OUTPUT) output-classical shared/nucleai/*.c shared/nucleai/*.so

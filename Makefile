# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv first when it
# is missing (scripts/install_env.sh), and rebuild the Cython extensions when their sources change.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.nucleai-installed
DEMO_PIPELINE := example_pipelines/classical_nuclei.cppipe
DEMO_IMAGES := example_pipelines/images
DEMO_OUTPUT := output
JAVA_HOME := $(shell bash scripts/find_java_home.sh)
export JAVA_HOME

.PHONY: install build demo test clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt scripts/install_env.sh
	bash scripts/install_env.sh

# Cheap when nothing changed: cythonize only recompiles .pyx files newer than their .c output.
build: $(STAMP)
	$(PYTHON) setup.py -q build_ext --inplace

demo: build
	rm -rf $(DEMO_OUTPUT) && mkdir -p $(DEMO_OUTPUT)
	$(PYTHON) -m cellprofiler -c -r -p $(DEMO_PIPELINE) -i $(DEMO_IMAGES) -o $(DEMO_OUTPUT) \
		--plugins-directory plugins --log-level WARNING
	@echo "nucleai demo: measurements and label images in $(DEMO_OUTPUT)/:" && ls $(DEMO_OUTPUT)

test: build
	$(PYTHON) -m pytest tests

clean:
	rm -rf build $(DEMO_OUTPUT) shared/nucleai/*.c shared/nucleai/*.so

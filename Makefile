# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= report_out

.PHONY: venv data chromium demo test docs bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# Debian's Fashion-MNIST IDX files for demos and benchmarks (optional: tests skip without them).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "dataset-fashion-mnist not installed; Fashion-MNIST tests will skip"; fi

# Debian's Chromium for the report's browser test (optional: tests/test_report_browser.py skips without it).
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "chromium not installed; the report's browser test will skip"; fi

demo: venv data
	$(VENV)/bin/art-geometry report --demo --out $(OUT)

test: venv data chromium
	$(PY) -m pytest -q tests

# The documentation site (mkdocs-material + mkdocstrings API reference); --strict: a broken link, a docstring that
# does not render or a Sphinx role whose target no page renders fails the build; then no page may show a raw role.
docs: venv
	$(PIP) install -q -c constraints.txt -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q
	$(PY) docs_support/check_site.py site

bench: venv data
	$(PY) benchmarks/bench_prs.py

clean:
	rm -rf $(VENV) $(OUT) *.egg-info site dist

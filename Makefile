# The two entry points of a fresh clone: `make demo` and `make test`. Both set up .venv first.
.PHONY: setup setup-dev demo test lint

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

demo: setup
	.venv/bin/descend demo

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy

test: setup-dev lint
	.venv/bin/python -m pytest

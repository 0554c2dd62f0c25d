# GeoMeld: two commands do all set-up on a fresh machine (see README.md).
#   make demo   create .venv if needed, then run the release end to end on real embedded data
#   make test   create .venv if needed, then run the test suite offline
.PHONY: env demo test lint bench-model

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TRANSFORMERS_OFFLINE := 1

env:
	bash scripts/bootstrap.sh

demo: env
	.venv/bin/geomeld demo $(ARGS)

test:
	bash scripts/bootstrap.sh --browser
	bash scripts/geobench_sdist.sh || echo "warning: no GEO-Bench sdist; tests/test_geobench_official.py will skip" >&2
	.venv/bin/python -m pytest -q -p no:cacheprovider $(ARGS)

lint: env
	.venv/bin/ruff check modeling_geomeld dataset_scripts space_app tests benchmarks
	.venv/bin/mypy

bench-model: env
	.venv/bin/python benchmarks/bench_model.py $(ARGS)

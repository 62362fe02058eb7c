PY ?= python3

.PHONY: run test ui bench

run:
	$(PY) tasks.py run

test:
	$(PY) tasks.py test

ui:
	$(PY) tasks.py ui

bench:
	$(PY) tasks.py bench

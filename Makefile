# The README's quick start: `make demo` and `make test`. Both set up ./.venv themselves.
.PHONY: demo test bench lint

demo:
	@scripts/bootstrap.sh
	@.venv/bin/twcmaster demo $(ARGS)

test:
	@scripts/test.sh

bench:
	@scripts/bootstrap.sh
	@.venv/bin/python -m twcmaster.bench $(ARGS)

lint:
	@scripts/bootstrap.sh
	@.venv/bin/ruff check twcmaster tests && .venv/bin/ruff format --check twcmaster tests

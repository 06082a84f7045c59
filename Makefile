# The two commands of the README. Each installs libtorch first when it is missing.
.PHONY: run test libtorch

run: libtorch
	cargo run --release -- experiments.yaml

test: libtorch
	scripts/check-notebook.sh
	cargo test

libtorch:
	@scripts/setup-libtorch.sh

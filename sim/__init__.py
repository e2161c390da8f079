"""cocotb testbenches and their runners (Icarus and Verilator)."""

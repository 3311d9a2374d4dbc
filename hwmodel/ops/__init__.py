"""What one op costs on one chip: op classes, FLOP formulas, GEMM rates, efficiencies and their fit."""

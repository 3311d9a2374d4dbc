"""One accelerator chip: compute rates, compute units and its local memory.

Units: FLOP/s, bytes, bytes/s, seconds. A chip is a set of identical compute units (a D1's nodes,
a GPU's SMs) with a matrix unit and a vector unit each, and one local memory (a D1's SRAM, a GPU's
HBM). Memory behind the chip (a Dojo tile's DIP HBM) belongs to the fabric, not to the chip.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from hwmodel.errors import SpecError
from hwmodel.ops.gemm import GemmRateTable
from hwmodel.spec.precision import PRECISIONS, Precision

LOCAL_MEMORY_KINDS = ("sram", "hbm", "gddr", "dram")
OP_COST_MODELS = ("kernels", "efficiency")
EXECUTION_MODES = ("eager", "compiled")
"""How a chip runs a step's ops (:attr:`ChipSpec.default_execution`): one kernel per op as PyTorch
eager does, or fused by a graph compiler (:mod:`hwmodel.ops.fusion`)."""
"""How a chip's ops are costed (:attr:`ChipSpec.op_cost_model`): ``"kernels"``, the kernel models
in hardware terms (:mod:`hwmodel.ops.kernel_costs`); ``"efficiency"``, the roofline scaled by a
measured efficiency row (:mod:`hwmodel.ops.cost`)."""
_NON_RATE_FIELDS = frozenset(
    {
        "name",
        "source",
        "local_memory_kind",
        "local_memory_full_duplex",
        "cache_tiers",
        "multi_tensor_kernels",
        "gemm_rates",
        "gemm_cold_operand_bytes_per_s",
        "element_rates",
        "sync_batchnorm",
        "efficiency_row",
        "op_cost_model",
        "default_execution",
        "default_precision",
        "measured_threads",
        "l2_cache_bytes",
        "clock_hz",
        "power_limit_w",
        "process_node_nm",
        "max_threads_per_compute_unit",
        "l1_cache_bytes_per_compute_unit",
        "kernel_parameters_file",
    }
)
HALF_DTYPES = frozenset({"bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"})
"""Compute dtypes that run at the matrix units' BF16 rate."""
MATRIX_RATE_LABELS = ("bf16-matrix", "tf32-matrix", "ieee-fp32-matrix")
"""What a matrix op runs at: BF16 (or FP16) on the matrix units (a GPU's tensor cores), TF32 on
them, or IEEE FP32 (a GPU's CUDA cores)."""
VECTOR_RATE_LABEL = "fp32-vector"
"""What every other op runs at: the vector units' FP32 rate."""


@dataclass(frozen=True, kw_only=True)
class ChipSpec:
    """Peak rates and sizes of one chip; every field is a ceiling, efficiencies live elsewhere.

    Attributes:
        matrix_bf16_flops_per_s: dense BF16 rate of the matrix units, whole chip.
        matrix_fp32_flops_per_s: IEEE FP32 rate of matrix ops (matmuls, convolutions), what
            PyTorch's default FP32 matmul runs at: on a GPU the CUDA-core FP32 peak (``sgemm``), not
            the tensor cores; a chip without an FP32 matrix mode gives its vector rate here.
        matrix_tf32_flops_per_s: rate of FP32 matrix ops run on the matrix units in TF32 (PyTorch's
            ``allow_tf32``, the ``tf32`` precision); a chip without a TF32 mode (a D1, GPUs before
            Ampere) gives its ``matrix_fp32_flops_per_s`` here.
        vector_flops_per_s: FP32 rate of the vector (SIMD) units, used by every non-matrix op.
        compute_units: units that work in parallel (D1 nodes, GPU SMs): an op with fewer work
            tiles than units cannot use the whole chip.
        matrix_tile_output_elements: output elements one unit produces per work tile of a matrix
            op (the granule of occupancy).
        vector_tile_output_elements: the same for vector ops.
        local_memory_bytes: capacity of the chip's own memory.
        local_memory_read_bytes_per_s / local_memory_write_bytes_per_s: its bandwidths.
        local_memory_full_duplex: True if loads and stores have separate paths (D1 SRAM: 400 GB/s
            load and 270 GB/s store per node at once); False if they share one (HBM).
        local_memory_kind: "sram", "hbm", "gddr" (a GPU card's GDDR5/GDDR6) or "dram": names the
            bound in reports.
        op_overhead_s: fixed cost of one op (kernel launch, dispatch, synchronisation).
        multi_tensor_kernels: True if an op over a list of tensors (``_foreach_*``) runs as one
            kernel (a GPU's multi-tensor apply, a compiled D1 step); False where it runs one kernel
            per tensor and pays ``op_overhead_s`` for each (eager PyTorch on a CPU).
        cache_tiers: ``(bytes, bytes_per_s)`` pairs, smallest first: the rate at which an op whose
            bytes read plus written are ``bytes`` moves them (a CPU's caches in front of its DRAM);
            between two tiers the rate is interpolated in log size, larger ops get the local
            memory's bandwidth (:func:`hwmodel.ops.cost.tiered_bandwidth`). Empty for chips whose
            local memory is the fastest tier (a D1's SRAM).
        gemm_rates: measured FLOP/s of matrix multiplies by shape (:mod:`hwmodel.ops.gemm`): a
            matrix op whose GEMMs the capture recorded runs at these rates instead of the matrix
            peak. None for chips known only by their datasheet (every preset but ``host``).
        gemm_cold_operand_bytes_per_s: the rate at which a GEMM timed by ``gemm_rates`` fetches its
            operands when they are not in any cache, as in a training step whose working set
            outlasts the caches between two uses of a tensor (measured: a product's time after the
            caches were swept, less its time warm, over its operand bytes); None where not
            measured: the measured rates then stand as they are.
        element_rates: ``(function, elements per second)`` of element functions whose time no FLOP
            count gives (a CPU's ``sqrt``, ``exp``, ``gelu``: :mod:`hwmodel.ops.element_rates`);
            empty for chips without such a measurement.
        sync_batchnorm: True if batch-norm statistics are synchronised across data-parallel
            replicas by default (Dojo); False where each device keeps its own (PyTorch's default).
        default_precision: the precision policy a step on this chip trains in unless told
            otherwise (``"bf16"`` or ``"fp32"``, :data:`hwmodel.spec.precision.PRECISIONS`).
        op_cost_model: how every op is costed (:data:`OP_COST_MODELS`): ``"kernels"`` (the kernel
            models in hardware terms: CTA or node tiles, waves, achieved bandwidth, fitted on
            measured GPU kernels; every GPU preset and the D1) or ``"efficiency"`` (the roofline
            scaled by a measured efficiency row and GEMM rates: the ``host``).
        efficiency_row: for ``op_cost_model = "efficiency"``, the row of
            ``hwmodel/ops/efficiency.json`` whose measured fractions of peak apply; None otherwise.
        default_execution: how a step's ops run unless told otherwise (:data:`EXECUTION_MODES`):
            ``"eager"`` (one kernel per op, PyTorch's default; every GPU preset and the host) or
            ``"compiled"`` (fused as a graph compiler does: the compiler-scheduled D1).
        measured_threads: for a chip measured on this machine (``host``), the intra-op threads of
            the measurement, which a capture should use too; None for every other chip.
        kernel_parameters_file: for a kernel-model chip, the parameters file (the format of
            ``hwmodel/ops/kernels/parameters.json``) fitted on this device's own kernels by
            ``pytest-dojo calibrate-gpu fit``; None: the shipped parameters.
        l2_cache_bytes: the last cache level in front of the local memory, shared by every
            compute unit (a GPU's L2); 0 where there is none (a D1: its SRAM is the local memory).
            Read by the kernel models (working sets that fit it stream at its bandwidth); the
            roofline of an ``efficiency`` chip uses ``cache_tiers`` instead.
        clock_hz: the boost clock the datasheet peaks assume; None where it is not given (the
            ``host``: a calibration measures rates, not clocks).
        power_limit_w: the board power limit (TDP) under which sustained kernels may run below
            ``clock_hz``; None where not given. The GPU kernel models cap the rate of long FP32
            GEMMs on the CUDA cores by it (:mod:`hwmodel.ops.kernels.gemm`).
        process_node_nm: the silicon process's feature size (nm); None where not given. The GPU
            kernel models' power cap scales the energy of an FP32 operation with it.
        max_threads_per_compute_unit: the most threads one compute unit (a GPU's SM) holds at
            once (2,048; 1,024 on Turing; 1,536 on Ada); None where not given. The GPU kernel
            models read it (resident CTAs per SM).
        l1_cache_bytes_per_compute_unit: the largest L1 data cache of one compute unit (bytes;
            from Volta on, the unified L1 / shared memory less the least shared-memory carve-out);
            0 where not given. The GPU kernel models read it (rows a softmax keeps between passes).
        source: where the figures come from.

    Not modelled: clock throttling under ``power_limit_w`` beyond the FP32 GEMM cap of the kernel models.
    """

    name: str
    matrix_bf16_flops_per_s: float
    matrix_fp32_flops_per_s: float
    matrix_tf32_flops_per_s: float
    vector_flops_per_s: float
    compute_units: int
    matrix_tile_output_elements: int
    vector_tile_output_elements: int
    local_memory_bytes: float
    local_memory_read_bytes_per_s: float
    local_memory_write_bytes_per_s: float
    local_memory_full_duplex: bool
    local_memory_kind: str
    op_overhead_s: float
    multi_tensor_kernels: bool
    sync_batchnorm: bool
    op_cost_model: str
    default_precision: str
    efficiency_row: str | None = None
    default_execution: str = "eager"
    cache_tiers: tuple[tuple[float, float], ...] = ()
    gemm_rates: GemmRateTable | None = None
    gemm_cold_operand_bytes_per_s: float | None = None
    element_rates: tuple[tuple[str, float], ...] = ()
    measured_threads: int | None = None
    l2_cache_bytes: float = 0.0
    clock_hz: float | None = None
    power_limit_w: float | None = None
    process_node_nm: float | None = None
    max_threads_per_compute_unit: int | None = None
    l1_cache_bytes_per_compute_unit: float = 0.0
    kernel_parameters_file: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise SpecError("chip name must not be empty")
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if spec_field.name in _NON_RATE_FIELDS:
                continue
            if spec_field.name == "op_overhead_s":
                if value < 0:
                    raise SpecError(f"chip {self.name}: op_overhead_s must be >= 0, got {value}")
            elif not value > 0:
                raise SpecError(f"chip {self.name}: {spec_field.name} must be > 0, got {value}")
        if not self.l2_cache_bytes >= 0:
            raise SpecError(f"chip {self.name}: l2_cache_bytes must be >= 0, got {self.l2_cache_bytes}")
        for name in ("clock_hz", "power_limit_w", "process_node_nm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SpecError(f"chip {self.name}: {name} must be > 0 (or not given), got {value}")
        if self.gemm_cold_operand_bytes_per_s is not None and not self.gemm_cold_operand_bytes_per_s > 0:
            raise SpecError(
                f"chip {self.name}: gemm_cold_operand_bytes_per_s must be > 0 (or not given), "
                f"got {self.gemm_cold_operand_bytes_per_s}"
            )
        if any(not rate > 0 for _, rate in self.element_rates):
            raise SpecError(f"chip {self.name}: element_rates must be (function, elements/s > 0) pairs")
        sizes = [size for size, _ in self.cache_tiers]
        if sizes != sorted(set(sizes)) or any(not (size > 0 and rate > 0) for size, rate in self.cache_tiers):
            raise SpecError(f"chip {self.name}: cache_tiers must be (bytes, bytes/s) > 0 with rising sizes")
        if self.default_precision not in PRECISIONS:
            raise SpecError(
                f"chip {self.name}: default_precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.default_precision!r}"
            )
        if self.op_cost_model not in OP_COST_MODELS:
            known = ", ".join(OP_COST_MODELS)
            raise SpecError(f"chip {self.name}: op_cost_model must be one of {known}, got {self.op_cost_model!r}")
        if self.default_execution not in EXECUTION_MODES:
            known = ", ".join(EXECUTION_MODES)
            raise SpecError(
                f"chip {self.name}: default_execution must be one of {known}, got {self.default_execution!r}"
            )
        if self.op_cost_model == "efficiency" and not self.efficiency_row:
            raise SpecError(f"chip {self.name}: op_cost_model 'efficiency' needs efficiency_row, a row of the table")
        if self.local_memory_kind not in LOCAL_MEMORY_KINDS:
            raise SpecError(
                f"chip {self.name}: local_memory_kind must be one of {LOCAL_MEMORY_KINDS}, "
                f"got {self.local_memory_kind!r}"
            )

    @property
    def has_tf32_matrix(self) -> bool:
        """Whether FP32 matrix ops can run in TF32 here: a chip without a TF32 mode gives its IEEE
        FP32 rate as its TF32 rate, and runs them as IEEE FP32 whatever PyTorch's TF32 flag."""
        return self.matrix_tf32_flops_per_s != self.matrix_fp32_flops_per_s

    def matrix_flops_per_s(self, dtype: str, *, tf32: bool = False) -> float:
        """Matrix peak for a compute dtype: BF16/FP16/FP8 at the BF16 rate, FP32 at the TF32 rate
        when ``tf32``, else at the IEEE FP32 rate."""
        return self.matrix_rate(dtype, tf32=tf32)[1]

    def matrix_rate(self, dtype: str, *, tf32: bool = False) -> tuple[str, float]:
        """The label (:data:`MATRIX_RATE_LABELS`) and FLOP/s of the rate matrix ops run at (TF32
        asked of a chip without it is IEEE FP32).

        >>> from hwmodel.spec.presets import get_preset
        >>> [get_preset("a100").chip.matrix_rate("float32", tf32=tf32) for tf32 in (False, True)]
        [('ieee-fp32-matrix', 19500000000000.0), ('tf32-matrix', 156000000000000.0)]
        >>> get_preset("v100-pcie-32gb").chip.matrix_rate("float32", tf32=True)
        ('ieee-fp32-matrix', 14000000000000.0)
        """
        if dtype in HALF_DTYPES:
            return "bf16-matrix", self.matrix_bf16_flops_per_s
        if tf32 and self.has_tf32_matrix:
            return "tf32-matrix", self.matrix_tf32_flops_per_s
        return "ieee-fp32-matrix", self.matrix_fp32_flops_per_s

    def matrix_rate_for(self, precision: Precision) -> tuple[str, float]:
        """:meth:`matrix_rate` under a precision policy (its compute dtype, its TF32 setting)."""
        return self.matrix_rate(precision.compute_dtype, tf32=precision.tf32_matmuls)

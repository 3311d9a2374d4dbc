"""The Autopilot-style network suite: real training at ``small``, fake capture at ``full``, and the
RegNet family against published parameter and MAC counts."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dojo_networks import BACKBONE_NETWORKS, NETWORKS, SIZES, get_network
from dojo_networks.bifpn import BiFPN
from dojo_networks.hydranet import (
    BOX_PARAMETERS,
    HYDRANET_CONFIGS,
    centernet_focal_loss,
    hydranet_losses,
)
from dojo_networks.lanes import LANES_CONFIGS, START_TOKEN, LanesNetwork, lanes_losses
from dojo_networks.layers import grid_coordinates
from dojo_networks.occupancy import OCCUPANCY_CONFIGS, OccupancyNetwork, occupancy_losses
from dojo_networks.regnet import REGNET_CONFIGS, RegNetClassifier, RegNetConfig, plan_stages

CAMERA_NETWORKS = ("hydranet", "occupancy", "lanes")
SMALL_BATCH = 2


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread while these tests run.

    On a shared 2-core machine, two OpenMP threads that spin-wait for each other make a small step
    ~10x slower whenever another process is busy (measured: 0.15 s vs 1.9 s per HydraNet step);
    one thread keeps this file's time predictable. Restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Fixed initial weights, so the training assertions are deterministic."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.random.set_rng_state(state)


def _fake_like(tree: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fake CPU tensors of the same shapes and dtypes (call inside FakeTensorMode)."""
    return {key: torch.empty(value.shape, dtype=value.dtype) for key, value in tree.items()}


def _parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_sizes() -> None:
    assert SIZES == ("small", "full")
    assert set(CAMERA_NETWORKS) | set(BACKBONE_NETWORKS) <= set(NETWORKS)
    for name, spec in NETWORKS.items():
        assert spec.name == name
        assert get_network(name) is spec


def test_unknown_network_is_one_line_value_error() -> None:
    with pytest.raises(ValueError, match=r"^unknown network 'resnet'; known networks: ") as error:
        get_network("resnet")
    message = str(error.value)
    assert "\n" not in message
    assert message.endswith(", ".join(sorted(NETWORKS)))


# --- RegNet ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "widths", "depths"),
    [
        # Radosavovic et al. 2020, appendix; the same in pycls' model zoo.
        ("regnetx_400mf", (32, 64, 160, 384), (1, 2, 7, 12)),
        ("regnety_1_6gf", (48, 120, 336, 888), (2, 6, 17, 2)),
        ("regnety_4_0gf", (128, 192, 512, 1088), (2, 6, 12, 2)),
        ("regnety_8_0gf", (168, 448, 896, 2016), (2, 4, 10, 1)),
        ("regnety_tiny", (16, 32, 64, 128), (1, 1, 2, 1)),
    ],
)
def test_stage_plan_matches_published_design_points(
    name: str, widths: tuple[int, ...], depths: tuple[int, ...]
) -> None:
    plan = plan_stages(REGNET_CONFIGS[name])
    assert (plan.widths, plan.depths) == (widths, depths)
    assert all(width % group == 0 for width, group in zip(plan.widths, plan.group_widths, strict=True))


@pytest.mark.parametrize(
    ("name", "parameters_millions", "gmacs"),
    [
        # timm benchmark table at 224x224, in docs/reference/autopilot-networks.md, "Backbone reference costs".
        ("regnety_1_6gf", 11.2, 1.63),
        ("regnety_4_0gf", 20.65, 4.0),
        ("regnety_8_0gf", 39.18, 8.0),
        ("regnety_16gf", 83.59, 15.96),
    ],
)
def test_regnety_parameters_and_macs_match_timm_table(name: str, parameters_millions: float, gmacs: float) -> None:
    """Parameters within 1 % and forward MACs within 3 % of timm's table (1000-class head, 224x224).

    MACs are FlopCounterMode FLOPs / 2 (convolutions and the linear head, which is what the table
    counts); the remaining ~1 % gap is BatchNorm, activations and SE pooling, which the table folds in.
    """
    with torch.device("meta"):
        model = RegNetClassifier(REGNET_CONFIGS[name], num_classes=1000)
        images = torch.empty(1, 3, 224, 224)
    counter = FlopCounterMode(display=False)
    with counter:
        model(images)
    assert _parameter_count(model) / 1e6 == pytest.approx(parameters_millions, rel=0.01)
    assert counter.get_total_flops() / 2 / 1e9 == pytest.approx(gmacs, rel=0.03)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("initial_width", 20, "initial_width must be a positive multiple of 8, got 20"),
        ("width_multiplier", 1.0, "width_multiplier must be > 1, got 1.0"),
        ("depth", 0, "depth must be >= 1, got 0"),
        ("squeeze_excitation_ratio", 1.5, r"squeeze_excitation_ratio must be in \[0, 1\), got 1.5"),
    ],
)
def test_regnet_config_rejects_bad_values(field: str, value: Any, message: str) -> None:
    arguments: dict[str, Any] = {
        "initial_width": 16,
        "width_slope": 20.0,
        "width_multiplier": 2.0,
        "depth": 5,
        "group_width": 8,
    }
    arguments[field] = value
    with pytest.raises(ValueError, match=f"^{message}$"):
        RegNetConfig(**arguments)


def test_backbone_returns_strides_4_to_32() -> None:
    model = RegNetClassifier(REGNET_CONFIGS["regnety_tiny"]).backbone
    features = model(torch.randn(2, 3, 64, 96))
    assert [tuple(level.shape) for level in features] == [
        (2, 16, 16, 24),
        (2, 32, 8, 12),
        (2, 64, 4, 6),
        (2, 128, 2, 3),
    ]
    assert model.stage_strides == (4, 8, 16, 32)


# --- BiFPN ----------------------------------------------------------------------------------


def test_bifpn_levels_keep_their_sizes_and_add_stride_64() -> None:
    """A 48x64 image: strides 8..64 give 6x8, 3x4, 2x2 and 1x1 (ceil at every halving)."""
    neck = BiFPN((32, 64, 128), channels=24, repeats=2)
    inputs = [torch.randn(2, 32, 6, 8), torch.randn(2, 64, 3, 4), torch.randn(2, 128, 2, 2)]
    outputs = neck(inputs)
    assert [tuple(level.shape) for level in outputs] == [(2, 24, 6, 8), (2, 24, 3, 4), (2, 24, 2, 2), (2, 24, 1, 1)]
    assert neck.num_levels == 4


def test_fast_normalized_fusion_weights_are_nonnegative_and_normalized() -> None:
    neck = BiFPN((8, 8), channels=8, repeats=1, extra_levels=0)
    node = neck.layers[0].bottom_up[0]
    with torch.no_grad():
        node.weights.copy_(torch.tensor([-1.0, 2.0]))
    node.eval()
    features = torch.randn(1, 8, 4, 4)
    # A negative weight is clipped to 0, so only the second input (weight 2 / (2 + eps)) counts.
    expected = node.convolution(F.silu(features * (2.0 / (2.0 + 1e-4))))
    torch.testing.assert_close(node([torch.randn(1, 8, 4, 4), features]), expected)


# --- small networks: real training on the CPU -----------------------------------------------


def _training_steps(name: str) -> tuple[int, float]:
    """(steps, AdamW learning rate): camera networks need a few dozen cheap steps to fit their batch,
    the full-width backbones memorize two images in a handful, and any other suite network (e.g.
    EfficientDet-D0, ~0.2 s a step) gets ten."""
    if name in CAMERA_NETWORKS:
        return 30, 3e-3
    if name in BACKBONE_NETWORKS:
        return 4, 1e-3
    return 10, 3e-3


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_small_network_trains(name: str) -> None:
    """Every parameter gets a non-zero gradient from the first backward, and AdamW steps on one
    fixed synthetic batch bring the loss below 0.7x its first value."""
    spec = get_network(name)
    steps, learning_rate = _training_steps(name)
    model = spec.build("small")
    inputs, targets = spec.make_batch("small", SMALL_BATCH, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    losses = []
    for step in range(steps):
        loss = spec.loss(model(**inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            without_gradient = [
                parameter_name
                for parameter_name, parameter in model.named_parameters()
                if parameter.grad is None or not bool(parameter.grad.abs().sum() > 0)
            ]
            assert without_gradient == []
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_batches_are_deterministic_and_meta_matches_cpu(name: str) -> None:
    spec = get_network(name)
    first = spec.make_batch("small", SMALL_BATCH, "cpu")
    second = spec.make_batch("small", SMALL_BATCH, "cpu")
    meta = spec.make_batch("small", SMALL_BATCH, "meta")
    for real, again, storage_free in zip(first, second, meta, strict=True):
        assert real.keys() == storage_free.keys()
        for key in real:
            torch.testing.assert_close(real[key], again[key], rtol=0, atol=0)
            assert storage_free[key].device.type == "meta"
            assert (storage_free[key].shape, storage_free[key].dtype) == (real[key].shape, real[key].dtype)


# --- heads: shapes and losses ---------------------------------------------------------------


def _outputs_and_losses(name: str, losses_of: Any) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    spec = get_network(name)
    inputs, targets = spec.make_batch("small", SMALL_BATCH, "cpu")
    outputs = spec.build("small")(**inputs)
    losses = losses_of(outputs, targets)
    for head, loss in losses.items():
        assert loss.shape == (), head
        assert math.isfinite(loss.item()) and loss.item() >= 0, head
    torch.testing.assert_close(spec.loss(outputs, targets), torch.stack(list(losses.values())).sum())
    return outputs, losses


def test_hydranet_heads() -> None:
    config = HYDRANET_CONFIGS["small"]
    outputs, losses = _outputs_and_losses("hydranet", hydranet_losses)
    bev = (config.bev_height, config.bev_width)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == {
        "object_heatmap": (SMALL_BATCH, config.object_classes, *bev),
        "object_boxes": (SMALL_BATCH, BOX_PARAMETERS, *bev),
        "traffic_controls": (SMALL_BATCH, config.traffic_control_classes),
        "lane_segmentation": (SMALL_BATCH, config.lane_classes, 2 * config.bev_height, 2 * config.bev_width),
    }
    assert set(losses) == set(outputs)


def test_centernet_focal_loss_by_hand() -> None:
    """One positive at p=0.5 and one far negative (target 0) at p=0.5, normalized by 1 positive:
    -(0.5^2 log 0.5) - (1^4 * 0.5^2 log 0.5) = 0.5 log 2."""
    logits = torch.zeros(1, 1, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]]])
    assert centernet_focal_loss(logits, target).item() == pytest.approx(0.5 * math.log(2))


def test_occupancy_heads() -> None:
    config = OCCUPANCY_CONFIGS["small"]
    outputs, losses = _outputs_and_losses("occupancy", occupancy_losses)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == {
        "occupancy": (SMALL_BATCH, *config.output_grid),
        "occupancy_flow": (SMALL_BATCH, 3, *config.output_grid),
        "point_occupancy": (SMALL_BATCH, config.query_points),
        "point_semantics": (SMALL_BATCH, config.query_points, config.semantic_classes),
    }
    assert set(losses) == set(outputs)


def test_occupancy_alignment_follows_ego_motion() -> None:
    """Identity motion reproduces the previous volume; moving one cell forward (+x) shifts it."""
    config = OCCUPANCY_CONFIGS["small"]
    model = OccupancyNetwork(config)
    previous = torch.randn(1, 3, *config.voxel_grid)
    identity = torch.eye(4)[None]
    torch.testing.assert_close(model.align_previous(previous, identity), previous)
    cell_x = 2 * config.volume_half_extent_meters[0] / config.voxel_grid[2]
    forward = torch.eye(4)[None].clone()
    forward[0, 0, 3] = cell_x
    aligned = model.align_previous(previous, forward)
    # The current cell x sees what the previous frame had at x + 1; the last column left the volume.
    torch.testing.assert_close(aligned[..., :-1], previous[..., 1:])
    torch.testing.assert_close(aligned[..., -1], torch.zeros_like(aligned[..., -1]))


def test_lanes_heads() -> None:
    config = LANES_CONFIGS["small"]
    outputs, losses = _outputs_and_losses("lanes", lanes_losses)
    assert {key: tuple(value.shape) for key, value in outputs.items()} == {
        "token_logits": (SMALL_BATCH, config.max_tokens, config.vocabulary_size),
        "vertex_offsets": (SMALL_BATCH, config.max_tokens, 2),
    }
    assert set(losses) == set(outputs)


def test_lanes_decoder_is_causal_and_generates() -> None:
    """Changing token k leaves the predictions at positions < k unchanged (the causal mask)."""
    config = LANES_CONFIGS["small"]
    model = LanesNetwork(config).eval()
    inputs, _ = get_network("lanes").make_batch("small", SMALL_BATCH, "cpu")
    with torch.no_grad():
        memory = model.encode(inputs["images"])
        tokens = inputs["lane_tokens"]
        changed = tokens.clone()
        changed[:, 10] = (changed[:, 10] + 1) % config.vocabulary_size
        before = model.decode(tokens, memory)["token_logits"]
        after = model.decode(changed, memory)["token_logits"]
    torch.testing.assert_close(before[:, :10], after[:, :10])
    assert not torch.allclose(before[:, 10:], after[:, 10:])
    generated = model.generate(inputs["images"], steps=5)
    assert generated.shape == (SMALL_BATCH, 5)
    assert bool(((generated >= 0) & (generated < config.vocabulary_size)).all())
    assert int(inputs["lane_tokens"][0, 0]) == START_TOKEN


def test_grid_coordinates_order_matches_grid_sample() -> None:
    """Row-major cells with x fastest: sampling a volume at its own cell centres is the identity."""
    volume = torch.randn(1, 2, 2, 3, 4)
    grid = grid_coordinates((2, 3, 4), device=torch.device("cpu")).view(1, 2, 3, 4, 3)
    torch.testing.assert_close(F.grid_sample(volume, grid, align_corners=False), volume)


# --- full networks: meta build and fake capture ---------------------------------------------


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_full_network_builds_on_meta_and_runs_under_fake_tensors(name: str) -> None:
    """Forward, loss and backward at the published input size with no storage and no arithmetic."""
    spec = get_network(name)
    with torch.device("meta"):
        model = spec.build("full")
    assert all(parameter.device.type == "meta" for parameter in model.parameters())
    inputs, targets = spec.make_batch("full", 1, "meta")
    if name in CAMERA_NETWORKS:
        assert tuple(inputs["images"].shape) == (1, 8, 3, 960, 1280)
    with FakeTensorMode():
        fake_model = spec.build("full")
        outputs = fake_model(**_fake_like(inputs))
        loss = spec.loss(outputs, _fake_like(targets))
        loss.backward()
    assert loss.shape == ()
    assert all(output.shape[0] == 1 for output in outputs.values())
    assert _parameter_count(fake_model) == _parameter_count(model)


def test_full_hydranet_size() -> None:
    """Tens of millions of parameters; the backbone (RegNetY-4.0GF without its head) is most of it."""
    with torch.device("meta"):
        model = get_network("hydranet").build("full")
    total = _parameter_count(model)
    backbone = _parameter_count(model.get_submodule("encoder.backbone"))
    assert 20e6 < total < 300e6
    assert backbone == pytest.approx(20.65e6 - 1088 * 1000 - 1000, rel=0.01)

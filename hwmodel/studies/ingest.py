"""Ingest: the training samples' path from the hosts, through the DIPs, onto the tile.

Units: bytes, bytes/s, seconds. Every step, ``global_batch`` samples of raw sensor data travel from
host memory to the chips. On Dojo that path has two stages in series, each shared by the DIPs that
serve the mesh:

* host -> DIP: PCIe Gen4 (32 GB/s per DIP, 640 GB/s per tray's host) or, as Tesla added after
  finding PCIe ingest could limit the machine, Ethernet (TTPoE, 50 GB/s per DIP), or both at once;
* DIP -> tile: the DIP's TTP link (900 GB/s per DIP).

A stream through stages in series runs at the slowest stage, so one step's ingest takes
``bytes_per_step / min(host, DIP link)`` and the slower stage is its bound. Samples are raw camera
frames (8 cameras x 1280 x 960 x 12 bit = 14.7 MB each): decoding and augmentation happen on the
chips and are part of the captured workload, not of ingest.

The simulator overlaps ingest with the step (the next batch is prefetched while this one trains):
only ingest time beyond the rest of the step shows, as the breakdown part ``"ingest"``.

Not modelled: host-side decode or storage reads (the host is assumed to have the bytes in memory),
distribution of the bytes from the tile edge to interior chips over the mesh, protocol overheads
(the rates are the published link rates), and any ingest path for GPU presets.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.errors import SpecError
from hwmodel.spec.system import System
from hwmodel.spec.units import GB_PER_S

HARDWARE_REFERENCE = "docs/reference/dojo-hardware.md"
HOST_LINKS = ("pcie", "ethernet", "pcie+ethernet")

DIP_PCIE_BYTES_PER_S = 32 * GB_PER_S
"""DIP table: "DIP Ethernet / PCIe: ... 32 GB/s PCIe Gen4 to host" [S]."""
DIP_ETHERNET_BYTES_PER_S = 50 * GB_PER_S
"""DIP table: "DIP Ethernet / PCIe: 50 GB/s TTPoE" [S]."""
DIP_LINK_BYTES_PER_S = 900 * GB_PER_S
"""DIP table: "DIP link to tile (TTP) 900 GB/s" [S]."""
DIPS_PER_TRAY = 20
"""DIP table: "system tray: 6 tiles (2x3), 20 DIPs" [S]; with 32 GB/s each that is the host's
"640 GB/s PCIe" per tray (DIP table: "host per tray") [D]."""
CHIPS_PER_TRAY = 6 * 25
"""DIP table: "system tray: 6 tiles" [S] x Training tile: "chips 25 D1" [S] = 150 chips [D]."""


@dataclass(frozen=True, kw_only=True)
class CameraSample:
    """One training sample: raw camera frames plus whatever else the host sends with them.

    Attributes:
        cameras: frames per sample (one per camera).
        width_pixels / height_pixels: frame size.
        bits_per_pixel: raw sample depth (12 for Tesla's cameras); packed, no padding.
        other_bytes_per_sample: every other per-sample input read from the host: cached features
            (HydraNet's feature queue), kinematics, labels. 0 for camera frames alone.
    """

    name: str
    cameras: int
    width_pixels: int
    height_pixels: int
    bits_per_pixel: int
    other_bytes_per_sample: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cameras", "width_pixels", "height_pixels", "bits_per_pixel"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"sample {self.name}: {name} must be an integer >= 1, got {value!r}")
        other = self.other_bytes_per_sample
        if not other >= 0:
            raise SpecError(f"sample {self.name}: other_bytes_per_sample must be >= 0, got {other}")

    @property
    def camera_bytes_per_sample(self) -> float:
        """Packed bytes of one sample's frames.

        >>> AUTOPILOT_CAMERAS.camera_bytes_per_sample
        14745600.0
        """
        return self.cameras * self.width_pixels * self.height_pixels * self.bits_per_pixel / 8

    @property
    def bytes_per_sample(self) -> float:
        """Bytes the host sends per sample: frames and everything else."""
        return self.camera_bytes_per_sample + self.other_bytes_per_sample


AUTOPILOT_CAMERAS = CameraSample(
    name="autopilot-8cam",
    # docs/reference/autopilot-networks.md, Inputs: "8 surround cameras, 1280x960, 12-bit raw" [S].
    cameras=8,
    width_pixels=1280,
    height_pixels=960,
    bits_per_pixel=12,
)


@dataclass(frozen=True, kw_only=True)
class IngestPath:
    """The host -> DIP -> chips path serving one mesh, as aggregate rates.

    Attributes:
        host_link: "pcie", "ethernet" or "pcie+ethernet": which host link feeds the DIPs.
        dips: DIPs serving the mesh (a fraction when the mesh is a slice of a tray).
        host_bytes_per_s: host -> DIPs, all DIPs together.
        dip_link_bytes_per_s: DIPs -> chips, all DIPs together.
    """

    name: str
    host_link: str
    dips: float
    host_bytes_per_s: float
    dip_link_bytes_per_s: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.host_link not in HOST_LINKS:
            raise SpecError(f"ingest path {self.name}: host_link must be one of {HOST_LINKS}, got {self.host_link!r}")
        for name in ("dips", "host_bytes_per_s", "dip_link_bytes_per_s"):
            if not getattr(self, name) > 0:
                raise SpecError(f"ingest path {self.name}: {name} must be > 0, got {getattr(self, name)}")


def dojo_ingest_path(num_chips: int, host_link: str = "pcie") -> IngestPath:
    """The ingest path of ``num_chips`` D1 chips in Dojo system trays.

    A tray's host feeds its 20 DIPs; a mesh gets ``20 x num_chips / 150`` DIPs' worth, so a 5x5
    tile, one sixth of a tray, gets 3.33 DIPs: 107 GB/s of PCIe.

    NB: a mesh smaller than a tray is charged its chips' share of the tray's host, as when the
    tray's other tiles train too. A standalone tile with DIPs on all four edges (20 DIPs, as the
    fabric's backing-memory figures assume) would ingest 6x faster; this model is pessimistic there.

    >>> path = dojo_ingest_path(150)
    >>> path.dips, path.host_bytes_per_s / 1e9, path.dip_link_bytes_per_s / 1e12
    (20.0, 640.0, 18.0)
    """
    if num_chips < 1:
        raise SpecError(f"ingest path needs at least 1 chip, got {num_chips}")
    per_dip = {
        "pcie": DIP_PCIE_BYTES_PER_S,
        "ethernet": DIP_ETHERNET_BYTES_PER_S,
        "pcie+ethernet": DIP_PCIE_BYTES_PER_S + DIP_ETHERNET_BYTES_PER_S,
    }
    if host_link not in per_dip:
        raise SpecError(f"ingest host link must be one of {HOST_LINKS}, got {host_link!r}")
    dips = DIPS_PER_TRAY * num_chips / CHIPS_PER_TRAY
    return IngestPath(
        name=f"dojo-{host_link}",
        host_link=host_link,
        dips=dips,
        host_bytes_per_s=dips * per_dip[host_link],
        dip_link_bytes_per_s=dips * DIP_LINK_BYTES_PER_S,
        source=f"{HARDWARE_REFERENCE}: DIP, host, system table",
    )


def ingest_path_for(system: System, host_link: str = "pcie") -> IngestPath | None:
    """The ingest path of ``system`` as its fabric gives it (``host_ingest``), or None where ingest
    is not modelled."""
    if system.fabric.host_ingest != "dip":
        return None
    return dojo_ingest_path(system.num_chips, host_link)


@dataclass(frozen=True, kw_only=True)
class DataFeed:
    """What the simulator needs to cost ingest: the sample format and the path it travels."""

    sample: CameraSample
    path: IngestPath


@dataclass(frozen=True, kw_only=True)
class IngestCost:
    """Time to bring one step's samples onto the chips, and the stage that sets it.

    ``bound`` is ``"host <link>"`` (e.g. ``"host pcie"``) or ``"dip link"``.
    """

    samples_per_step: int
    bytes_per_step: float
    host_s: float
    dip_link_s: float
    time_s: float
    bound: str

    @property
    def samples_per_s_limit(self) -> float:
        """The most samples per second this path can feed, whatever the chips do."""
        return self.samples_per_step / self.time_s


def ingest(feed: DataFeed, global_batch: int) -> IngestCost:
    """Ingest time of one step of ``global_batch`` samples.

    >>> feed = DataFeed(sample=AUTOPILOT_CAMERAS, path=dojo_ingest_path(150))
    >>> cost = ingest(feed, 150)
    >>> round(cost.time_s * 1e3, 4), cost.bound
    (3.456, 'host pcie')
    """
    if global_batch < 1:
        raise SpecError(f"ingest needs a global batch >= 1, got {global_batch}")
    bytes_per_step = global_batch * feed.sample.bytes_per_sample
    host_s = bytes_per_step / feed.path.host_bytes_per_s
    dip_link_s = bytes_per_step / feed.path.dip_link_bytes_per_s
    bound = f"host {feed.path.host_link}" if host_s >= dip_link_s else "dip link"
    return IngestCost(
        samples_per_step=global_batch,
        bytes_per_step=bytes_per_step,
        host_s=host_s,
        dip_link_s=dip_link_s,
        time_s=max(host_s, dip_link_s),
        bound=bound,
    )

"""GDAL's sieve filter made exact across blocks (region sizes and neighbours are global).

`plan_sieve` runs phases 1 and 2 on the blocks and decides on the client what happens to every
small region that touches a seam; `sieve_block` then sieves one block's pixels (phase 3) as
sieving the whole raster would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from geoseg.classes import CLASS_NODATA
from geoseg.errors import SceneError
from geoseg.geo.grid import Block, BlockGrid
from geoseg.vectorize.blocks import (
    BlockEdges,
    BlockJob,
    block_edges,
    edge_strips,
    read_block,
    seam_labels,
)
from geoseg.vectorize.executors import Executor
from geoseg.vectorize.options import Connectivity
from geoseg.vectorize.polygonize import label_regions
from geoseg.vectorize.seams import CrossPairs, SeamIndex, cross_pairs, seam_groups

_NO_VALUE = -1
"""A region's new class where it keeps its own."""

#
# GDAL's sieve (gdalsievefilter.cpp), restated: every region with fewer than T pixels takes
# the class of the first region of >= T pixels reached by following "largest neighbour"
# links (region -> its neighbour with the most pixels; among equal sizes, the neighbour met
# first when the raster is scanned row by row, comparing each pixel with its up, up-left,
# up-right (8-connectivity) and left neighbours in that order). A chain that runs into a
# region without neighbours or into a cycle leaves the region as it is. Nodata is neither a
# region nor a neighbour.
#
# Block-wise: (1) census -- each block labels its regions; seam pieces are joined into global
# regions exactly as for polygons, giving every region its global size. (2) candidates -- each
# block finds the largest neighbour of its small regions from its own pixel pairs (complete
# for regions inside the block); for small seam regions it reports its best candidate, and
# the client adds the pairs across seams, so their choice is also exact; chains inside a
# block are followed by pointer jumping and reported where a seam region points into them.
# (3) the client follows the chains between seam regions; each block then applies the same
# decisions to its pixels before polygonizing. The result equals sieving the whole raster.


@dataclass(frozen=True, eq=False)
class _Census:
    n_labels: int
    edges: BlockEdges
    seam_ids: np.ndarray
    seam_size: np.ndarray
    seam_class: np.ndarray


@dataclass(frozen=True, eq=False)
class SievePlan:
    """What one block needs to sieve itself as the whole raster would be sieved.

    Region ids: seam regions are numbered 0..G-1 globally, the block's other regions
    ``gid_base + label - 1``. ``seam_value`` (per seam label, -1 = unchanged) is known only
    in the last phase.
    """

    threshold_px: int
    gid_base: int
    seam_ids: np.ndarray
    seam_gid: np.ndarray
    seam_size: np.ndarray
    seam_value: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class _Candidates:
    """A block's best-neighbour candidates for small seam regions, and chain ends.

    ``res_*``: for small inside regions that are such a candidate, where their chain inside
    the block ends: kind 0 = unchanged, 1 = class ``value``, 2 = seam region ``value``.
    """

    src: np.ndarray
    tgt: np.ndarray
    tgt_size: np.ndarray
    time: np.ndarray
    tgt_class: np.ndarray
    res_gid: np.ndarray
    res_kind: np.ndarray
    res_value: np.ndarray


@dataclass(frozen=True, eq=False)
class _Regions:
    """A block's regions for the sieve: per label (index 0 = nodata) gid, size, class."""

    labels: np.ndarray
    gid: np.ndarray
    size: np.ndarray
    klass: np.ndarray
    is_seam: np.ndarray


def _sieve_census(job: BlockJob, block: Block) -> _Census:
    """Worker task, sieve phase 1: regions of a block, sizes of those on its seams."""
    classes = read_block(job, block)
    labels, component_class = label_regions(classes, connectivity=job.connectivity)
    sizes = np.bincount(labels.ravel(), minlength=len(component_class) + 1)
    strips = edge_strips(labels)
    seam_ids = seam_labels(strips, block)
    return _Census(
        n_labels=len(component_class),
        edges=block_edges(strips, classes),
        seam_ids=seam_ids,
        seam_size=sizes[seam_ids].astype(np.int64),
        seam_class=component_class[seam_ids - 1].astype(np.int64),
    )


def _sieve_regions(job: BlockJob, block: Block, classes: np.ndarray, plan: SievePlan) -> _Regions:
    labels, component_class = label_regions(classes, connectivity=job.connectivity)
    if not np.array_equal(seam_labels(edge_strips(labels), block), plan.seam_ids):
        raise SceneError(
            f"{job.classes_path}: the class raster changed while it was being vectorized; "
            "run again on a file that is not being written"
        )
    n = len(component_class)
    gid = plan.gid_base + np.arange(n + 1, dtype=np.int64) - 1
    gid[0] = -1
    size = np.bincount(labels.ravel(), minlength=n + 1).astype(np.int64)
    size[0] = 0
    gid[plan.seam_ids] = plan.seam_gid
    size[plan.seam_ids] = plan.seam_size
    is_seam = np.zeros(n + 1, dtype=bool)
    is_seam[plan.seam_ids] = True
    klass = np.concatenate(([CLASS_NODATA], component_class)).astype(np.int64)
    return _Regions(labels, gid, size, klass, is_seam)


def _block_pairs(
    labels: np.ndarray, block: Block, width_px: int, connectivity: Connectivity
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent pixels of different regions inside a block: (this, other, GDAL time)."""
    rows = np.arange(block.row_off, block.row_off + block.height, dtype=np.int64)
    cols = np.arange(block.col_off, block.col_off + block.width, dtype=np.int64)
    views = [  # (this pixels, other pixels, their rows, their cols, k)
        (labels[1:, :], labels[:-1, :], rows[1:], cols, 0),
        (labels[:, 1:], labels[:, :-1], rows, cols[1:], 3),
    ]
    if connectivity == Connectivity.EIGHT:
        views += [
            (labels[1:, 1:], labels[:-1, :-1], rows[1:], cols[1:], 1),
            (labels[1:, :-1], labels[:-1, 1:], rows[1:], cols[:-1], 2),
        ]
    this, other, time = [], [], []
    for a, b, r, c, k in views:
        rr, cc = np.nonzero((a != b) & (a > 0) & (b > 0))
        this.append(a[rr, cc])
        other.append(b[rr, cc])
        time.append((r[rr] * width_px + c[cc]) * 4 + k)
    return np.concatenate(this), np.concatenate(other), np.concatenate(time)


def _best_neighbours(
    job: BlockJob, block: Block, regions: _Regions, threshold_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per label: the label of its largest neighbour in the block (0 = none), and the time.

    Only small regions get one. Labels of one global region are never neighbours.
    """
    this, other, time = _block_pairs(regions.labels, block, job.width_px, job.connectivity)
    src = np.concatenate((this, other))
    tgt = np.concatenate((other, this))
    time = np.concatenate((time, time))
    keep = (regions.gid[src] != regions.gid[tgt]) & (regions.size[src] < threshold_px)
    src, tgt, time = src[keep], tgt[keep], time[keep]
    best = np.zeros(len(regions.gid), dtype=np.int64)
    best_time = np.zeros(len(regions.gid), dtype=np.int64)
    if len(src):
        first = _first_choice(src, regions.size[tgt], time)
        best[src[first]] = tgt[first]
        best_time[src[first]] = time[first]
    return best, best_time


def _follow_chains(regions: _Regions, best: np.ndarray, threshold_px: int) -> np.ndarray:
    """Where each label's chain of largest neighbours ends inside the block (pointer jumping).

    Large regions and small seam regions end chains (the rest of a seam region's chain is
    decided globally); 0 means "no neighbour"; a label that ends on a small inside region
    ran into a cycle.
    """
    n = len(best)
    nxt = np.arange(n, dtype=np.int64)
    inside_small = (regions.size < threshold_px) & ~regions.is_seam
    inside_small[0] = False
    nxt[inside_small] = best[inside_small]
    return _pointer_jump(nxt)


def _pointer_jump(nxt: np.ndarray) -> np.ndarray:
    """Where each chain of ``nxt`` links ends (its fixed point), by pointer jumping."""
    for _ in range(max(1, len(nxt).bit_length() + 1)):
        jumped = nxt[nxt]
        if np.array_equal(jumped, nxt):
            break
        nxt = jumped
    return nxt


def _chain_end_kinds(
    regions: _Regions, end: np.ndarray, threshold_px: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which chain ends are a large region (the class to take) and which a small seam region
    (decided globally); the others leave their regions unchanged."""
    large = (end > 0) & (regions.size[end] >= threshold_px)
    exits = (end > 0) & ~large & regions.is_seam[end]
    return large, exits


def _first_choice(src: np.ndarray, size: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per source, the position of its chosen link: the largest target, then the earliest."""
    order = np.lexsort((time, -size, src))
    return order[np.concatenate(([True], src[order][1:] != src[order][:-1]))]


def _sieve_candidates(job: BlockJob, block: Block, plan: SievePlan) -> _Candidates:
    """Worker task, sieve phase 2: candidates for small seam regions, and chain ends."""
    regions = _sieve_regions(job, block, read_block(job, block), plan)
    threshold = plan.threshold_px
    best, best_time = _best_neighbours(job, block, regions, threshold)
    src = np.flatnonzero(regions.is_seam & (regions.size < threshold) & (best > 0))
    tgt = best[src]
    inside_small_tgt = np.unique(tgt[~regions.is_seam[tgt] & (regions.size[tgt] < threshold)])
    end = _follow_chains(regions, best, threshold)[inside_small_tgt]
    kind = np.zeros(len(end), dtype=np.int64)
    value = np.zeros(len(end), dtype=np.int64)
    large, exits = _chain_end_kinds(regions, end, threshold)
    kind[large], value[large] = 1, regions.klass[end[large]]
    kind[exits], value[exits] = 2, regions.gid[end[exits]]
    return _Candidates(
        src=regions.gid[src],
        tgt=regions.gid[tgt],
        tgt_size=regions.size[tgt],
        time=best_time[src],
        tgt_class=regions.klass[tgt],
        res_gid=regions.gid[inside_small_tgt],
        res_kind=kind,
        res_value=value,
    )


def _seam_region_links(
    group_size: np.ndarray,
    group_class: np.ndarray,
    candidates: Sequence[_Candidates],
    cross: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every neighbour link of a seam region: (source, target, target size, time, class).

    The blocks' candidates, and both directions of every pair of different regions across a
    seam (``cross``: region a, region b, time).
    """
    ga, gb, cross_time = cross
    differ = ga != gb
    ga, gb, cross_time = ga[differ], gb[differ], cross_time[differ]
    src = np.concatenate([c.src for c in candidates] + [ga, gb])
    tgt = np.concatenate([c.tgt for c in candidates] + [gb, ga])
    size = np.concatenate([c.tgt_size for c in candidates] + [group_size[gb], group_size[ga]])
    time = np.concatenate([c.time for c in candidates] + [cross_time, cross_time])
    klass = np.concatenate([c.tgt_class for c in candidates] + [group_class[gb], group_class[ga]])
    return src, tgt, size, time, klass


def _chain_ends_inside(
    candidates: Sequence[_Candidates], gid: np.ndarray, n_groups: int
) -> np.ndarray:
    """Chain node where the chains through the small inside regions ``gid`` end (blocks' word)."""
    res_gid = np.concatenate([c.res_gid for c in candidates])
    res_kind = np.concatenate([c.res_kind for c in candidates])
    res_value = np.concatenate([c.res_value for c in candidates])
    order_res = np.argsort(res_gid)
    at = order_res[np.searchsorted(res_gid[order_res], gid)]
    kind, value = res_kind[at], res_value[at]
    return np.where(kind == 1, n_groups + 1 + value, np.where(kind == 2, value, n_groups))


def _link_targets(
    threshold_px: int,
    n_groups: int,
    links: tuple[np.ndarray, np.ndarray, np.ndarray],
    candidates: Sequence[_Candidates],
) -> np.ndarray:
    """The chain node each chosen link (target, target size, target class) leads to."""
    tgt, size, klass = links
    unchanged = n_groups
    target = np.full(len(tgt), unchanged, dtype=np.int64)
    is_seam = tgt < n_groups
    large = size >= threshold_px
    target[is_seam & ~large] = tgt[is_seam & ~large]
    target[large] = n_groups + 1 + klass[large]
    inside_small = ~is_seam & ~large
    if inside_small.any():
        target[inside_small] = _chain_ends_inside(candidates, tgt[inside_small], n_groups)
    return target


def _resolve_seam_regions(
    threshold_px: int,
    group_size: np.ndarray,
    group_class: np.ndarray,
    candidates: Sequence[_Candidates],
    cross: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """New class of every seam region (-1 = unchanged), following chains across blocks.

    ``cross``: (region a, region b, time) of the pixel pairs across seams. Chain nodes: seam
    regions 0..G-1, "unchanged" G, "class v" G + 1 + v (terminals loop on themselves, as do
    large seam regions, which are never a chain's source).
    """
    n_groups = len(group_size)
    src, tgt, size, time, klass = _seam_region_links(group_size, group_class, candidates, cross)
    small = group_size < threshold_px
    keep = small[src]
    src, tgt, size, time, klass = src[keep], tgt[keep], size[keep], time[keep], klass[keep]
    nxt = np.arange(n_groups + 1 + 256, dtype=np.int64)
    nxt[:n_groups][small] = n_groups  # "unchanged" unless a link says otherwise
    if len(src):
        first = _first_choice(src, size, time)
        links = (tgt[first], size[first], klass[first])
        nxt[src[first]] = _link_targets(threshold_px, n_groups, links, candidates)
    end = _pointer_jump(nxt)[:n_groups]
    value = np.where(end > n_groups, end - n_groups - 1, _NO_VALUE)
    return np.where(small, value, _NO_VALUE)


def sieve_block(job: BlockJob, block: Block, classes: np.ndarray, plan: SievePlan) -> np.ndarray:
    """Sieve phase 3: this block's pixels as the whole-raster sieve would leave them."""
    if plan.seam_value is None:
        raise RuntimeError("sieve: the plan has no decisions for the seam regions yet")
    regions = _sieve_regions(job, block, classes, plan)
    threshold = plan.threshold_px
    best, _ = _best_neighbours(job, block, regions, threshold)
    end = _follow_chains(regions, best, threshold)
    new = np.full(len(best), _NO_VALUE, dtype=np.int64)
    new[plan.seam_ids] = plan.seam_value
    inside_small = (regions.size < threshold) & ~regions.is_seam
    inside_small[0] = False
    end_small = end[inside_small]
    large, exits = _chain_end_kinds(regions, end_small, threshold)
    decided = np.full(len(end_small), _NO_VALUE, dtype=np.int64)
    decided[large] = regions.klass[end_small[large]]
    decided[exits] = new[end_small[exits]]
    new[inside_small] = decided
    lut = np.where(new >= 0, new, regions.klass).astype(np.uint8)
    return np.where(regions.labels > 0, lut[regions.labels], classes)


def _gather(executor: Executor, tasks: Sequence[Any]) -> list[Any]:
    results: list[Any] = [None] * len(tasks)
    for i, value in executor.as_completed(tasks):
        results[i] = value
    return results


@dataclass(frozen=True, eq=False)
class _SeamRegions:
    """Sieve phase 1 on the client: the global region of every seam piece, its size, class."""

    index: SeamIndex
    pairs: CrossPairs
    group_of: np.ndarray
    size: np.ndarray
    klass: np.ndarray

    @staticmethod
    def join(job: BlockJob, grid: BlockGrid, census: Sequence[_Census]) -> _SeamRegions:
        index = SeamIndex.build([c.seam_ids for c in census])
        pairs = cross_pairs(grid, [c.edges for c in census], job.connectivity)
        group_of, n_groups = seam_groups(pairs, index)
        group_size = np.bincount(
            group_of, weights=np.concatenate([c.seam_size for c in census]), minlength=n_groups
        )
        group_size = np.rint(group_size).astype(np.int64)
        group_class = np.zeros(n_groups, dtype=np.int64)
        group_class[group_of] = np.concatenate([c.seam_class for c in census])
        return _SeamRegions(index, pairs, group_of, group_size, group_class)

    def cross(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(region a, region b, time) of every pixel pair across a seam."""
        pairs = self.pairs
        return (
            self.group_of[self.index.find(pairs.block_a, pairs.label_a)],
            self.group_of[self.index.find(pairs.block_b, pairs.label_b)],
            pairs.time,
        )


def _block_plans(
    job: BlockJob, blocks: Sequence[Block], census: Sequence[_Census], seams: _SeamRegions
) -> list[SievePlan]:
    """Each block's plan for phase 2: global ids and sizes of its regions."""
    n_groups = len(seams.size)
    label_base = np.concatenate(([0], np.cumsum([c.n_labels for c in census])))
    plans = []
    for b, c in zip(blocks, census, strict=True):
        seam_gid = seams.group_of[seams.index.offsets[b.index] : seams.index.offsets[b.index + 1]]
        plans.append(
            SievePlan(
                threshold_px=job.sieve_px,
                gid_base=n_groups + int(label_base[b.index]),
                seam_ids=c.seam_ids,
                seam_gid=seam_gid,
                seam_size=seams.size[seam_gid],
            )
        )
    return plans


def plan_sieve(job: BlockJob, grid: BlockGrid, executor: Executor) -> list[SievePlan]:
    """Run sieve phases 1 and 2 on the blocks; return each block's phase-3 plan."""
    blocks = grid.blocks()
    census: list[_Census] = _gather(
        executor, [executor.submit(_sieve_census, job, b) for b in blocks]
    )
    seams = _SeamRegions.join(job, grid, census)
    plans = _block_plans(job, blocks, census, seams)
    candidates: list[_Candidates] = _gather(
        executor,
        [executor.submit(_sieve_candidates, job, b, p) for b, p in zip(blocks, plans, strict=True)],
    )
    value = _resolve_seam_regions(job.sieve_px, seams.size, seams.klass, candidates, seams.cross())
    return [replace(p, seam_value=value[p.seam_gid]) for p in plans]

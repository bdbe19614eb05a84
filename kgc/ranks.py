"""Scores -> filtered ranks.

Every query (for example ``(head, relation, ?)``) has one true answer, its *target*, and is
scored against every entity (the *candidates*) by a dot product of its query embedding
with the entity embeddings. The rank of the target among the candidates is what the
link-prediction metrics (:mod:`kgc.metrics`) are computed from.

Rank semantics
--------------
Scores may tie, so "the position of the target" is not unique. kgc computes three ranks,
with the same definitions as PyKEEN:

* **optimistic** = 1 + the number of candidates whose score is *strictly higher* than the
  target's score (every tie is broken in the target's favour);
* **pessimistic** = the number of candidates whose score is *greater than or equal to* the
  target's score, the target itself included (every tie is broken against the target);
* **realistic** = (optimistic + pessimistic) / 2, which is the expected rank when ties are
  broken uniformly at random.

Without ties the three are equal. kgc reports the **realistic** rank as its headline: the
optimistic rank rewards a model that gives many candidates the same score (a constant
scorer would rank every target first), the pessimistic rank punishes it.

Filtered setting
----------------
A query can have several correct answers (the other known true triples of the graph).
Ranking the target below another correct answer is not an error of the model, so before
ranking, the other known true answers of the query are *removed* from the candidates
(their score is set to ``-inf`` and they count neither as higher nor as tied). The target
itself is never removed, even when it is listed among the answers to exclude.

Memory
------
Queries are processed in chunks of rows: only a ``[chunk, N]`` float32 score block (plus
one boolean comparison buffer of the same shape and the temporaries of ``topk``) exists at
a time, never the full ``Q x N`` matrix, so graphs with millions of entities are ranked
with bounded memory (see :func:`auto_chunk_size`). Filtered candidates are handled as
sparse ``(row, column)`` pairs, and inside a chunk everything is done with tensor
operations (no Python loop over queries or candidates).
"""

from __future__ import annotations

import logging
import operator
import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from kgc.errors import KGCError

log = logging.getLogger("kgc")

__all__ = ["RankResult", "filtered_ranks", "auto_chunk_size"]

# Fallback for the available memory when the operating system does not tell (2 GiB).
_FALLBACK_AVAILABLE_BYTES = 2 * 1024**3
_MAX_CHUNK = 8192

ExcludeFn = Callable[[int, int], tuple]
BonusFn = Callable[[int, int], tuple]


@dataclass
class RankResult:
    """Ranks of Q queries (see the module docstring for the three rank semantics).

    ``optimistic``, ``pessimistic`` and ``realistic`` are ``[Q]`` float64 tensors;
    ``top_indices`` (``[Q, k]`` int64) and ``top_scores`` (``[Q, k]`` float32) are the k best
    candidates of each query, best first, after filtering and bonus. Filtered candidates
    never appear there; when fewer than k candidates remain the row is padded with index
    ``-1`` and score ``-inf``.
    """

    optimistic: torch.Tensor
    pessimistic: torch.Tensor
    realistic: torch.Tensor
    top_indices: torch.Tensor
    top_scores: torch.Tensor

    def __len__(self) -> int:
        return int(self.optimistic.shape[0])

    @staticmethod
    def concat(results: list["RankResult"]) -> "RankResult":
        """Concatenate results along the query axis (in the order given)."""
        results = list(results)
        if not results:
            raise KGCError("RankResult.concat: no results to concatenate")
        widths = {r.top_indices.shape[1] for r in results}
        if len(widths) != 1:
            raise KGCError(
                f"RankResult.concat: results have different top-k widths {sorted(widths)}"
            )
        return RankResult(
            optimistic=torch.cat([r.optimistic for r in results]),
            pessimistic=torch.cat([r.pessimistic for r in results]),
            realistic=torch.cat([r.realistic for r in results]),
            top_indices=torch.cat([r.top_indices for r in results]),
            top_scores=torch.cat([r.top_scores for r in results]),
        )


def auto_chunk_size(
    num_entities: int, memory_fraction: float = 0.25, bytes_per_score: int = 16
) -> int:
    """Number of query rows per chunk so that one chunk's working memory fits.

    One chunk needs about ``chunk_size * num_entities * bytes_per_score`` bytes (the float32
    score block, the float32 comparison buffer, float64 from 2^24 entities on, and the
    temporaries of top-k; the default of 16 bytes leaves a margin). The
    chunk size is chosen so that this stays within ``memory_fraction`` of the memory
    currently available (``os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')``,
    2 GiB when the system does not report it), clamped to ``[1, 8192]``.
    """
    if num_entities < 0:
        raise KGCError(f"auto_chunk_size: num_entities must be >= 0, got {num_entities}")
    if not (0 < memory_fraction <= 1):
        raise KGCError(f"auto_chunk_size: memory_fraction must be in (0, 1], got {memory_fraction}")
    if bytes_per_score <= 0:
        raise KGCError(f"auto_chunk_size: bytes_per_score must be > 0, got {bytes_per_score}")
    if num_entities == 0:
        return _MAX_CHUNK
    available = _available_host_bytes()
    rows = int(available * memory_fraction) // (num_entities * bytes_per_score)
    return int(max(1, min(_MAX_CHUNK, rows)))


def _available_host_bytes() -> int:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_AVAILABLE_BYTES
    if not isinstance(pages, int) or not isinstance(page_size, int) or pages <= 0 or page_size <= 0:
        return _FALLBACK_AVAILABLE_BYTES
    return pages * page_size


def _gpu_chunk_cap(device: torch.device, num_entities: int) -> Optional[int]:
    """On a CUDA device the score block lives in GPU memory: cap the chunk by it as well."""
    if device.type != "cuda" or num_entities == 0:
        return None
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except Exception:  # pragma: no cover - depends on the driver
        return None
    return max(1, min(_MAX_CHUNK, int(free * 0.25) // (num_entities * 16)))


def _as_index_tensor(x, name: str, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise KGCError(f"{name} must hold integers, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.int64).reshape(-1)


def _pairs(fn, start: int, end: int, what: str, device: torch.device, n: int, with_values: bool):
    """Call an exclude/bonus callable for one chunk and check what it returned."""
    out = fn(start, end)
    if out is None:
        return None
    try:
        parts = tuple(out)
    except TypeError:
        raise KGCError(f"{what}({start}, {end}) must return a tuple, got {type(out).__name__}") from None
    expected = 3 if with_values else 2
    if len(parts) != expected:
        raise KGCError(f"{what}({start}, {end}) must return {expected} tensors, got {len(parts)}")
    rows = _as_index_tensor(parts[0], f"{what} rows", device)
    cols = _as_index_tensor(parts[1], f"{what} cols", device)
    if rows.shape != cols.shape:
        raise KGCError(f"{what}({start}, {end}): rows and cols differ in length ({rows.numel()} vs {cols.numel()})")
    chunk = end - start
    if rows.numel():
        if int(rows.min()) < 0 or int(rows.max()) >= chunk:
            raise KGCError(
                f"{what}({start}, {end}): row indices must be within the chunk [0, {chunk}), "
                f"got range [{int(rows.min())}, {int(rows.max())}]"
            )
        if int(cols.min()) < 0 or int(cols.max()) >= n:
            raise KGCError(
                f"{what}({start}, {end}): entity indices must be in [0, {n}), "
                f"got range [{int(cols.min())}, {int(cols.max())}]"
            )
    if not with_values:
        return rows, cols
    values = torch.as_tensor(parts[2]).to(device=device, dtype=torch.float32).reshape(-1)
    if values.shape != rows.shape:
        raise KGCError(f"{what}({start}, {end}): values differ in length from rows ({values.numel()} vs {rows.numel()})")
    return rows, cols, values


def _count_arg(value, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise KGCError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise KGCError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise KGCError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def _as_float32(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() != 2:
        raise KGCError(f"{name} must be a 2-D tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise KGCError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x if x.dtype == torch.float32 else x.to(torch.float32)


def filtered_ranks(
    query_emb: torch.Tensor,
    entity_emb: torch.Tensor,
    targets: torch.Tensor,
    exclude: Optional[ExcludeFn] = None,
    *,
    bonus: Optional[BonusFn] = None,
    top_k: int = 10,
    chunk_size: Optional[int] = None,
    progress: bool = False,
) -> RankResult:
    """Filtered optimistic/pessimistic/realistic ranks of each query's target, plus its top-k.

    Args:
        query_emb: ``[Q, d]`` query embeddings.
        entity_emb: ``[N, d]`` entity (candidate) embeddings. Scores are
            ``query_emb @ entity_emb.T`` in float32 (other float dtypes are cast), computed
            on ``entity_emb``'s device one chunk of queries at a time.
        targets: ``[Q]`` index of each query's true answer in ``entity_emb``.
        exclude: ``exclude(start, end) -> (rows, cols)`` for queries ``start..end-1``:
            ``rows`` are 0-based within the chunk, ``cols`` entity indices to remove from
            that query's candidates (other known true answers). A query's own target is
            never removed. ``None``: unfiltered ranks.
        bonus: ``bonus(start, end) -> (rows, cols, values)``: ``values`` are added to those
            scores before ranking (graph re-ranking); repeated ``(row, col)`` pairs add up.
            The target's score is read after the bonus, from the same row.
        top_k: number of best candidates to return per query.
        chunk_size: queries per chunk; ``None`` picks :func:`auto_chunk_size` ``(N)``.
        progress: show a tqdm bar over the chunks.

    Returns:
        A :class:`RankResult` whose tensors are on the CPU.

    Candidates whose score is NaN (while the target's is not) are dropped like filtered
    ones, with a warning; a NaN target score raises :class:`KGCError`.
    """
    q = _as_float32(query_emb, "query_emb")
    e = _as_float32(entity_emb, "entity_emb")
    if q.shape[1] != e.shape[1]:
        raise KGCError(
            f"query_emb and entity_emb differ in dimension ({q.shape[1]} vs {e.shape[1]})"
        )
    device = e.device
    num_q, n = int(q.shape[0]), int(e.shape[0])
    tgt_all = _as_index_tensor(targets, "targets", torch.device("cpu"))
    if tgt_all.numel() != num_q:
        raise KGCError(f"targets has {tgt_all.numel()} entries for {num_q} queries")
    if num_q and (int(tgt_all.min()) < 0 or int(tgt_all.max()) >= n):
        raise KGCError(
            f"targets must be entity indices in [0, {n}), "
            f"got range [{int(tgt_all.min())}, {int(tgt_all.max())}]"
        )
    top_k = _count_arg(top_k, "top_k", minimum=0)
    if chunk_size is None:
        chunk_size = auto_chunk_size(n)
        cap = _gpu_chunk_cap(device, n)
        if cap is not None:
            chunk_size = min(chunk_size, cap)
    else:
        chunk_size = _count_arg(chunk_size, "chunk_size", minimum=1)

    k_eff = min(top_k, n)
    # Comparisons are written as 0/1 floats and counted by a float sum: summing a boolean
    # matrix is not vectorised on the CPU (5x slower here for WN18RR's 3,134 x 40,943
    # scores). Counts of 0/1 are exact in float32 below 2^24 candidates, float64 above.
    count_dtype = torch.float32 if n < 2**24 else torch.float64
    opt_parts, pes_parts, idx_parts, val_parts = [], [], [], []
    nan_dropped = 0
    # one work buffer for the comparisons, reused by every chunk
    buf = torch.empty((min(chunk_size, num_q), n), dtype=count_dtype, device=device)

    starts = range(0, num_q, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=len(starts), desc="ranking", unit="chunk")

    for start in starts:
        end = min(start + chunk_size, num_q)
        c = end - start
        tgt = tgt_all[start:end].to(device)

        scores = q[start:end].to(device) @ e.T  # [c, n] float32

        if bonus is not None:
            got = _pairs(bonus, start, end, "bonus", device, n, with_values=True)
            if got is not None:
                b_rows, b_cols, b_vals = got
                scores.index_put_((b_rows, b_cols), b_vals, accumulate=True)

        # read after the bonus, before anything is dropped, from the very row that is ranked
        target_scores = scores[torch.arange(c, device=device), tgt]
        bad = torch.isnan(target_scores)
        if bool(bad.any()):
            which = (torch.nonzero(bad).reshape(-1)[:5] + start).tolist()
            raise KGCError(
                f"the score of the true answer is NaN for {int(bad.sum())} queries "
                f"(first query indices: {which}); the embeddings or the bonus contain NaN"
            )

        # Dropped candidates (filtered ones, NaN ones) are kept as sparse (row, col) pairs
        # and get the score -inf: they can then never be strictly higher than a target.
        d_rows = torch.zeros(0, dtype=torch.int64, device=device)
        d_cols = torch.zeros(0, dtype=torch.int64, device=device)
        if bool(torch.isnan(scores.sum())):  # cheap test first; NaN also from inf - inf
            nan_pos = torch.nonzero(torch.isnan(scores))
            if nan_pos.shape[0]:
                nan_dropped += int(nan_pos.shape[0])
                d_rows, d_cols = nan_pos[:, 0], nan_pos[:, 1]
        if exclude is not None:
            got = _pairs(exclude, start, end, "exclude", device, n, with_values=False)
            if got is not None:
                x_rows, x_cols = got
                not_target = x_cols != tgt[x_rows]  # the target is never removed
                d_rows = torch.cat([d_rows, x_rows[not_target]])
                d_cols = torch.cat([d_cols, x_cols[not_target]])
        if d_rows.numel():
            scores.index_put_((d_rows, d_cols), torch.tensor(float("-inf"), device=device))

        t = target_scores.unsqueeze(1)
        work = buf[:c]
        torch.gt(scores, t, out=work)
        higher = work.sum(dim=1)
        torch.ge(scores, t, out=work)
        at_least = work.sum(dim=1)
        # A target scoring -inf ties with every dropped candidate: take those back out.
        neg_rows = torch.isneginf(target_scores)
        if d_rows.numel() and bool(neg_rows.any()):
            on_neg = neg_rows[d_rows]
            keys = torch.unique(d_rows[on_neg] * n + d_cols[on_neg])
            at_least -= torch.bincount(keys // n, minlength=c).to(count_dtype)

        top_vals, top_idx = _top_k(scores, k_eff, d_rows, d_cols)
        del scores

        opt_parts.append((higher + 1).to("cpu", torch.float64))
        pes_parts.append(at_least.to("cpu", torch.float64))
        idx_parts.append(top_idx.to("cpu"))
        val_parts.append(top_vals.to("cpu"))
    del buf

    if nan_dropped:
        log.warning("%d candidate scores were NaN and were left out of the ranking", nan_dropped)

    if num_q:
        optimistic = torch.cat(opt_parts)
        pessimistic = torch.cat(pes_parts)
        top_indices = torch.cat(idx_parts)
        top_scores = torch.cat(val_parts)
    else:
        optimistic = torch.zeros(0, dtype=torch.float64)
        pessimistic = torch.zeros(0, dtype=torch.float64)
        top_indices = torch.zeros((0, k_eff), dtype=torch.int64)
        top_scores = torch.zeros((0, k_eff), dtype=torch.float32)
    if top_k > k_eff:  # fewer entities than k: pad
        pad = top_k - k_eff
        top_indices = torch.cat(
            [top_indices, torch.full((num_q, pad), -1, dtype=torch.int64)], dim=1
        )
        top_scores = torch.cat(
            [top_scores, torch.full((num_q, pad), float("-inf"), dtype=torch.float32)], dim=1
        )
    return RankResult(
        optimistic=optimistic,
        pessimistic=pessimistic,
        realistic=(optimistic + pessimistic) / 2,
        top_indices=top_indices,
        top_scores=top_scores,
    )


def _top_k(scores: torch.Tensor, k: int, d_rows: torch.Tensor, d_cols: torch.Tensor):
    """Best k remaining candidates per row, best first; padded with index -1 / score -inf.

    ``scores`` already holds ``-inf`` at the dropped positions ``(d_rows, d_cols)``. One
    ``topk`` serves every row whose k-th best score is finite (then no dropped candidate can
    be among the best k). Only the rare rows whose best k reach down to ``-inf`` need care:
    there a dropped candidate ties with any remaining candidate scoring ``-inf``. Those rows
    are re-selected on a float64 copy in which remaining ``-inf`` candidates are lifted just
    above the dropped ones (to -1e300, below every float32 number), and the dropped ones
    that still make it into the top k become padding.
    """
    c = scores.shape[0]
    if k == 0:
        return (
            torch.zeros((c, 0), dtype=torch.float32, device=scores.device),
            torch.zeros((c, 0), dtype=torch.int64, device=scores.device),
        )
    vals, idx = torch.topk(scores, k, dim=1, largest=True, sorted=True)
    low = torch.nonzero(torch.isneginf(vals[:, -1])).reshape(-1)
    if low.numel() == 0:
        return vals, idx
    sub = scores[low]
    keep = torch.ones(sub.shape, dtype=torch.bool, device=scores.device)
    if d_rows.numel():
        pos = torch.full((c,), -1, dtype=torch.int64, device=scores.device)
        pos[low] = torch.arange(low.numel(), device=scores.device)
        sel = pos[d_rows] >= 0
        keep[pos[d_rows[sel]], d_cols[sel]] = False
    key = sub.to(torch.float64)
    key.masked_fill_(keep & torch.isneginf(key), -1e300)
    _, sub_idx = torch.topk(key, k, dim=1, largest=True, sorted=True)
    sub_vals = torch.gather(sub, 1, sub_idx)
    dropped = ~torch.gather(keep, 1, sub_idx)
    idx[low] = sub_idx.masked_fill(dropped, -1)
    vals[low] = sub_vals.masked_fill(dropped, float("-inf"))
    return vals, idx

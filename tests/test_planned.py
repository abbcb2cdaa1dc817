"""Planned batch shapes: the buffer and plan logic of the compiled and CUDA-graph backends.

The capture is injected, so on CPU a stand-in "graph" recomputes its static output from
its static inputs when replayed: what a real CUDA graph does. The real capture is
checked by the ``gpu`` tests at the end.
"""

from __future__ import annotations

import pytest
import torch

from lpstudio.backends.planned import CapturedBatch, GraphSet, ShapeEvents, ShapePlan, padded_inputs

FEATURE = (2, 3, 4, 4)  # a small stand-in for (32,16,64,64)
KP = (21, 3)


def toy_render(feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """A row-wise function of all three inputs: (B,) -> (B,3,8,8); every row depends only on its own inputs."""
    value = feature.flatten(1).mean(1) + 10 * x_s.flatten(1).sum(1) + 100 * x_d.flatten(1).sum(1)
    return value[:, None, None, None].expand(-1, 3, 8, 8).clone()


def stand_in_capture(replays: list[int]):
    def capture(size: int) -> CapturedBatch:
        f = torch.zeros(size, *FEATURE)
        s = torch.zeros(size, *KP)
        d = torch.zeros(size, *KP)
        out = toy_render(f, s, d)

        def replay() -> None:
            replays.append(size)
            out.copy_(toy_render(f, s, d))

        return CapturedBatch(f, s, d, out, replay)

    return capture


def mixed_batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *FEATURE, generator=g), torch.randn(n, *KP, generator=g), torch.randn(n, *KP, generator=g)


@pytest.mark.parametrize(
    "max_batch,sizes", [(1, (1,)), (2, (1, 2)), (3, (1, 2, 3)), (4, (1, 2, 4)), (6, (1, 2, 4, 6)), (8, (1, 2, 4, 8))]
)
def test_plan_for_a_worker_batch_size(max_batch: int, sizes: tuple[int, ...]) -> None:
    assert ShapePlan.for_batch_size(max_batch).sizes == sizes


def test_plan_maps_every_batch_onto_a_planned_size() -> None:
    plan = ShapePlan.for_batch_size(4)
    assert [plan.size_for(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    assert plan.chunks(3) == [(0, 3, 4)]
    assert plan.chunks(9) == [(0, 4, 4), (4, 8, 4), (8, 9, 1)]
    with pytest.raises(ValueError, match="split it first"):
        plan.size_for(5)
    with pytest.raises(ValueError, match="ascending"):
        ShapePlan((4, 2))
    with pytest.raises(ValueError, match=">= 1"):
        ShapePlan.for_batch_size(0)
    assert plan.with_size(8).sizes == (1, 2, 4, 8) and plan.with_size(3).sizes == (1, 2, 3, 4)


def test_padded_inputs_keep_real_rows_and_are_contiguous() -> None:
    f, s, d = mixed_batch(3)
    pf, ps, pd = padded_inputs(f, s, d, 4)
    assert pf.shape[0] == ps.shape[0] == pd.shape[0] == 4
    assert all(t.is_contiguous() for t in (pf, ps, pd))
    torch.testing.assert_close(pf[:3], f)
    torch.testing.assert_close(pd[3], d[0])  # padding repeats row 0
    one = f[:1].expand(3, *FEATURE)  # one source expanded, as render_batch passes it
    assert padded_inputs(one, s, d, 3)[0].stride(0) != 0


def test_graphs_serve_mixed_batches_of_every_size_through_static_buffers() -> None:
    replays: list[int] = []
    graphs = GraphSet(ShapePlan.for_batch_size(4), stand_in_capture(replays))
    graphs.prepare()
    assert sorted(graphs.graphs) == [1, 2, 4] and graphs.events.count == 3
    for n, seed in ((3, 1), (1, 2), (4, 3), (2, 4), (6, 5), (3, 6)):
        f, s, d = mixed_batch(n, seed)
        torch.testing.assert_close(graphs.run(f, s, d), toy_render(f, s, d))
    assert graphs.events.count == 3  # nothing captured after prepare()
    assert replays[-1] == 4 and 4 in replays  # batch 3 ran padded in the graph of 4


def test_a_short_batch_is_unaffected_by_stale_rows_and_the_output_is_a_copy() -> None:
    graphs = GraphSet(ShapePlan((4,)), stand_in_capture([]))
    graphs.run(*mixed_batch(4, seed=7))  # leaves other values in rows 1..3
    f, s, d = mixed_batch(1, seed=8)
    out = graphs.run(f, s, d)
    torch.testing.assert_close(out, toy_render(f, s, d))
    graphs.graphs[4].output.fill_(-1.0)  # the next replay overwrites the static output...
    torch.testing.assert_close(out, toy_render(f, s, d))  # ...but what the caller got is its own


def test_graphs_capture_lazily_and_tell_hooks() -> None:
    seen: list[tuple[str, int]] = []
    events = ShapeEvents(hooks=[lambda kind, batch: seen.append((kind, batch))])
    graphs = GraphSet(ShapePlan.for_batch_size(4), stand_in_capture([]), events)
    graphs.run(*mixed_batch(2))
    graphs.run(*mixed_batch(2, seed=1))
    assert seen == [("capture", 2)]
    with pytest.raises(ValueError, match="does not fit"):
        graphs.graphs[2].run(*mixed_batch(3))


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cudagraph_replays_mixed_sources_like_the_fused_modules(dtype: torch.dtype) -> None:
    """Three frames from three sources (the server's path) replay a captured graph of 4: no fallback."""
    from lpstudio.backends import build_backend
    from lpstudio.bench import psnr_db
    from lpstudio.nets import Networks
    from lpstudio.synthetic import synthetic_checkpoints

    dev = torch.device("cuda")
    nets = Networks()
    nets.load_official(synthetic_checkpoints())
    nets = nets.eval().requires_grad_(False).to(dev)
    torch.manual_seed(0)
    f = torch.randn(3, 32, 16, 64, 64, device=dev) * 0.5
    xs = torch.randn(3, 21, 3, device=dev) * 0.3
    xd = xs + torch.randn(3, 21, 3, device=dev) * 0.03
    ref = build_backend("eager", nets, dev, torch.float32).warp_decode(f, xs, xd)
    graph = build_backend("cudagraph", nets, dev, dtype)
    for size in graph.plan.sizes:
        graph.prepare(size, f.repeat(2, 1, 1, 1, 1), xs.repeat(2, 1, 1), xd.repeat(2, 1, 1))
    captured = graph.events.count
    out = graph.warp_decode(f, xs, xd)
    again = graph.warp_decode(f, xs, xd)
    assert graph.events.count == captured == len(graph.plan.sizes)
    torch.testing.assert_close(out, again)
    assert psnr_db(out, ref) >= 40.0
    single = graph.warp_decode(f[1:2], xs[1:2], xd[1:2])  # the first-frame batch of one
    assert psnr_db(single, ref[1:2]) >= 40.0
    assert graph.events.count == captured

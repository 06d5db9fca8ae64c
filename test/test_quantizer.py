"""VectorQuantizer: straight-through gradient, losses, EMA updates, dead-code restart,
perplexity, distributed EMA statistics and ONNX export of the eval graph."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fusionsam_model.modeling.quantizer import VectorQuantizer


def _latents(rows: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """(B*h*w, D) rows -> (B, D, h, w) latents, row order = (b, y, x)."""
    return rows.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()


def _rows(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def _set_state(q: VectorQuantizer, codebook: torch.Tensor, cluster_size: float) -> None:
    """Put an EMA quantizer in a known, already-initialised state."""
    q.codebook.copy_(codebook)
    q.ema_cluster_size.fill_(cluster_size)
    q.ema_embed_sum.copy_(codebook * cluster_size)
    q.initialized.fill_(True)


@pytest.mark.parametrize("ema", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_straight_through_gradient_is_identity(ema: bool, training: bool) -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(16, 4, ema=ema).train(training)
    q(torch.randn(2, 4, 3, 5))  # a first step seeds the EMA codebook in training mode
    codebook = q.codebook.detach().clone()  # the lookup uses the codebook before the update
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = q(z)
    upstream = torch.randn_like(z)
    out.z_q.backward(upstream)
    assert torch.equal(z.grad, upstream)
    # The forward values are codebook rows, not the encoder outputs.
    assert not torch.allclose(out.z_q, z)
    assert torch.allclose(_rows(out.z_q.detach()), codebook[out.indices.flatten()], atol=1e-6)
    assert out.indices.shape == (2, 3, 5) and out.indices.dtype == torch.int64


@pytest.mark.parametrize("ema", [True, False])
def test_commitment_loss_matches_hand_computation(ema: bool) -> None:
    torch.manual_seed(1)
    beta = 0.3
    q = VectorQuantizer(10, 3, beta=beta, ema=ema).eval()
    with torch.no_grad():
        q.codebook.copy_(torch.randn(10, 3))
    z = torch.randn(2, 3, 4, 4)
    out = q(z)
    rows = _rows(z)
    nearest = torch.cdist(rows, q.codebook.detach()).argmin(1)
    assert torch.equal(out.indices.flatten(), nearest)
    mse = ((rows - q.codebook.detach()[nearest]) ** 2).mean()
    expected = beta * mse if ema else (1.0 + beta) * mse  # commitment (+ codebook term)
    assert torch.allclose(out.loss, expected, rtol=1e-5)


def test_codebook_term_trains_codebook_only_without_ema() -> None:
    q = VectorQuantizer(8, 3, ema=False).train()
    z = torch.randn(1, 3, 4, 4, requires_grad=True)
    q(z).loss.backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    assert "codebook" not in dict(VectorQuantizer(8, 3, ema=True).named_parameters())


def test_ema_moves_codes_toward_assigned_outputs_in_training_only() -> None:
    torch.manual_seed(2)
    codebook = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    q = VectorQuantizer(3, 2, decay=0.9, dead_code_threshold=0.0)
    _set_state(q, codebook, cluster_size=10.0)
    # Every vector sits near (1, 0) or (6, 5): codes 0 and 1 should drift right.
    centres = torch.tensor([[1.0, 0.0], [6.0, 5.0]]).repeat(8, 1)
    z = _latents(centres + 0.01 * torch.randn(16, 2), 1, 4, 4)

    q.eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(z)
    for key, value in q.state_dict().items():
        assert torch.equal(value, before[key]), f"eval mode changed {key}"

    q.train()
    q(z)
    moved = q.codebook
    assert torch.linalg.norm(moved[0] - torch.tensor([1.0, 0.0])) < 1.0  # was 1.0 away
    assert torch.linalg.norm(moved[1] - torch.tensor([6.0, 5.0])) < 1.0
    assert moved[0, 0] > 0.05 and moved[1, 0] > 5.05
    assert torch.allclose(moved[2], codebook[2], atol=1e-3)  # unused code stays put
    assert torch.allclose(q.ema_cluster_size, torch.tensor([0.9 * 10 + 0.1 * 8] * 2 + [9.0]))


def test_dead_codes_are_reseeded_from_current_encoder_outputs() -> None:
    torch.manual_seed(3)
    num_codes = 8
    codebook = 10.0 * torch.randn(num_codes, 4)  # well separated codes
    q = VectorQuantizer(num_codes, 4, decay=0.5, dead_code_threshold=1.0)
    _set_state(q, codebook, cluster_size=1.5)
    rows = codebook[0] + 0.05 * torch.randn(64, 4)  # everything collapses onto code 0
    z = _latents(rows, 4, 4, 4)

    q.train()
    first = q(z)
    assert torch.all(first.indices == 0)
    assert first.perplexity.item() == pytest.approx(1.0)
    # Codes 1..7 fell to 0.5 * 1.5 < 1.0 uses per batch: each now sits on an input vector.
    for code in q.codebook[1:]:
        assert (rows - code).norm(dim=1).min() < 1e-5
    assert torch.all(q.ema_cluster_size[1:] >= q.dead_code_threshold)
    assert torch.cdist(q.codebook[:1], rows.mean(0, keepdim=True)).item() < 1.0

    q.eval()
    assert q(z).perplexity.item() > 2.0  # the restarted codes now share the data


def test_first_training_step_seeds_codebook_from_encoder_outputs() -> None:
    torch.manual_seed(4)
    q = VectorQuantizer(16, 3).train()
    rows = torch.rand(128, 3) + torch.tensor([10.0, -20.0, 30.0])  # far from the init
    q(_latents(rows, 2, 8, 8))
    low, high = rows.min(0).values, rows.max(0).values
    assert bool(q.initialized)
    assert torch.all(q.codebook >= low - 1e-5) and torch.all(q.codebook <= high + 1e-5)


def test_perplexity_counts_code_usage() -> None:
    num_codes = 8
    q = VectorQuantizer(num_codes, 5).eval()
    codebook = torch.randn(num_codes, 5)
    q.codebook.copy_(codebook)
    uniform = _latents(codebook.repeat(4, 1), 2, 4, 4)  # every code used 4 times
    assert q(uniform).perplexity.item() == pytest.approx(num_codes, rel=1e-5)
    one_code = _latents(codebook[3].repeat(32, 1), 2, 4, 4)
    assert q(one_code).perplexity.item() == pytest.approx(1.0, rel=1e-5)
    two_codes = _latents(codebook[[1, 2]].repeat(16, 1), 2, 4, 4)
    assert q(two_codes).perplexity.item() == pytest.approx(2.0, rel=1e-5)


def test_bad_latent_shape_names_the_expected_layout() -> None:
    with pytest.raises(ValueError, match=r"\(B, 4, h, w\)"):
        VectorQuantizer(8, 4)(torch.randn(2, 3, 4, 4))


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different data and different restart draws per rank
        q = VectorQuantizer(32, 4, decay=0.8).train()
        for _ in range(4):
            q(torch.randn(2, 4, 4, 4) + rank)
        torch.save({k: v.clone() for k, v in q.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ema_statistics_and_restarts_agree_across_ranks(tmp_path) -> None:
    world = 2
    mp.spawn(_ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), f"{key} differs between ranks"
    assert (states[0]["ema_cluster_size"] > 0).sum() > 1


def test_eval_graph_exports_to_onnx_and_matches(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(5)
    q = VectorQuantizer(16, 4).eval()
    q.codebook.copy_(torch.randn(16, 4))

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = q

        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.q(z)
            return out.z_q, out.indices

    z = torch.randn(2, 4, 8, 8)
    path = tmp_path / "quantizer.onnx"
    torch.onnx.export(Wrapper().eval(), (z,), str(path), dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z_q, indices = session.run(None, {session.get_inputs()[0].name: z.numpy()})
    expected = q(z)
    assert (indices == expected.indices.numpy()).all()
    assert abs(z_q - expected.z_q.numpy()).max() < 1e-5

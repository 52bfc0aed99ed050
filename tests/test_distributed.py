"""lossfn.distributed.mean: the full-batch weighted mean under DDP and gradient accumulation.

Two processes with gloo on localhost, each with half of a batch, train the same
step as one process on the whole batch; the gradients agree to 1e-6. The
expected gradient is ``torch.nn.functional.cross_entropy``'s (an independent
reference) on the full batch in one process.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F

import lossfn
import lossfn.functional as LF

CLASSES, FEATURES = 5, 4
WEIGHTS = [0.2, 1.0, 3.0, 0.5, 2.0]


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, FEATURES, generator=g)
    # an uneven split of the heavy class makes the ranks' Σw differ
    y = torch.tensor([2, 2, 2, 2, 2, 0, 1, 3, 4, 0, 1, 0])
    return x, y


def _tokens(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (4, 6), generator=g)
    y[0, 1:] = -100  # rank 0 gets a mostly padded sequence: fewer tokens than rank 1
    y[1, 3:] = -100
    return x, y


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, CLASSES)


def _reference_gradients():
    """One process, the full batch, torch's own weighted mean and its padded-token mean."""
    model = _model()
    x, y = _batch()
    F.cross_entropy(model(x), y, weight=torch.tensor(WEIGHTS)).backward()
    weighted = [p.grad.clone() for p in model.parameters()]
    model = _model()
    x, y = _tokens()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100).backward()
    tokens = [p.grad.clone() for p in model.parameters()]
    return weighted, tokens


def _worker(rank: int, world: int, port: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out = {}
        for kind in ("weighted", "tokens", "naive"):
            model = _model()
            if kind == "tokens":
                x, y = _tokens()
                half = slice(rank * 2, rank * 2 + 2)
                loss = lossfn.distributed.mean(
                    LF.sequence_softmax_cross_entropy, model(x[half]), y[half], padding_index=-100
                )
            else:
                x, y = _batch()
                half = slice(rank * 6, rank * 6 + 6)
                if kind == "weighted":
                    loss = lossfn.distributed.mean("softmax_cross_entropy", model(x[half]), y[half], class_weights=WEIGHTS)
                else:  # each rank's own mean, what DDP does with any loss's "mean"
                    loss = LF.softmax_cross_entropy(model(x[half]), y[half], class_weights=WEIGHTS)
            loss.backward()
            grads = []
            for p in model.parameters():  # what DDP does: all-reduce, divide by the world size
                dist.all_reduce(p.grad)
                grads.append(p.grad / world)
            out[kind] = [g.tolist() for g in grads]
        # plain lists, not tensors: a tensor crosses the queue as a shared-memory handle that the
        # parent opens through this process's resource sharer, which is gone once it exits
        results.put((rank, out))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_two_processes_give_the_full_batch_mean():
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    processes = [context.Process(target=_worker, args=(rank, 2, port, results)) for rank in range(2)]
    for p in processes:
        p.start()
    try:
        got = {rank: {kind: [torch.tensor(g) for g in grads] for kind, grads in out.items()}
               for rank, out in (results.get(timeout=120) for _ in processes)}
    finally:
        for p in processes:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in processes)
    weighted, tokens = _reference_gradients()
    for rank in (0, 1):
        for ours, theirs in zip(got[rank]["weighted"], weighted):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
        for ours, theirs in zip(got[rank]["tokens"], tokens):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # and the per-rank mean really is off (what the helper is for)
    off = max((a - b).abs().max().item() for a, b in zip(got[0]["naive"], weighted))
    assert off > 1e-3


def test_gradient_accumulation_over_micro_batches_gives_the_full_batch_mean():
    x, y = _batch()
    weighted, _ = _reference_gradients()
    model = _model()
    chunks = [slice(0, 5), slice(5, 8), slice(8, 12)]  # uneven micro-batches, uneven Σw
    with torch.no_grad():
        total = sum(
            lossfn.distributed.weight_sum("softmax_cross_entropy", model(x[c]), y[c], class_weights=WEIGHTS)
            for c in chunks
        )
    torch.testing.assert_close(total, torch.tensor(WEIGHTS)[y].sum())  # Σw: the labels' class weights
    for c in chunks:
        lossfn.distributed.mean(
            "softmax_cross_entropy", model(x[c]), y[c], class_weights=WEIGHTS, weight_sum=total
        ).backward()
    for ours, theirs in zip((p.grad for p in model.parameters()), weighted):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_without_a_process_group_it_is_the_loss_s_mean():
    logits, labels = torch.randn(6, CLASSES), torch.tensor([0, 1, 2, 3, 4, -100])
    torch.testing.assert_close(
        lossfn.distributed.mean("softmax_cross_entropy", logits, labels, class_weights=WEIGHTS),
        F.cross_entropy(logits, labels, weight=torch.tensor(WEIGHTS)),
    )


def test_a_mean_that_is_not_a_weighted_mean_is_refused():
    with pytest.raises(ValueError, match=r"^root_mean_squared_error: distributed.mean needs a loss whose mean"):
        lossfn.distributed.mean("root_mean_squared_error", torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="takes no reduction"):
        lossfn.distributed.mean("softmax_cross_entropy", torch.randn(2, 3), torch.tensor([0, 1]), reduction="sum")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_take_the_mean_computed_in_float32(dtype):
    """The losses compute half-precision inputs in float32 and cast the mean back: that is still their mean."""
    logits, labels = torch.randn(6, CLASSES).to(dtype), torch.tensor([0, 1, 2, 3, 4, 2])
    expected = F.cross_entropy(logits.float(), labels, weight=torch.tensor(WEIGHTS))
    got = lossfn.distributed.mean("softmax_cross_entropy", logits, labels, class_weights=WEIGHTS)
    torch.testing.assert_close(got.float(), expected, rtol=1e-2, atol=1e-2)

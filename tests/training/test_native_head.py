"""The CPU LM head gives SFTTrainer what TRL's chunked head gives it, in less time."""

from __future__ import annotations

import copy

import pytest
import torch

from qrewrite.training.common import native_lm_head_on_cpu
from qrewrite.training.models import ModelShape, build_small_model, train_tokenizer


def _fused_model(temperature: float) -> tuple:
    """A tiny model with TRL's fused head, and its tokenizer."""
    from trl.trainer.utils import add_fused_lm_head

    tok = train_tokenizer(["blue running shoes", "black saucepan under 60"] * 20, 300)
    shape = ModelShape(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    model = build_small_model(tok, shape, seed=1)
    add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy", "is_top1"))
    return model, tok


@pytest.mark.parametrize(("mask_prompt", "temperature"), [(False, 1.0), (True, 1.0), (True, 0.7)])
def test_native_head_matches_trl_fused_head(mask_prompt: bool, temperature: float) -> None:
    fused, tok = _fused_model(temperature)
    native = native_lm_head_on_cpu(copy.deepcopy(fused), temperature=temperature)
    ids = torch.randint(0, len(tok), (3, 9), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    if mask_prompt:
        labels[:, :5] = -100  # completion-only loss
    a = fused(input_ids=ids, labels=labels, fused_lm_head=True)
    b = native(input_ids=ids, labels=labels, fused_lm_head=True)
    torch.testing.assert_close(b.loss, a.loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.log_probs, a.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.entropy, a.entropy, rtol=1e-4, atol=1e-4)
    assert torch.equal(b.label_mask, a.label_mask)
    assert torch.equal(b.is_top1.bool(), a.is_top1.bool())
    a.loss.backward()
    b.loss.backward()
    for (name, pa), pb in zip(fused.named_parameters(), native.parameters(), strict=True):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=name)
    # without the flag it is the model's own forward (generation)
    plain = native(input_ids=ids)
    assert plain.logits.shape == (3, 9, len(tok))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_native_head_trains_to_the_bit_as_full_rows(temperature: float) -> None:
    """Normalising only the labelled rows leaves the loss and every gradient what the log-softmax
    over all rows gives, to the bit: the presets' figures stay reproducible."""
    model, tok = _fused_model(temperature)
    reference = copy.deepcopy(model)
    native = native_lm_head_on_cpu(model, temperature=temperature)
    ids = torch.randint(0, len(tok), (4, 11), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, 9:] = -100  # padding after a completion

    # every row normalised, as the head did before
    hidden = reference.base_model(input_ids=ids).last_hidden_state[:, :-1]
    shifted = labels[:, 1:]
    mask = shifted != -100
    logits = reference.get_output_embeddings()(hidden).float() / temperature
    log_softmax = torch.log_softmax(logits, dim=-1)
    safe = shifted.clamp(min=0).unsqueeze(-1)
    log_probs = log_softmax.gather(-1, safe).squeeze(-1).masked_fill(~mask, 0.0)
    entropy = -(log_softmax.exp() * log_softmax).sum(-1).masked_fill(~mask, 0.0)
    is_top1 = (logits.argmax(-1) == shifted) & mask
    loss = -log_probs.sum() / mask.sum()

    out = native(input_ids=ids, labels=labels, fused_lm_head=True)
    assert torch.equal(out.loss, loss)
    assert torch.equal(out.log_probs, log_probs)
    assert torch.equal(out.entropy, entropy.detach())
    assert torch.equal(out.is_top1.bool(), is_top1)
    loss.backward()
    out.loss.backward()
    for (name, a), b in zip(reference.named_parameters(), native.parameters(), strict=True):
        assert torch.equal(b.grad, a.grad), name

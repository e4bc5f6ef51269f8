"""The CPU LM head gives SFTTrainer what TRL's chunked head gives it, in less time."""

from __future__ import annotations

import copy

import pytest
import torch

from qrewrite.training.common import native_lm_head_on_cpu
from qrewrite.training.models import ModelShape, build_small_model, train_tokenizer


@pytest.mark.parametrize(("mask_prompt", "temperature"), [(False, 1.0), (True, 1.0), (True, 0.7)])
def test_native_head_matches_trl_fused_head(mask_prompt: bool, temperature: float) -> None:
    from trl.trainer.utils import add_fused_lm_head

    tok = train_tokenizer(["blue running shoes", "black saucepan under 60"] * 20, 300)
    shape = ModelShape(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    fused = build_small_model(tok, shape, seed=1)
    add_fused_lm_head(fused, temperature=temperature, outputs=("log_probs", "entropy", "is_top1"))
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

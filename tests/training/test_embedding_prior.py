"""The token embeddings' prior: where a sentence encoder puts each token's text, as the small
model's start (pretrain.embedding_init: minilm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qrewrite.training.models import (
    INITIALIZER_RANGE,
    ModelShape,
    build_small_model,
    token_embedding_prior,
    train_tokenizer,
)

TEXTS = [
    "black running shoes",
    "white sneakers",
    "red boots",
    "steel saucepan",
    "cast iron skillet",
]
SHAPE = ModelShape(hidden_size=32, intermediate_size=64, num_hidden_layers=2)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS * 20, 400)


def token_id(tokenizer, word: str) -> int:
    ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{word!r} is {len(ids)} pieces"
    return ids[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_prior_keeps_the_encoders_neighbours(tokenizer) -> None:
    """Two texts the encoder puts together start together; one it puts apart starts apart."""
    shoe, pan = np.zeros(48), np.zeros(48)
    shoe[0], pan[1] = 1.0, 1.0

    def encode(texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(0)
        out = rng.normal(0, 0.05, (len(texts), 48))
        for i, text in enumerate(texts):
            out[i] += shoe if text in ("shoes", "sneakers", "boots") else 0
            out[i] += pan if text in ("saucepan", "skillet") else 0
        return out

    prior = token_embedding_prior(tokenizer, 16, encode)
    shoes, sneakers, skillet = (
        prior[token_id(tokenizer, w)] for w in ("shoes", "sneakers", "skillet")
    )
    assert cosine(shoes, sneakers) > 0.8
    assert cosine(shoes, skillet) < 0.2
    assert prior.shape == (len(tokenizer), 16)
    known = ~np.isnan(prior).any(axis=1)
    assert not known[list(tokenizer.all_special_ids)].any()  # special tokens start at random
    assert np.isclose(prior[known].std(), INITIALIZER_RANGE)  # the random start's spread


def test_columns_past_the_encoders_width_start_at_random(tokenizer) -> None:
    prior = token_embedding_prior(tokenizer, 24, lambda texts: np.eye(len(texts), 8))
    assert not np.isnan(prior[token_id(tokenizer, "boots"), :7]).any()
    assert np.isnan(prior[:, 8:]).all()


def test_the_model_starts_from_the_prior(tokenizer) -> None:
    prior = token_embedding_prior(
        tokenizer, SHAPE.hidden_size, lambda t: np.random.default_rng(1).normal(size=(len(t), 40))
    )
    model = build_small_model(tokenizer, SHAPE, seed=3, embeddings=prior)
    plain = build_small_model(tokenizer, SHAPE, seed=3)
    weights = model.get_input_embeddings().weight.detach().numpy()
    known = ~np.isnan(prior)
    np.testing.assert_allclose(weights[known], prior[known], rtol=1e-6)
    eos = tokenizer.eos_token_id
    assert torch.equal(  # rows without a prior: the seed's random start
        model.get_input_embeddings().weight[eos], plain.get_input_embeddings().weight[eos]
    )
    # tied: the output layer reads the same embeddings
    assert torch.equal(model.get_output_embeddings().weight, model.get_input_embeddings().weight)


@pytest.mark.slow
def test_the_bundled_encoder_puts_shoes_nearer_sneakers_than_a_saucepan(tokenizer) -> None:
    from qrewrite.labeling.encoder import SentenceEncoder

    prior = token_embedding_prior(tokenizer, 32, SentenceEncoder(max_seq_length=16).encode)
    shoes, sneakers, boots, saucepan, skillet = (
        prior[token_id(tokenizer, w)] for w in ("shoes", "sneakers", "boots", "saucepan", "skillet")
    )
    assert cosine(shoes, sneakers) > cosine(shoes, saucepan)
    assert cosine(boots, shoes) > cosine(boots, skillet)
    assert cosine(saucepan, skillet) > cosine(saucepan, sneakers)

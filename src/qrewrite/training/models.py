"""Models without a hub: a tokenizer trained on the shop's text, a small Qwen2 built from a config,
and loading of a base model from a local directory with checks that fail before training does.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError
from qrewrite.training.prompts import CHATML_TEMPLATE, GRADE_WORDS, PROMPT_TOKENS, TAGGING_FORMS

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass
class ModelShape:
    """Size of the small model built from a config (a standard Qwen2 architecture)."""

    vocab_size: int = 4000
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 256


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (catalog titles, queries, rewrites) plus the
    prompt words, with Qwen2's ChatML special tokens and chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the prompt words appear in every example: give them tokens of their own
    fixed = ["user", "assistant", *GRADE_WORDS] * 50
    tok.train_from_iterator([*texts, *fixed], trainer=trainer)
    # each task's instruction and field label is one token: the prompt stays byte-for-byte the
    # same text, and the small model spends its compute on the query instead of about 20 constant
    # tokens per example (half of a rewrite example)
    tok.add_tokens([AddedToken(t, normalized=False) for t in PROMPT_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=1024,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


# Qwen2Config's initializer_range: the spread of a random start, which a prior is scaled to
INITIALIZER_RANGE = 0.02


def token_embedding_prior(tokenizer: Any, hidden_size: int, encode: Any) -> Any:
    """Token embeddings that start where a pretrained sentence encoder puts each token's text.

    Every token of the shop's tokenizer is embedded by ``encode`` (texts -> vectors; the bundled
    MiniLM, uncased), centred, projected on its first ``hidden_size`` principal directions and
    scaled to the random start's spread. A model trained from scratch on one shop's text then
    starts knowing that "shoes" and "sneakers" are near and "shoes" and "saucepan" are not
    (docs/training.md). Special and blank tokens, and the columns past the encoder's width, are
    NaN: they keep the random start.

    >>> import numpy as np
    >>> from qrewrite.training.models import train_tokenizer
    >>> tok = train_tokenizer(["black yoga mat", "blue yoga mat"], 300)
    >>> prior = token_embedding_prior(tok, 8, lambda texts: np.eye(len(texts), 16))
    >>> prior.shape == (len(tok), 8), bool(np.isnan(prior[tok.eos_token_id]).all())
    (True, True)
    """
    import numpy as np

    every_token = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    pieces = [piece.strip().lower() for piece in every_token]
    special = set(tokenizer.all_special_ids)
    rows = [i for i, piece in enumerate(pieces) if piece and i not in special]
    vectors = np.asarray(encode([pieces[i] for i in rows]), dtype=np.float64)
    centred = vectors - vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ directions[:hidden_size].T
    prior = np.full((len(tokenizer), hidden_size), np.nan)
    prior[np.ix_(rows, range(projected.shape[1]))] = projected * (
        INITIALIZER_RANGE / projected.std()
    )
    return prior


def build_small_model(
    tokenizer: Any, shape: ModelShape, seed: int, *, embeddings: Any = None
) -> Any:
    """A Qwen2ForCausalLM sized by ``shape``, initialised at random but for the token
    embeddings that ``embeddings`` (:func:`token_embedding_prior`; NaN: random) gives."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        initializer_range=INITIALIZER_RANGE,
    )
    model = Qwen2ForCausalLM(config)
    if embeddings is not None:
        prior = torch.as_tensor(embeddings, dtype=torch.float32)
        known = ~torch.isnan(prior)
        with torch.no_grad():
            model.get_input_embeddings().weight[known] = prior[known]
    return model


def check_model_dir(path: str | Path, what: str = "base model") -> Path:
    """Fail with one line when ``path`` is not a loadable model directory."""
    path = Path(path)
    hint = "pass a directory written by `qrewrite pretrain`/`sft` or a downloaded model"
    if not path.is_dir():
        raise ConfigError(f"{path}: {what} directory not found; {hint}")
    if not (path / "config.json").exists():
        raise ConfigError(f"{path}: {what} has no config.json; {hint}")
    if not any((path / f).exists() for f in WEIGHT_FILES) and not list(
        path.glob("model-*.safetensors")
    ):
        raise ConfigError(f"{path}: {what} has no weights ({' or '.join(WEIGHT_FILES)}); {hint}")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ConfigError(f"{path}: {what} has no tokenizer (tokenizer.json); {hint}")
    return path


def load_tokenizer(path: str | Path) -> Any:
    """The model's tokenizer, checked for what chat training needs."""
    from transformers import AutoTokenizer

    path = check_model_dir(path, "model")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not tokenizer.chat_template:
        log.warning("%s: tokenizer has no chat template; using ChatML", path)
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Generation must stop at the end of the assistant turn (see docs/training.md).
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], tokenize=False
    )
    if tokenizer.eos_token not in rendered:
        raise ConfigError(
            f"{path}: the chat template never emits the tokenizer's EOS {tokenizer.eos_token!r}; "
            "generation would not stop at the end of an answer"
        )
    tokenizer.padding_side = "left"  # decoder-only generation pads on the left
    return tokenizer


def load_model(
    path: str | Path,
    what: str = "base model",
    dtype: str = "auto",
    *,
    attn_implementation: str | None = None,
) -> Any:
    """The model at ``path``, on the GPU in bf16 where there is one, else on the CPU in fp32.

    On the GPU from the start: the judge and the rewriter generate with it directly (a trainer
    would move it, inference code does not). ``attn_implementation`` (``sdpa``,
    ``flash_attention_2``, ``eager``) picks the attention kernel; None keeps transformers'
    choice for the model (sdpa where torch has it).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = check_model_dir(path, what)
    cuda = torch.cuda.is_available()
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if cuda else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kernel = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **kernel)
    return model.to("cuda") if cuda else model


# the words of the shop's titles, with how many titles write each: build-datasets writes it beside
# the datasets, SFT and GRPO save it with the model, and the rewriter reads it to tell a
# misspelling from the shop's own spelling (Rewriter.is_correction)
CATALOG_WORDS_FILE = "catalog_words.json"

# what a model folder holds (save_model, and copy_catalog_words from SFT on): a step that replaces
# a model folder owns these names (an earlier model's file that this save does not write again is
# removed, not left beside the new one)
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "qrewrite_model.json",
    CATALOG_WORDS_FILE,
)


def write_catalog_words(folder: str | Path, counts: Mapping[str, int]) -> Path:
    """Write ``counts`` (word -> titles writing it) to ``folder``'s :data:`CATALOG_WORDS_FILE`."""
    path = Path(folder) / CATALOG_WORDS_FILE
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    path.write_text(json.dumps({"titles_writing": ordered}) + "\n", encoding="utf-8")
    return path


def copy_catalog_words(source: str | Path, model_dir: str | Path) -> bool:
    """Save the catalog's words found in ``source`` (a datasets folder) with the model in
    ``model_dir``; False where ``source`` has none (a build from before they were written)."""
    path = Path(source) / CATALOG_WORDS_FILE
    if not path.exists():
        return False
    shutil.copyfile(path, Path(model_dir) / CATALOG_WORDS_FILE)
    return True


def load_catalog_words(path: str | Path) -> frozenset[str] | None:
    """The catalog's words saved with the model in ``path`` (None for a model saved without)."""
    file = Path(path) / CATALOG_WORDS_FILE
    if not file.exists():
        return None
    try:
        return frozenset(json.loads(file.read_text(encoding="utf-8"))["titles_writing"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"{file}: not a catalog word list written by qrewrite ({e})") from e


# the model card's key for the form of task B's prompt the model learnt (prompts.TAGGING_FORMS)
TAGGING_FORM_KEY = "tagging_prompt"


def load_tagging_form(path: str | Path) -> str:
    """The form of task B's prompt the model in ``path`` learnt to grade in, from its card
    (``qrewrite_model.json``): a card without it is from before task B asked in task A's
    conversation ("message"); a folder without a card (a base model) gets today's form."""
    file = Path(path) / "qrewrite_model.json"
    if not file.exists():
        return TAGGING_FORMS[0]
    try:
        form = json.loads(file.read_text(encoding="utf-8")).get(TAGGING_FORM_KEY, "message")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"{file}: not a model card written by qrewrite ({e})") from e
    if form not in TAGGING_FORMS:
        raise ConfigError(
            f"{file}: {TAGGING_FORM_KEY}={form!r}, expected one of {', '.join(TAGGING_FORMS)}"
        )
    return form


def save_model(model: Any, tokenizer: Any, out: str | Path, card: dict[str, Any]) -> Path:
    """Save a merged model ready to serve (weights, tokenizer, and what made it: ``card``, with
    the form of task B's prompt, today's unless ``card`` names the one the model learnt)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # a PEFT model: fold LoRA into the base weights
        model = model.merge_and_unload()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    card = {TAGGING_FORM_KEY: TAGGING_FORMS[0], **card}
    (out / "qrewrite_model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out

"""Sentence embeddings for automatic sections, from a model that ships inside a PyPI package.

The optional `[embeddings]` extra installs WordLlama (MIT), whose wheel carries a static
token-embedding table (32,000 Llama 2 tokens x 256 dimensions, 16 MB) and its tokenizer. A text's
vector is the mean of its tokens' vectors, L2-normalised: WordLlama's own pooling.

We read the two files ourselves instead of calling `WordLlama.load()`: in wordllama 0.4 that
looks for the bundled tokenizer in the wrong folder and then fetches it from the Hugging Face hub,
and importing `wordllama` reconfigures the root logger. Nothing here touches the network.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digest.errors import ConfigError

if TYPE_CHECKING:  # only the extra provides it
    from tokenizers import Tokenizer

INSTALL_HINT = "pip install 'digest[embeddings]'"
MODEL_PACKAGE = "wordllama"
# Paths inside the installed package (wordllama 0.4.x; pyproject caps the version for this).
WEIGHTS_FILE = Path("weights") / "l2_supercat_256.safetensors"
TOKENIZER_FILE = Path("tokenizers") / "l2_supercat_tokenizer_config.json"
TENSOR_NAME = "embedding.weight"
# Everything the extra brings that this module imports.
_REQUIRED_MODULES = (MODEL_PACKAGE, "tokenizers", "safetensors")


class EmbeddingsUnavailable(ConfigError):
    """Embedding-based grouping was asked for, but the model cannot be loaded."""


@dataclass(frozen=True, slots=True, eq=False)
class StaticEmbedder:
    """Texts to unit vectors: the mean of the static vectors of their tokens.

    Each row depends only on its own text (no padding, no batch effects), so the result is
    deterministic and independent of the other texts in the call. A text with no tokens (the
    empty string) gets a zero row.
    """

    table: np.ndarray
    tokenizer: Tokenizer

    @property
    def dimensions(self) -> int:
        return int(self.table.shape[1])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                vectors[row] = self.table[encoding.ids].mean(axis=0, dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=vectors, where=norms > 0)


def embedder_from_files(weights: Path, tokenizer: Path) -> StaticEmbedder:
    """A StaticEmbedder from a safetensors table and a `tokenizers` JSON file, both local."""
    for path in (weights, tokenizer):
        if not path.is_file():
            raise EmbeddingsUnavailable(f"embedding model file not found: {path}")
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tensors = load_file(str(weights))
    if TENSOR_NAME not in tensors or tensors[TENSOR_NAME].ndim != 2:
        raise EmbeddingsUnavailable(f"{weights}: no 2-D tensor named {TENSOR_NAME!r}")
    # Stored as float16 to halve the wheel; float32 keeps the means exact enough and BLAS fast.
    table = np.ascontiguousarray(tensors[TENSOR_NAME], dtype=np.float32)
    table.setflags(write=False)
    loaded = Tokenizer.from_file(str(tokenizer))
    loaded.no_padding()
    loaded.no_truncation()
    if loaded.get_vocab_size() > table.shape[0]:
        raise EmbeddingsUnavailable(
            f"{tokenizer}: {loaded.get_vocab_size()} tokens but {table.shape[0]} vectors"
        )
    return StaticEmbedder(table=table, tokenizer=loaded)


def _package_dir(name: str) -> Path | None:
    # find_spec locates a top-level package without importing it (no import-time side effects).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def extra_installed() -> bool:
    """True when every package of the `[embeddings]` extra can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


@lru_cache(maxsize=1)
def load_embedder() -> StaticEmbedder | None:
    """The bundled model, or None when the `[embeddings]` extra is not installed.

    Loaded once per process (about 0.2 s). Raises EmbeddingsUnavailable when the extra is
    installed but its model files are missing or malformed (another wordllama layout).
    """
    if not extra_installed():
        return None
    root = _package_dir(MODEL_PACKAGE)
    if root is None:
        return None
    return embedder_from_files(root / WEIGHTS_FILE, root / TOKENIZER_FILE)


def require_embedder() -> StaticEmbedder:
    """The bundled model; EmbeddingsUnavailable (with the install command) when it is absent."""
    embedder = load_embedder()
    if embedder is None:
        raise EmbeddingsUnavailable(
            "grouping by embeddings needs the optional [embeddings] extra, which is not "
            f"installed: {INSTALL_HINT}"
        )
    return embedder

"""The default offline embedder: ONNX Runtime, same vectors as the PyTorch path, no torch inside.

The model is exported once per test session into the session's AML_DATA_DIR (the conftest's
temp dir) on first use, as a worker would; the lock test exports into a directory of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tasks.providers import (
    MiniLMEmbedder,
    TorchMiniLMEmbedder,
    get_embedder,
    onnx_model_dir,
)

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = [
    "Central bank raises interest rates by a quarter point",
    "The city council approved the new budget on Tuesday.",
    "Storm leaves thousands without power across the region",
    "Scientists report a new species of frog in the Andes.",
    "Quarterly earnings beat expectations; shares rose 4% in early trading.",
    "Le gouvernement a annoncé une réforme des retraites.",
    "Die Regierung kündigte am Montag neue Klimaziele an.",
    "El equipo ganó el campeonato después de veinte años.",
    "東京で国際会議が開かれ、気候変動について議論された。",
    "Новый закон вступит в силу в следующем году.",
    "   leading and trailing spaces   ",
    "a",
    "",
    "BREAKING!!! 🚀🚀 markets $$$ up 1000%?!",
    "https://example.com/news/2026/11/28/article-title?ref=rss",
]


def _texts() -> list[str]:
    rng = np.random.default_rng(7)
    words = " ".join(SENTENCES).split()
    texts = list(SENTENCES)
    for n in (20, 60, 120, 200, 300, 600):  # up to well past 256 tokens (truncated)
        for _ in range(6):
            texts.append(" ".join(rng.choice(words, size=n)))
    return texts  # 51 texts


@pytest.fixture(scope="module")
def onnx_embedder() -> MiniLMEmbedder:
    """The configured embedder, exported into the session's AML_DATA_DIR on first use."""
    emb = get_embedder()
    assert isinstance(emb, MiniLMEmbedder)
    emb.embed_batch(["warm up"])
    return emb


def test_onnx_vectors_match_the_pytorch_path(onnx_embedder) -> None:
    texts = _texts()
    ours = onnx_embedder.embed_batch(texts)
    theirs = TorchMiniLMEmbedder().embed_batch(texts)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.mean() >= 0.999, cosine
    assert cosine.min() >= 0.99, cosine
    assert onnx_embedder.name == "all-MiniLM-L6-v2"


def test_rows_come_back_in_input_order_whatever_the_batching(onnx_embedder) -> None:
    texts = _texts()
    whole = onnx_embedder.embed_batch(texts)
    shuffled = list(reversed(texts))
    again = onnx_embedder.embed_batch(shuffled)[::-1]
    one_by_one = np.vstack([onnx_embedder.embed_batch([t]) for t in texts[:12]])
    np.testing.assert_allclose(whole, again, atol=1e-5)
    np.testing.assert_allclose(whole[:12], one_by_one, atol=1e-5)
    # identical texts get identical rows (embedded each time, no de-duplication inside)
    twice = onnx_embedder.embed_batch([texts[3], texts[40], texts[3]])
    np.testing.assert_allclose(twice[0], twice[2], atol=1e-6)


def test_empty_list_gives_an_empty_matrix(onnx_embedder) -> None:
    out = onnx_embedder.embed_batch([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_the_export_lives_under_aml_data_dir_with_a_manifest(onnx_embedder) -> None:
    model_dir = onnx_model_dir()
    assert model_dir.is_relative_to(Path(os.environ["AML_DATA_DIR"]).resolve())
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["max_seq_length"] == 256
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True
    assert (model_dir / "model.onnx").is_file() and (model_dir / "tokenizer.json").is_file()


def test_a_process_that_embeds_never_imports_torch(onnx_embedder) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from tasks.providers import get_embedder
        from tasks.summarize import extractive_summary
        vectors = get_embedder().embed_batch(["one text", "another, longer text " * 50])
        extractive_summary("Title", "First sentence here. Second one follows. Third ends it.",
                           get_embedder())
        heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers")
                       if m in sys.modules)
        print(json.dumps({"shape": list(vectors.shape), "heavy": heavy}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"shape": [2, 384], "heavy": []}


def test_two_processes_starting_together_export_once(tmp_path) -> None:
    code = textwrap.dedent(
        """
        import os
        from tasks.providers import ensure_onnx_model
        model_dir = ensure_onnx_model()
        print(os.stat(model_dir / "model.onnx").st_ino)
        """
    )
    env = {**os.environ, "AML_DATA_DIR": str(tmp_path / "data")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    model = tmp_path / "data" / "models" / "all-MiniLM-L6-v2-onnx" / "model.onnx"
    final = os.stat(model).st_ino
    # a second export would have replaced the directory: the first process's file would be gone
    assert [int(out.strip()) for out, _ in outs] == [final, final]
    leftovers = [p.name for p in model.parent.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []

"""Prompt encoding (padding zeroed, masking exact), embedding files, null embeddings."""

import pytest
import torch

from mirage.models.text import (
    LearnedNullEmbedding,
    encode_prompts,
    load_prompt_embeddings,
    null_embedding,
    save_prompt_embeddings,
)


def test_encode_prompts_zeroes_padding_and_masks_it(tiny_umt5, tiny_tokenizer):
    prompts = ["a red house", "blue  car on the &amp; road"]
    emb = encode_prompts(tiny_umt5, tiny_tokenizer, prompts, max_length=10)
    assert emb.shape == (2, 10, 32)
    # reference: each prompt alone, unpadded (tokens + </s>), no mask needed
    lengths = []
    for i, p in enumerate(["a red house", "blue car on the & road"]):
        ids = tiny_tokenizer(p, return_tensors="pt").input_ids
        n = ids.shape[1]
        lengths.append(n)
        with torch.no_grad():
            alone = tiny_umt5(ids).last_hidden_state[0]
        torch.testing.assert_close(emb[i, :n], alone, atol=1e-5, rtol=1e-5)
        assert torch.count_nonzero(emb[i, n:]) == 0
    assert lengths == [4, 7]  # whitespace collapsed and &amp; unescaped


def test_encode_prompts_truncates_and_checks(tiny_umt5, tiny_tokenizer):
    emb = encode_prompts(tiny_umt5, tiny_tokenizer, "a red house by the sea", max_length=3)
    assert emb.shape == (1, 3, 32) and torch.count_nonzero(emb[0, -1]) > 0
    with pytest.raises(ValueError, match="prompts"):
        encode_prompts(tiny_umt5, tiny_tokenizer, [], max_length=3)


def test_null_embeddings():
    z = null_embedding(64, 7, batch_size=2)
    assert z.shape == (2, 7, 64) and torch.count_nonzero(z) == 0
    with pytest.raises(ValueError, match="length"):
        null_embedding(64, 0)
    learned = LearnedNullEmbedding(64, 7)
    assert torch.equal(learned(2), z)
    learned(3).sum().backward()
    assert torch.equal(learned.embedding.grad, torch.full((7, 64), 3.0))


def test_prompt_embedding_file_roundtrip(tmp_path, gen):
    emb = torch.randn(2, 5, 8, generator=gen)
    path = tmp_path / "prompts.safetensors"
    save_prompt_embeddings(path, ["first", "second prompt"], emb)
    back = load_prompt_embeddings(path)
    assert list(back) == ["first", "second prompt"]
    assert torch.equal(back["second prompt"], emb[1])
    with pytest.raises(ValueError, match="N=len"):
        save_prompt_embeddings(path, ["only one"], emb)
    with pytest.raises(FileNotFoundError):
        load_prompt_embeddings(tmp_path / "none.safetensors")

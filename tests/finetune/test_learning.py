"""Fine-tuning learns, not just runs: a tiny model trained from scratch for about a minute on the CPU finds a
sentence planted at a random place in a long document, which the untrained model cannot.

The task: a document is filler (one word repeated, which keeps the run to a minute: with varied filler a model
this small needs several times as many steps) with one of four fixed 16-word sentences planted at a random
position, and its summary is that sentence. Nothing else in the document says which sentence it holds, and the position is
uniform over up to 2,000 tokens, far beyond the encoder's local window (3 blocks of 32 tokens): the model
has to reach anywhere in the document (through block-sparse attention's global and random blocks and the
decoder's cross-attention). The score is how often the model, given the document, puts the right sentence's
first word first (teacher forcing): a model blind to the document cannot beat 1 / number of sentences.
"""

from __future__ import annotations

import random

import pytest
import torch

from bigbird_pegasus import BigBirdPegasusForConditionalGeneration, PegasusTokenizer
from bigbird_pegasus.finetune import train
from bigbird_pegasus.finetune.data import BatchEncoder, Example
from helpers.finetune import run_options, tiny_model, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCES = [[f"s{j}x{i}" for i in range(16)] for j in range(4)]  # fixed sentences of distinct words
FILLER = ["the"]
MODEL = dict(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4, decoder_attention_heads=4,
             encoder_ffn_dim=128, decoder_ffn_dim=128, block_size=32, num_random_blocks=2,
             max_position_embeddings=2048, dropout=0.0)
TRAINING = dict(max_steps=300, batch_size=4, lr=1e-2, warmup_steps=10, max_source_length=2048, max_target_length=20)
TRAIN_LENGTHS = (300, 2000)  # document lengths in words, uniform
TEST_LENGTH = 2000


def planted_examples(count: int, lengths: tuple[int, int], seed: int) -> list[dict]:
    rng = random.Random(seed)
    examples = []
    for _ in range(count):
        sentence = rng.choice(SENTENCES)
        words = rng.choices(FILLER, k=rng.randint(*lengths) - len(sentence))
        at = rng.randint(0, len(words))
        examples.append({"document": " ".join(words[:at] + sentence + words[at:]), "summary": " ".join(sentence)})
    return examples


def first_word_accuracy(folder, examples: list[dict]) -> float:
    """How often the model's most likely first summary word is the planted sentence's first word."""
    model = BigBirdPegasusForConditionalGeneration.from_pretrained(folder).eval()
    encode = BatchEncoder(PegasusTokenizer.from_pretrained(folder), 2048, 20)
    right = 0
    with torch.no_grad():
        for start in range(0, len(examples), 8):
            batch = encode([Example(e["document"], e["summary"]) for e in examples[start:start + 8]])
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).logits
            right += int((logits[:, 0].argmax(-1) == batch.labels[:, 0]).sum())
    return right / len(examples)


def test_a_tiny_model_learns_to_find_the_planted_sentence(tmp_path):
    words = FILLER + [word for sentence in SENTENCES for word in sentence]
    model = tiny_model(tmp_path / "model", words=words, **MODEL)
    data = write_jsonl(tmp_path / "train.jsonl",
                       planted_examples(TRAINING["max_steps"] * TRAINING["batch_size"], TRAIN_LENGTHS, seed=0))
    held_out = planted_examples(64, (TEST_LENGTH, TEST_LENGTH), seed=1)

    before = first_word_accuracy(model, held_out)
    result = train(run_options(model, data, tmp_path / "out", **TRAINING))
    after = first_word_accuracy(result.final_model, held_out)

    blind = 1 / len(SENTENCES)
    assert before <= blind
    # measured here over training seeds: after 200 steps 15 of 20 runs scored 1.00 and the rest ~0.70 (three of the
    # four sentences learned: a plateau that float rounding alone decides); after 300 steps all 5 of those tried
    # scored 1.00
    assert after >= 0.9 and after >= 3 * blind, \
        f"held-out accuracy {after:.2f} (untrained {before:.2f}, blind to the document {blind})"

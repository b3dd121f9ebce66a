"""The embedded model's tokenizer: character level, lossless on any text, carrying the Falcon-H1R chat template.

Built with `tokenizers`: a merge-free BPE over printable ASCII (one token per character) with byte fallback
(`<0x00>`..`<0xFF>`), so any Unicode text round-trips exactly. On top of that:
- special tokens `<|im_start|>`, `<|im_end|>` (end of turn = eos) and `<|pad|>`;
- ordinary added tokens `<think>`, `</think>` and `\\boxed{` (not special: decoding with
  `skip_special_tokens=True` keeps them, so answers stay extractable);
- a few whole-word tokens (role names and the words of the short default system prompt), only to keep the
  fixed prompt prefix cheap for a tiny model.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

CHAT_TEMPLATE_PATH = Path(__file__).resolve().parent / "chat_template.jinja"

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
THINK, END_THINK, BOXED = "<think>", "</think>", "\\boxed{"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)
REASONING_TOKENS = (THINK, END_THINK, BOXED)
WORD_TOKENS = ("system", "user", "assistant", "You", "are", "Falcon", "Reason", "inside", "then", "answer")
CHARACTERS = tuple(chr(i) for i in range(32, 127)) + ("\n", "\t")


def chat_template() -> str:
    return CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh tokenizer; ids are deterministic (specials first, then characters, bytes, added tokens)."""
    vocab: dict[str, int] = {}
    for tok in (*SPECIAL_TOKENS, *CHARACTERS, *(f"<0x{b:02X}>" for b in range(256))):
        vocab[tok] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, fuse_unk=False))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False, single_word=True) for t in WORD_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = chat_template()
    return fast

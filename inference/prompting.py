"""Prompt in, trace text out: what every generation path shares around the model.

    chat_prompt(tokenizer, user, system=None)       the chat-formatted prompt text (generation prompt added)
    chat_prompt_ids(tokenizer, question, system)    its token ids
    generation_config_of(model)                     a checkpoint's generation config, or None
    eos_token_ids(tokenizer, generation_config)     the end-of-sequence set: generation config + tokenizer + <|im_end|>
    decode_trace(tokenizer, token_ids, eos_ids)     a trace's text, its final end-of-sequence token dropped

Both DeepConf backends (transformers and vLLM) and `falcon-h1r generate` use these, so a prompt is formatted
and a trace ends and decodes the same way whichever engine samples it.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import GenerationConfig, PreTrainedTokenizerBase

IM_END = "<|im_end|>"  # ChatML's end of turn


def chat_prompt(tokenizer: PreTrainedTokenizerBase, user: str, system: str | None = None) -> str:
    """The prompt text for one user turn, ending with the generation prompt. `system=None` keeps the
    template's default system prompt; an empty string drops it."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; pass --no-chat-template to send the raw prompt.")
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str, system: str | None = None) -> list[int]:
    """Token ids of the chat-formatted prompt (the tokenizer's chat template, generation prompt added)."""
    return tokenizer(chat_prompt(tokenizer, question, system), add_special_tokens=False)["input_ids"]


def generation_config_of(model: str) -> GenerationConfig | None:
    """The generation_config.json of a checkpoint directory or Hub id; None when it has none."""
    try:
        return GenerationConfig.from_pretrained(model)
    except OSError:
        return None


def _ids(value: int | Iterable[int] | None) -> set[int]:
    if value is None:
        return set()
    return {int(value)} if isinstance(value, int) else {int(v) for v in value}


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: GenerationConfig | None = None) -> set[int]:
    """Every token that ends a trace: the generation config's eos_token_id(s), the tokenizer's, and ChatML's
    `<|im_end|>` when the vocabulary has it (a chat answer ends at the end of its turn)."""
    ids = _ids(getattr(generation_config, "eos_token_id", None)) | _ids(tokenizer.eos_token_id)
    if IM_END in tokenizer.get_vocab():
        ids.add(int(tokenizer.convert_tokens_to_ids(IM_END)))
    if not ids:
        raise ValueError("the tokenizer and generation config name no end-of-sequence token; set tokenizer.eos_token")
    return ids


def decode_trace(tokenizer: PreTrainedTokenizerBase, token_ids: list[int], eos_ids: set[int]) -> str:
    """Text of a trace without its end-of-sequence token, keeping <think> markers (the grader needs them)."""
    ids = token_ids[:-1] if token_ids and token_ids[-1] in eos_ids else token_ids
    return tokenizer.decode(ids, skip_special_tokens=False)

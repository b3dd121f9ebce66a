"""`falcon-h1r generate`: one prompt in, streamed text out (chat template applied)."""

from __future__ import annotations

import torch
from transformers import TextStreamer

from falcon_h1r import subcommand_parser
from falcon_h1r.inference.loading import compiled_decoding, load_model_and_tokenizer
from falcon_h1r.inference.prompting import chat_prompt, eos_token_ids
from falcon_h1r.inference.sampling import SamplingConfig

SAMPLING = SamplingConfig()


def build_parser():
    parser = subcommand_parser("generate", "Generate a reply to PROMPT with the model's chat template, streamed.")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--temperature", type=float, default=SAMPLING.temperature, help="0 = greedy (model card default 0.6)"
    )
    parser.add_argument("--top-p", type=float, default=SAMPLING.top_p)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--system", default=None, help="system prompt (default: the template's; '' for none)")
    parser.add_argument("--no-chat-template", action="store_true", help="send PROMPT as raw text")
    parser.add_argument("--no-stream", action="store_true", help="print the reply once, at the end")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument(
        "--compile", action="store_true", help="static cache + torch.compile'd decode step (slow start, faster tokens)"
    )
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.max_new_tokens < 1:
        raise SystemExit("falcon-h1r generate: --max-new-tokens must be >= 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise SystemExit("falcon-h1r generate: need --temperature >= 0 and 0 < --top-p <= 1")
    if args.seed is not None:
        torch.manual_seed(args.seed)
    model, tokenizer = load_model_and_tokenizer(args.model, args.dtype, args.device)
    text = args.prompt if args.no_chat_template else chat_prompt(tokenizer, args.prompt, args.system)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    sampling = SamplingConfig(args.temperature, args.top_p, args.top_k or None, args.max_new_tokens, args.seed)
    streamer = None if args.no_stream else TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            eos_token_id=sorted(eos_token_ids(tokenizer, model.generation_config)),
            streamer=streamer,
            **sampling.generate_kwargs(),
            **(compiled_decoding(model.device) if args.compile else {}),
        )
    if args.no_stream:
        print(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False))
    else:
        print()
    return 0

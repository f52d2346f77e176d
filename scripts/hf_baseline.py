#!/usr/bin/env python3
"""The baseline lumen's speed runs are compared with: the same synthetic Qwen3-VL shapes
(`lumen config --synthetic PRESET` gives the config.json) random-initialised in HF transformers,
bf16, timed as `lumen bench` times itself: a prefill of seeded random prompt tokens to its first
token, then greedy decode steps (stop tokens ignored), after a warm-up.

    python3 scripts/hf_baseline.py qwen3-vl-8b --layers 8 --prefill 2048 --decode 32

Prints one line, `hf transformers PRESET (N layers) bf16: prefill ... decode ...`, after a line
saying which transformers class ran. Without torch, transformers or (unless --device cpu, a
smoke test) CUDA it prints one line saying what is missing and exits with status 3.
"""

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import time

MISSING = 3


def fail(msg, status=1):
    print(f"hf_baseline: {msg}", file=sys.stderr)
    sys.exit(status)


def parse_args(argv):
    p = argparse.ArgumentParser(description="HF transformers speed baseline at a lumen synthetic preset's shapes")
    p.add_argument("preset", help="tiny, qwen3-vl-2b, qwen3-vl-4b, qwen3-vl-8b, qwen3-vl-30b-a3b, qwen3-vl-235b-a22b")
    p.add_argument("--layers", type=int, help="keep only the first N decoder layers (as lumen's --layers)")
    p.add_argument("--prefill", type=int, default=2048, help="prompt tokens (default 2048)")
    p.add_argument("--decode", type=int, default=32, help="greedy decode steps after the first token (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and prompt tokens")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke test)")
    p.add_argument("--lumen", help="the lumen binary (default: $LUMEN_BIN, .gpu-check/lumen, target/release/lumen, PATH)")
    a = p.parse_args(argv)
    if a.layers is not None and a.layers < 1:
        p.error("--layers must be at least 1")
    if a.prefill < 1 or a.decode < 0:
        p.error("--prefill must be at least 1 and --decode at least 0")
    return a


def lumen_binary(given):
    candidates = [given, os.environ.get("LUMEN_BIN"), ".gpu-check/lumen", "target/release/lumen"]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which("lumen")
    if found:
        return found
    fail("no lumen binary (build with `cargo build --release` or pass --lumen PATH)", MISSING)


def preset_config(binary, preset, layers):
    """The preset's config.json as lumen builds it."""
    cmd = [binary, "config", "--synthetic", preset] + (["--layers", str(layers)] if layers else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"`{' '.join(cmd)}` failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout)


def accepts(cls, name):
    return name in inspect.signature(cls.__init__).parameters


def rope_args(cls, text):
    """transformers 5 takes `rope_parameters` (theta inside), 4.x `rope_scaling` and `rope_theta`."""
    rope = dict(text.pop("rope_scaling", None) or {})
    theta = text.pop("rope_theta")
    if accepts(cls, "rope_parameters"):
        text["rope_parameters"] = {**rope, "rope_theta": theta}
    else:
        text["rope_scaling"], text["rope_theta"] = rope, theta
    return text


def hf_model_class(tf, cfg):
    """(model class, config): the Qwen3-VL class when this transformers has it, else the text
    decoder alone (Qwen3 / Qwen3-MoE: the same layers with 1-D rotary positions)."""
    moe = cfg["model_type"] == "qwen3_vl_moe"
    text, vision = dict(cfg["text_config"]), dict(cfg["vision_config"])
    prefix = "Qwen3VLMoe" if moe else "Qwen3VL"
    top = {k: cfg[k] for k in ["image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"]}
    model_cls = getattr(tf, f"{prefix}ForConditionalGeneration", None)
    if model_cls is not None:
        text = rope_args(getattr(tf, f"{prefix}TextConfig"), text)
        config_cls = getattr(tf, f"{prefix}Config")
        config = config_cls(
            text_config=text, vision_config=vision, tie_word_embeddings=cfg["tie_word_embeddings"], **top
        )
        return model_cls, config
    model_cls = getattr(tf, "Qwen3MoeForCausalLM" if moe else "Qwen3ForCausalLM", None)
    config_cls = getattr(tf, "Qwen3MoeConfig" if moe else "Qwen3Config", None)
    if model_cls is None or config_cls is None:
        fail(f"transformers {tf.__version__} has neither {prefix}ForConditionalGeneration nor a Qwen3 text model", MISSING)
    text = rope_args(config_cls, text)
    text.pop("rope_scaling", None)
    if "rope_parameters" in text:
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": text["rope_parameters"]["rope_theta"]}
    return model_cls, config_cls(tie_word_embeddings=cfg["tie_word_embeddings"], **text)


class Clock:
    """A streamer that notes when each token comes out of `generate` (the prompt comes first)."""

    def __init__(self, torch, device):
        self.torch, self.device, self.times = torch, device, []

    def put(self, _value):
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def end(self):
        pass


def run(args):
    try:
        import torch
        import transformers as tf
    except ImportError as e:
        fail(f"needs torch and transformers ({e})", MISSING)
    if args.device == "cuda" and not torch.cuda.is_available():
        fail(f"torch {torch.__version__} sees no CUDA device", MISSING)
    tf.logging.set_verbosity_error()
    cfg = preset_config(lumen_binary(args.lumen), args.preset, args.layers)
    layers = cfg["text_config"]["num_hidden_layers"]
    model_cls, config = hf_model_class(tf, cfg)

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(args.device):
            model = model_cls(config)
    finally:
        torch.set_default_dtype(default)
    model = model.to(device=args.device, dtype=torch.bfloat16).eval()
    init = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    attn = getattr(model.config, "_attn_implementation", "?")
    print(
        f"hf transformers {tf.__version__} (torch {torch.__version__}): {model_cls.__name__}, "
        f"{params / 1e9:.2f} B params, attention {attn}, random init {init:.1f} s on {args.device}"
    )

    limit = min(cfg["image_token_id"], cfg["vision_start_token_id"], cfg["text_config"]["vocab_size"])
    g = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, limit, (1, args.prefill), generator=g).to(args.device)
    warm = ids[:, : min(16, args.prefill)]

    def generate(prompt, new_tokens):
        clock = Clock(torch, args.device)
        with torch.inference_mode():
            if args.device == "cuda":
                torch.cuda.synchronize()
            clock.times.append(time.perf_counter())
            model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
                streamer=clock,
            )
        return clock.times

    generate(warm, 3)
    # Kernels for the full prompt's shapes too, as lumen's warm-up builds its pipelines.
    generate(ids, 1)
    times = generate(ids, args.decode + 1)
    # times: start, prompt echoed, first token (the prefill's), one per decode step.
    prefill = times[2] - times[0]
    steps = len(times) - 3
    decode = (times[-1] - times[2]) / max(steps, 1)
    print(
        f"hf transformers {args.preset} ({layers} layers) bf16: prefill {args.prefill} tokens "
        f"{prefill * 1e3:.1f} ms ({args.prefill / prefill:.1f} tok/s), decode {steps} steps "
        f"{decode * 1e3:.2f} ms/token ({1 / decode if steps else 0:.1f} tok/s)"
    )


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except SystemExit:
        raise
    except Exception as e:  # one line, whatever failed (out of memory, a config transformers rejects)
        fail(f"{args.preset}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")


if __name__ == "__main__":
    main()

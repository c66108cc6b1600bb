"""A tiny llama-architecture GGUF that behaves like a tool-calling chat model.

No hub, no training: the tokenizer is copied from the llama.cpp tree's
``models/ggml-vocab-qwen2.gguf`` (Qwen2 byte-level BPE, with the Qwen2.5/Qwen3 added
tokens filled in), the chat template is ``models/templates/Qwen-Qwen2.5-7B-Instruct.jinja``,
and the weights are random except for a small hand-set circuit:

* layer 0, head 0 attends to any ``<tool_call>`` token in the context (the Qwen2.5
  template lists one in the system prompt exactly when tools are offered); head 1 to
  ``<tool_response>`` (a tool result was sent back).  RoPE is made inert on the dims
  used (``rope.freq_base`` 1e12), so the match does not depend on distance;
* the layer-0 MLP fires when "tools offered, no tool result yet, current token is a
  newline" - i.e. at the start of the assistant turn - and pushes ``<tool_call>``;
* a second MLP unit pushes ``</tool_call>`` after a ``}`` in the same situation, so the
  grammar's block closes after one call instead of chaining more;
* ``<|im_end|>`` gets a bias (stronger after a tool result or a ``</tool_call>``), so
  answers are short; tokens that start with ``"`` get a bias, so the JSON string of a
  grammar-constrained tool argument closes quickly.

A purely random model never reaches the tool call: llama-server b11434's grammar for
``tool_choice: "required"`` allows free text before ``<tool_call>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_EMBD, N_HEAD, N_FF, N_LAYER, N_CTX = 64, 4, 128, 2, 4096
HEAD = N_EMBD // N_HEAD
D_ONE, D_TOOLCALL, D_TOOLRESP, D_NEWLINE, D_ENDCALL, D_BRACE = 0, 1, 2, 3, 5, 6
D_F_TOOL, D_F_RESP, D_WANT_CALL, D_WANT_END = 10, 11, 12, 13
NOISE = slice(16, 64)
ADDED = {151646: "<|object_ref_start|>", 151647: "<|object_ref_end|>", 151648: "<|box_start|>",
         151649: "<|box_end|>", 151650: "<|quad_start|>", 151651: "<|quad_end|>",
         151652: "<|vision_start|>", 151653: "<|vision_end|>", 151654: "<|vision_pad|>",
         151655: "<|image_pad|>", 151656: "<|video_pad|>", 151657: "<tool_call>",
         151658: "</tool_call>", 151659: "<|fim_prefix|>", 151660: "<|fim_middle|>",
         151661: "<|fim_suffix|>", 151662: "<|fim_pad|>", 151663: "<|repo_name|>",
         151664: "<|file_sep|>", 151665: "<tool_response>", 151666: "</tool_response>",
         151667: "<think>", 151668: "</think>"}
TOOL_CALL, END_CALL, TOOL_RESP, IM_END, NEWLINE = 151657, 151658, 151665, 151645, 198


def make_model(llama_tree: Path, out: Path, seed: int = 7) -> Path:
    import gguf

    vocab = gguf.GGUFReader(str(llama_tree / "models" / "ggml-vocab-qwen2.gguf"))
    f = vocab.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in f["tokenizer.ggml.tokens"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8")
              for i in f["tokenizer.ggml.merges"].data]
    for tid, text in ADDED.items():
        tokens[tid] = text
        types[tid] = 4   # user-defined: matched in text, like Qwen2.5's added tokens
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    emb = np.zeros((n_vocab, N_EMBD), np.float32)
    emb[:, D_ONE] = 1.0
    emb[:, NOISE] = rng.normal(0, 0.3, (n_vocab, NOISE.stop - NOISE.start))
    emb[TOOL_CALL, D_TOOLCALL] = 1.0
    emb[TOOL_RESP, D_TOOLRESP] = 1.0
    emb[NEWLINE, D_NEWLINE] = 1.0
    emb[END_CALL, D_ENDCALL] = 1.0
    emb[[i for i, t in enumerate(tokens) if t.rstrip("ĠĊĉ").endswith("}") and i < 151643], D_BRACE] = 1.0

    out_w = np.zeros((n_vocab, N_EMBD), np.float32)
    out_w[:, NOISE] = rng.normal(0, 0.3, (n_vocab, NOISE.stop - NOISE.start))
    quote = [i for i, t in enumerate(tokens) if t.startswith('"') and i < 151643]
    out_w[quote, D_ONE] += 2.2
    # no commas unless the grammar forces one: the block never chains a second call
    out_w[[i for i, t in enumerate(tokens) if "," in t and i < 151643], D_ONE] = -40.0
    out_w[151643:, D_ONE] = -30.0                     # special tokens never appear by chance
    out_w[IM_END, D_ONE] = 2.6                        # short answers
    out_w[IM_END, D_F_RESP] = 0.3                     # shorter after a tool result
    out_w[IM_END, D_ENDCALL] = 30.0                   # stop after </tool_call>
    out_w[TOOL_CALL, D_WANT_CALL] = 100.0             # the circuit's verdict
    out_w[NEWLINE, D_TOOLCALL] = 60.0                 # the grammar wants "<tool_call>\n"
    out_w[END_CALL, D_WANT_END] = 100.0               # one call per turn: close it after "}"

    zeros = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    layers = []
    for layer in range(N_LAYER):
        wq, wk, wv, wo = zeros(N_EMBD, N_EMBD), zeros(N_EMBD, N_EMBD), zeros(N_EMBD, N_EMBD), zeros(N_EMBD, N_EMBD)
        gate, up, down = zeros(N_FF, N_EMBD), zeros(N_FF, N_EMBD), zeros(N_EMBD, N_FF)
        if layer == 0:
            for head, (flag, dest) in enumerate(((D_TOOLCALL, D_F_TOOL), (D_TOOLRESP, D_F_RESP))):
                base = head * HEAD
                wq[base + HEAD - 2, D_ONE] = 3.5          # last rope pair: rotation ~0
                wk[base + HEAD - 2, flag] = 3.5
                wv[base, flag] = 1.0
                wo[dest, base] = 0.3
            # unit 0: want <tool_call> = tools offered AND no tool result AND newline
            gate[0, [D_F_TOOL, D_NEWLINE, D_F_RESP, D_ONE]] = [10.0, 10.0, -20.0, -15.0]
            up[0, D_ONE] = 1.0
            down[D_WANT_CALL, 0] = 0.04
            # unit 1: want </tool_call> = tools offered AND no tool result AND after "}"
            gate[1, [D_F_TOOL, D_BRACE, D_F_RESP, D_ONE]] = [10.0, 10.0, -20.0, -15.0]
            up[1, D_ONE] = 1.0
            down[D_WANT_END, 1] = 0.04
        layers.append((wq, wk, wv, wo, gate, up, down))

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("tiny-qwen25-toolcall")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(HEAD)
    w.add_rope_freq_base(1e12)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(n_vocab)
    w.add_file_type(1)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(151643)
    w.add_eos_token_id(IM_END)
    w.add_pad_token_id(151643)
    w.add_add_bos_token(False)
    w.add_chat_template((llama_tree / "models" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text())
    f16 = np.float16
    w.add_tensor("token_embd.weight", emb.astype(f16))
    for i, (wq, wk, wv, wo, gate, up, down) in enumerate(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", wq.astype(f16))
        w.add_tensor(f"blk.{i}.attn_k.weight", wk.astype(f16))
        w.add_tensor(f"blk.{i}.attn_v.weight", wv.astype(f16))
        w.add_tensor(f"blk.{i}.attn_output.weight", wo.astype(f16))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", gate.astype(f16))
        w.add_tensor(f"blk.{i}.ffn_up.weight", up.astype(f16))
        w.add_tensor(f"blk.{i}.ffn_down.weight", down.astype(f16))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    w.add_tensor("output.weight", out_w.astype(f16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


if __name__ == "__main__":
    import sys
    print(make_model(Path(sys.argv[1]), Path(sys.argv[2])))

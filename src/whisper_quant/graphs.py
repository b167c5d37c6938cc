"""ONNX graph work: walks for the builder, and the graphs the ONNX engines run.

Optimum's merged decoder holds two branches in an `If`: one for the first step (it computes
the cross-attention keys and values from the encoder's output) and one for cached steps.
onnxruntime builds kernels for both branches over the same weights, which costs about as much
memory again as the decoder's layer weights (measured: tiny.en's int8 decoder holds 57.5 MiB
as a merged graph, 50.0 MiB as one branch). So, at load time, `runtime_graphs` makes three:

- the encoder, as exported (hidden states out);
- the cross-attention key/value projections of every decoder layer, taken out of the
  first-step branch: run once per 30 s window (they are all the decoder reads of the audio);
- the decoder step: the cached-step branch alone, which also runs the prompt, its
  self-attention cache starting empty.

The nodes, weights and quantization are the ones in the files, unchanged; only the grouping
differs, and the files stay loadable by Optimum as they are. Optionally (on by default) the
encoder's attention cores are also fused into onnxruntime's MultiHeadAttention, which runs
flash attention on the CPU (see `fuse_encoder_attention`); that one changes the arithmetic
order, so it is checked against the unfused graph rather than for equality.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ENCODER_OUTPUT = "last_hidden_state"
DECODER_HIDDEN_INPUT = "encoder_hidden_states"


class GraphLayoutError(RuntimeError):
    """The files do not have the layout Optimum exports for Whisper."""


def walk(graph, constants: frozenset[str] = frozenset()):
    """Every node of `graph` and of its subgraphs (an `If`'s branches), with the names that
    are constant where it stands (initializers and `Constant` outputs of its own graph and of
    the graphs enclosing it)."""
    import onnx

    constants = constants | {i.name for i in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        yield node, constants
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from walk(attribute.g, constants)


def graph_and_subgraphs(graph):
    """`graph` and every subgraph under it (an `If`'s branches), each before its subgraphs."""
    import onnx

    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graph_and_subgraphs(attribute.g)


def _load_structure(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes whose second input is not a weight: attention's Q.K^T and scores.V.

    onnxruntime's own `quantize_dynamic` leaves these alone by default (MatMulConstBOnly),
    but Optimum drives its quantizer directly and quantizes them too, to per-tensor uint8
    at run time. For Whisper that re-quantizes the attention cache at every step: slower,
    and inaccurate enough that quantized `base` took a German clip for English.
    """
    return sorted(
        {
            node.name
            for node, constants in walk(_load_structure(path))
            if node.op_type == "MatMul" and node.input[1] not in constants
        }
    )


def output_projections(path: Path) -> list[str]:
    """The decoder's output projection MatMul(s) (`proj_out`, one per merged-decoder branch)."""
    return [
        node.name
        for node, _ in walk(_load_structure(path))
        if node.op_type == "MatMul" and "proj_out" in node.name
    ]


@dataclass(frozen=True)
class RuntimeGraphs:
    encoder: bytes  # input_features -> last_hidden_state
    cross: bytes  # encoder_hidden_states -> past_key_values.{i}.encoder.{key,value}
    decoder: bytes  # input_ids + every past_key_values.* -> logits, present.{i}.decoder.*
    cross_names: tuple[str, ...]  # the cross graph's outputs, named as the decoder's inputs
    fused_attention: bool  # whether the encoder's attention runs as MultiHeadAttention
    changes: tuple[str, ...]  # the graph changes applied, in words, for load reports


def runtime_graphs(
    encoder_path: Path | str, decoder_path: Path | str, *, fuse_attention: bool = True
) -> RuntimeGraphs:
    """The regrouped graphs; with `fuse_attention`, the encoder's attention is fused too."""
    import json

    import onnx

    encoder = onnx.load(str(encoder_path))
    fused = False
    if fuse_attention:
        config = json.loads((Path(encoder_path).parent / "config.json").read_text())
        layers = config["encoder_layers"]
        count = fuse_encoder_attention(encoder.graph, config["encoder_attention_heads"])
        fused = count == layers
        if not fused:
            # An export whose attention looks different: run it as written, never half-fused.
            logger.warning(
                "%s: found %d of %d attention blocks to fuse; running the encoder unfused",
                encoder_path,
                count,
                layers,
            )
            encoder = onnx.load(str(encoder_path))
    merged = onnx.load(str(decoder_path))
    graph = merged.graph
    if_node = _if_node(graph)
    branches = {a.name: a.g for a in if_node.attribute}
    outer_nodes = [n for n in graph.node if n.op_type != "If"]
    initializers = {t.name: t for t in graph.initializer}
    inputs = {i.name: i for i in graph.input}

    # The cached-step branch, as a graph of its own without the cross-attention outputs
    # (they only pass the inputs through).
    cached = branches["then_branch"]
    wanted = [o for o in cached.output if ".encoder." not in o.name]
    cross_inputs = sorted(
        (n for n in inputs if n.startswith("past_key_values.") and ".encoder." in n),
        key=_layer_order,
    )
    decoder_nodes = _needed(outer_nodes + list(cached.node), [o.name for o in wanted])
    used = _consumed(decoder_nodes)
    decoder_graph = onnx.helper.make_graph(
        decoder_nodes,
        "whisper_decoder_step",
        [inputs[n] for n in inputs if n in used],
        wanted,
        [initializers[n] for n in initializers if n in used],
    )
    missing = [n for n in cross_inputs if n not in used]
    if missing or "input_ids" not in used:
        raise GraphLayoutError(f"{decoder_path}: the cached branch does not read {missing}")
    decoder_graph = _rename_outputs(decoder_graph, cached, if_node)

    # The first-step branch's cross-attention projections, fed by the encoder's output.
    first = branches["else_branch"]
    cross_outputs = [_branch_output(first, if_node, name) for name in cross_inputs]
    cross_nodes = _batch_from_hidden(_needed(outer_nodes + list(first.node), cross_outputs))
    cross_nodes = _needed(cross_nodes, cross_outputs)
    cross_used = _consumed(cross_nodes)
    foreign = [n for n in cross_used if n in inputs and n != DECODER_HIDDEN_INPUT]
    if foreign:
        raise GraphLayoutError(f"{decoder_path}: the cross-attention projections read {foreign}")

    if [o.name for o in encoder.graph.output] != [ENCODER_OUTPUT]:
        raise GraphLayoutError(f"{encoder_path}: expected one output, {ENCODER_OUTPUT}")
    if fused and not any(o.domain == "com.microsoft" for o in encoder.opset_import):
        encoder.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))

    # The cross-attention projections as a graph of their own: hidden states in, the
    # decoder's `past_key_values.*.encoder.*` out, so their time is measured on its own.
    renames = dict(zip(cross_outputs, cross_inputs, strict=True))
    nodes = []
    for node in cross_nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.output[:] = [renames.get(n, n) for n in node.output]
        nodes.append(copy)
    cross_graph = onnx.helper.make_graph(
        nodes,
        "whisper_cross_attention_kv",
        [inputs[DECODER_HIDDEN_INPUT]],
        [_renamed_output(inputs[n], n) for n in cross_inputs],
        [initializers[n] for n in initializers if n in cross_used],
    )
    cross_model = onnx.helper.make_model(cross_graph, opset_imports=list(merged.opset_import))
    cross_model.ir_version = merged.ir_version

    decoder_model = onnx.helper.make_model(decoder_graph, opset_imports=list(merged.opset_import))
    decoder_model.ir_version = merged.ir_version
    changes = ["cross-attention key/value projections run once per window, in their own graph"]
    changes.append("every decoder step, the prompt included, runs the cached-step branch")
    if fused:
        changes.append("encoder attention fused into com.microsoft.MultiHeadAttention")
    return RuntimeGraphs(
        encoder=encoder.SerializeToString(),
        cross=cross_model.SerializeToString(),
        decoder=decoder_model.SerializeToString(),
        cross_names=tuple(cross_inputs),
        fused_attention=fused,
        changes=tuple(changes),
    )


def _if_node(graph):
    nodes = [n for n in graph.node if n.op_type == "If"]
    if len(nodes) != 1:
        raise GraphLayoutError("expected a merged decoder with one If node")
    return nodes[0]


def _batch_from_hidden(nodes) -> list:
    """Take the batch size the cross-attention reshapes need from the encoder's output.

    The exported graph reads it off the embedded tokens (`Shape` of a tensor derived from
    `input_ids`), which would drag the token embedding into the encoder. The encoder's
    output has the same batch size in the same place; a test checks the keys and values
    equal the merged decoder's.
    """
    import onnx

    tainted = {"input_ids"}
    result = []
    for node in nodes:
        inputs = _node_inputs(node)
        if node.op_type == "Shape" and inputs[0] in tainted:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[0] = DECODER_HIDDEN_INPUT
            result.append(copy)
            continue
        if tainted & set(inputs):
            tainted.update(node.output)
        result.append(node)
    return result


def _needed(nodes, outputs: list[str]) -> list:
    """The nodes that `outputs` depend on, in their original order."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    keep: set[int] = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        stack.extend(producer[n] for n in _node_inputs(nodes[i]) if n in producer)
    return [node for i, node in enumerate(nodes) if i in keep]


def _node_inputs(node) -> list[str]:
    """A node's inputs, with the outer-scope names its subgraphs read."""
    names = [n for n in node.input if n]
    for attribute in node.attribute:
        if attribute.HasField("g"):
            names.extend(n for inner, _ in walk(attribute.g) for n in inner.input if n)
    return names


def _consumed(nodes) -> set[str]:
    return {name for node in nodes for name in _node_inputs(node)}


def _layer_order(name: str) -> tuple[int, str]:
    # past_key_values.{layer}.encoder.{key|value}
    parts = name.split(".")
    return int(parts[1]), parts[-1]


def _branch_output(branch, if_node, past_name: str) -> str:
    """The branch's output that becomes `present.*` for the given `past_key_values.*` name."""
    present = past_name.replace("past_key_values", "present")
    index = list(if_node.output).index(present)
    return branch.output[index].name


def _renamed_output(value_info, name: str):
    import onnx

    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value_info)
    copy.name = name
    return copy


def _rename_outputs(decoder_graph, branch, if_node):
    """Give the step graph's outputs the If node's names (logits, present.*.decoder.*)."""
    import onnx

    names = dict(zip((o.name for o in branch.output), if_node.output, strict=True))
    outputs = []
    for output in decoder_graph.output:
        target = names[output.name]
        if target != output.name:
            decoder_graph.node.append(
                onnx.helper.make_node("Identity", [output.name], [target], name=f"out/{target}")
            )
        outputs.append(_renamed_output(output, target))
    del decoder_graph.output[:]
    decoder_graph.output.extend(outputs)
    return decoder_graph


def _merge_opsets(target, source) -> None:
    have = {o.domain: o for o in target.opset_import}
    for opset in source.opset_import:
        if opset.domain not in have:
            target.opset_import.append(opset)
        elif have[opset.domain].version < opset.version:
            have[opset.domain].version = opset.version


def fuse_encoder_attention(graph, num_heads: int) -> int:
    """Replace each self-attention core of the encoder with one `MultiHeadAttention` node.

    The export spells attention out: Q.K^T into a (heads x 1500 x 1500) score tensor, a
    Softmax, then scores.V, with reshapes and transposes around them. onnxruntime's
    `com.microsoft.MultiHeadAttention` takes the projected Q, K, V (batch, frames, width) and,
    on the CPU in fp32 with no mask, runs flash attention: the scores never exist whole, so
    a clip's peak memory drops by that tensor and its copies, and the encoder gets faster.
    The projections (int8 in the quantized model) are untouched. Returns how many were fused.
    """
    import onnx

    producer = {out: node for node in graph.node for out in node.output}
    constants = _scalar_constants(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def unwind(name: str) -> tuple[str, float]:
        """Follow a tensor back through head reshapes/transposes and constant scalings."""
        scale = 1.0
        while name in producer:
            node = producer[name]
            if node.op_type in ("Reshape", "Transpose"):
                name = node.input[0]
            elif node.op_type == "Mul" and (
                node.input[0] in constants or node.input[1] in constants
            ):
                constant = node.input[0] if node.input[0] in constants else node.input[1]
                scale *= constants[constant]
                name = node.input[1] if constant == node.input[0] else node.input[0]
            else:
                break
        return name, scale

    fused = 0
    replacements = []
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        scores = producer.get(softmax.input[0])
        users = consumers.get(softmax.output[0], [])
        axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
        if axis not in (-1, 3) or scores is None or scores.op_type != "MatMul" or len(users) != 1:
            continue
        mixed = users[0]
        if mixed.op_type != "MatMul" or mixed.input[0] != softmax.output[0]:
            continue
        # Out through Transpose then Reshape back to (batch, frames, width).
        after = consumers.get(mixed.output[0], [])
        if len(after) != 1 or after[0].op_type != "Transpose":
            continue
        merge = consumers.get(after[0].output[0], [])
        if len(merge) != 1 or merge[0].op_type != "Reshape":
            continue
        query, q_scale = unwind(scores.input[0])
        key, k_scale = unwind(scores.input[1])
        value, v_scale = unwind(mixed.input[1])
        if v_scale != 1.0 or len({query, key, value}) != 3:
            continue
        replacements.append(
            onnx.helper.make_node(
                "MultiHeadAttention",
                [query, key, value],
                [merge[0].output[0]],
                name=f"{softmax.name}/MultiHeadAttention",
                domain="com.microsoft",
                num_heads=num_heads,
                scale=q_scale * k_scale,
            )
        )
        merge[0].output[0] = merge[0].output[0] + "/unfused"
        fused += 1
    graph.node.extend(replacements)
    outputs = [o.name for o in graph.output]
    kept = _needed(list(graph.node), outputs)
    _sort_topologically(graph, kept)
    return fused


def _scalar_constants(graph) -> dict[str, float]:
    from onnx import numpy_helper

    values: dict[str, float] = {}
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor) if _size(tensor.dims) == 1 else None
        if array is not None and array.dtype.kind == "f":
            values[tensor.name] = float(array.reshape(-1)[0])
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if _size(tensor.dims) == 1:
                array = numpy_helper.to_array(tensor)
                if array.dtype.kind == "f":
                    values[node.output[0]] = float(array.reshape(-1)[0])
    return values


def _size(dims) -> int:
    size = 1
    for d in dims:
        size *= d
    return size


def _sort_topologically(graph, nodes) -> None:
    """Put `nodes` into the graph in an order where every input is produced before use."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(nodes)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(n in available for n in _node_inputs(node)):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise GraphLayoutError("the encoder graph has a cycle or a missing input")
        pending = rest
    copies = []
    for node in ordered:
        copy = type(node)()
        copy.CopyFrom(node)
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)


# onnxruntime (1.20 on) fuses DequantizeLinear(8-bit weight) -> MatMul into MatMulNBits, whose
# default accuracy level 4 quantizes the activations to int8 per block again. Level 1 computes
# in float32 from the same weights; a session running `weight_only` graphs needs this entry.
WEIGHT_ONLY_SESSION_CONFIG = {"session.qdq_matmulnbits_accuracy_level": "1"}


def weight_only(model_bytes: bytes) -> tuple[bytes, int]:
    """The same graph with every dynamic int8 MatMul computed in float32 from its int8 weights.

    onnxruntime's `quantize_dynamic` (which Optimum runs) writes each weight MatMul as
    DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, x_zp, W_zp) -> Cast -> Mul(x_scale *
    W_scale). Here each becomes DequantizeLinear(W_q, W_scale, W_zp) -> MatMul(x, W): the
    weights, their scales and zero points are the file's, unchanged; only the activations stay
    float32, so the result differs from the float32 model by the weights' rounding alone,
    when the session is made with WEIGHT_ONLY_SESSION_CONFIG. Returns the graph and how many
    MatMuls it rewrote.
    """
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(model_bytes)
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    drop: set[int] = set()
    added: dict[int, list] = {}
    rewritten = 0
    for node in graph.node:
        if node.op_type != "MatMulInteger" or node.input[1] not in constants:
            continue
        quantize = producer.get(node.input[0])
        (cast,) = consumers[node.output[0]]
        (rescale,) = consumers[cast.output[0]]
        scales = producer[next(n for n in rescale.input if n != cast.output[0])]
        weight_scale = next(n for n in scales.input if n in constants)
        if (
            quantize is None
            or quantize.op_type != "DynamicQuantizeLinear"
            or cast.op_type != "Cast"
            or rescale.op_type != "Mul"
            or scales.op_type != "Mul"
        ):
            raise GraphLayoutError(f"{node.name}: not the dynamic int8 MatMul pattern")
        weight = node.input[1] + "_dequantized"
        # Per-channel scales run along the weight's output columns (axis 1 of K x N).
        per_channel = len(constants[weight_scale].dims) == 1
        added[id(rescale)] = [
            onnx.helper.make_node(
                "DequantizeLinear",
                [node.input[1], weight_scale, node.input[3]],
                [weight],
                name=node.name + "/weight_only/dequantize",
                **({"axis": 1} if per_channel else {}),
            ),
            onnx.helper.make_node(
                "MatMul",
                [quantize.input[0], weight],
                [rescale.output[0]],
                name=node.name + "/weight_only/matmul",
            ),
        ]
        drop.update({id(node), id(cast), id(rescale), id(scales)})
        rewritten += 1

    nodes = []
    for node in graph.node:
        nodes.extend(added.get(id(node), []))
        if id(node) not in drop:
            nodes.append(node)
    # Activation quantizers that no MatMul reads any more.
    read = {name for node in nodes for name in node.input}
    nodes = [
        n
        for n in nodes
        if not (n.op_type == "DynamicQuantizeLinear" and not any(o in read for o in n.output))
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), rewritten

"""ONNX files on disk: external data, streamed copies, hard links, lean shape inference.

Whisper's larger graphs are past protobuf's 2 GB, so the export keeps their weights in
`<file>_data` (the layout's name, as Optimum writes it). The functions here move those bytes a
chunk at a time instead of loading them: merging the two exported decoders, gathering torch's
one-file-per-tensor export into one `<file>_data`, and giving onnxruntime's quantizer a graph
to shape-infer without copies of its weights. A variant that reuses another's graphs gets hard
links, not copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .layout import ONNX_FILES
from .weights import copy_preprocessing_files

# Tensors larger than this are taken out of a graph while it is shape-inferred.
LEAN_TENSOR_BYTES = 4096
# A graph from this many bytes on is saved with its weights in `<file>_data` (protobuf stops at
# 2 GiB). onnxruntime's own name for that file is `<file>.data`; the layout's is `<file>_data`,
# as Optimum's export writes it.
EXTERNAL_DATA_FROM_BYTES = 2**31 - 2**26


class OnnxFileError(RuntimeError):
    """An ONNX file is not what it should be; the message says which and why."""


def external_data_name(onnx_file: str) -> str:
    """Where Optimum's export keeps the weights of a graph past 2 GB."""
    return onnx_file + "_data"


def merge_decoders_streaming(decoder: Path, with_past: Path, merged: Path) -> None:
    """Optimum's `merge_decoders`, with weights left on disk.

    Optimum's version loads both decoders' weights and copies them into the merged graph
    (three copies of the decoder in memory). Here the graphs are loaded without external data,
    shared weights are found by a digest of their bytes read from disk, and the kept weights
    are streamed into `<merged>_data`. The graph it writes is the one Optimum writes.
    """
    import onnx
    from optimum.onnx.transformations_utils import (
        _get_all_inputs,
        _get_onnx_opset,
        _replace_input_names,
        _unify_onnx_outputs,
    )

    models = [onnx.load(str(path), load_external_data=False) for path in (decoder, with_past)]
    folders = [decoder.parent, with_past.parent]
    if _get_onnx_opset(models[0]) != _get_onnx_opset(models[1]):
        raise OnnxFileError("The two exported decoders have different opsets")
    # The decoder with past does not output the cross-attention cache (it is constant).
    _unify_onnx_outputs(models[0], models[1], strict=False)
    all_inputs = _get_all_inputs(models)
    duplicates: dict[tuple, set[tuple[str, int]]] = {}
    for index, (model, folder) in enumerate(zip(models, folders, strict=True)):
        for tensor in model.graph.initializer:
            if _shared_candidate(tensor):
                key = (tensor.data_type, _tensor_digest(tensor, folder), tuple(tensor.dims))
                duplicates.setdefault(key, set()).add((tensor.name, index))
    sharing = _sharing_names(duplicates.values(), suffix="merged")
    _replace_input_names(models, sharing)
    shared, seen = [], set()
    for index, model in enumerate(models):
        for tensor in model.graph.initializer:
            new_name = sharing.get((tensor.name, index))
            if new_name is not None and new_name not in seen:
                seen.add(new_name)
                tensor.name = new_name
                shared.append(tensor)
    branches = [
        onnx.helper.make_graph(
            nodes=model.graph.node,
            name=name,
            inputs=[],
            outputs=model.graph.output,
            initializer=[t for t in model.graph.initializer if not _shared_candidate(t)],
        )
        for model, name in zip(models, ("no_past", "with_past"), strict=True)
    ]
    use_cache_branch = onnx.helper.make_tensor_value_info(
        "use_cache_branch", onnx.TensorProto.BOOL, [1]
    )
    if_node = onnx.helper.make_node(
        "If",
        inputs=["use_cache_branch"],
        outputs=[output.name for output in branches[0].output],
        name="optimum::if",
        then_branch=branches[1],
        else_branch=branches[0],
    )
    graph = onnx.helper.make_graph(
        nodes=[if_node],
        name="merged",
        inputs=[*all_inputs, use_cache_branch],
        outputs=branches[0].output,
        initializer=shared,
    )
    opsets, domains = [], set()
    for opset in [*models[0].opset_import, *models[1].opset_import]:
        if opset.domain not in domains:
            opsets.append(opset)
            domains.add(opset.domain)
    model = onnx.helper.make_model_gen_version(
        graph, producer_name="optimum-onnx", opset_imports=opsets, ir_version=9
    )
    del models, branches, shared
    _save_streaming(model, merged, folders[0])


def _sharing_names(groups, suffix: str) -> dict[tuple[str, int], str]:
    """Optimum's naming of shared weights (`<name>_<suffix>_<n>`), with the name taken from the
    first model's tensors in a fixed order, so a rebuild names them the same (Optimum picks an
    arbitrary member of a set, which varies with the string hash seed)."""
    sharing: dict[tuple[str, int], str] = {}
    used: dict[str, int] = {}
    for group in groups:
        common, _ = min(group, key=lambda member: (member[1], member[0]))
        used[common] = used[common] + 1 if common in used else 0
        for member in group:
            sharing[member] = f"{common}_{suffix}_{used[common]}"
    return sharing


def _shared_candidate(tensor) -> bool:
    """Optimum's rule: scalars and 1-d int32/int64 tensors stay in their branch."""
    dims = tuple(tensor.dims)
    return len(dims) > 1 or (len(dims) == 1 and tensor.data_type not in (6, 7))


def _tensor_digest(tensor, folder: Path) -> str:
    """sha512 of a tensor's stored bytes, read in chunks from its external file if it has one."""
    import hashlib

    from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    from onnx.numpy_helper import to_array

    digest = hashlib.sha512()
    if uses_external_data(tensor):
        info = ExternalDataInfo(tensor)
        for chunk in _read_range(folder / info.location, info.offset or 0, info.length):
            digest.update(chunk)
    elif tensor.raw_data:
        digest.update(tensor.raw_data)
    else:
        digest.update(to_array(tensor).tobytes())
    return digest.hexdigest()


def _read_range(path: Path, offset: int, length: int | None, chunk: int = 1 << 24):
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = length if length is not None else path.stat().st_size - offset
        while remaining > 0:
            block = f.read(min(chunk, remaining))
            if not block:
                raise OnnxFileError(f"{path.name} ends before the tensor it should hold")
            remaining -= len(block)
            yield block


def _save_streaming(model, path: Path, source_folder: Path) -> None:
    """Save `model`, copying the external data its tensors point to into `<path>_data`."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    data_name = external_data_name(path.name)
    external = [t for t in _get_all_tensors(model) if uses_external_data(t)]
    if external:
        with open(path.parent / data_name, "wb") as out:
            for tensor in external:
                info = ExternalDataInfo(tensor)
                offset = out.tell()
                for block in _read_range(
                    source_folder / info.location, info.offset or 0, info.length
                ):
                    out.write(block)
                _point_to(tensor, data_name, offset, out.tell() - offset)
    onnx.save_model(model, str(path))


def _point_to(tensor, location: str, offset: int, length: int) -> None:
    """Make `tensor` read its bytes from `location` (onnx's `set_external_data` refuses a
    tensor whose bytes are not in memory)."""
    import onnx

    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


class _StreamingOnnx:
    """The `onnx` module as Optimum's exporter sees it, gathering external data by streaming.

    A graph past 2 GB comes out of torch's exporter with one file per tensor; Optimum then
    loads every weight (while the torch model is still alive) only to save them again into
    one `<file>_data`. Here the graph is loaded without its weights and `save` copies the
    tensor files' bytes into `<file>_data` a chunk at a time.
    """

    def __init__(self, onnx_module):
        self._onnx = onnx_module

    def __getattr__(self, name: str):
        return getattr(self._onnx, name)

    def load(self, path, load_external_data: bool = True, **kwargs):
        return self._onnx.load(path, load_external_data=False, **kwargs)

    def save(self, model, path, **kwargs) -> None:
        _save_streaming(model, Path(path), Path(path).parent)


@contextlib.contextmanager
def streaming_external_data():
    """Within it, Optimum's exporter loads graphs without their weights and saves them by
    streaming (see `_StreamingOnnx`)."""
    import optimum.exporters.onnx.convert as convert

    original = convert.onnx
    convert.onnx = _StreamingOnnx(original)
    try:
        yield
    finally:
        convert.onnx = original


def shape_inferred_without_copies(model):
    """onnxruntime's `save_and_reload_model_with_shape_infer`, without copying the weights.

    onnxruntime deep-copies the model, saves it and loads it back with shapes inferred (and
    does so twice per quantizer): several copies of the weights at once. Shape inference needs
    no weight values, so here a copy of the graph whose large initializers carry only their
    name, type and dims is shape-inferred, and the inferred value infos are set on `model`
    itself, which is returned.
    """
    import onnx
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    lean = onnx.ModelProto()
    for descriptor, value in model.ListFields():
        if descriptor.name != "graph":
            _copy_field(lean, descriptor, value)
    _copy_graph_without_weights(model.graph, lean.graph)
    inferred = onnx.shape_inference.infer_shapes(lean)
    _take_value_infos(model.graph, inferred.graph)
    add_infer_metadata(model)
    return model


def _copy_graph_without_weights(source, target) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name != "initializer":
            _copy_field(target, descriptor, value)
    for tensor in source.initializer:
        copy = target.initializer.add()
        if tensor.ByteSize() <= LEAN_TENSOR_BYTES:
            copy.CopyFrom(tensor)
        else:
            copy.name, copy.data_type = tensor.name, tensor.data_type
            copy.dims.extend(tensor.dims)


def _copy_field(target, descriptor, value) -> None:
    if descriptor.is_repeated:
        getattr(target, descriptor.name).extend(value)
    elif descriptor.message_type is not None:
        getattr(target, descriptor.name).CopyFrom(value)
    else:
        setattr(target, descriptor.name, value)


def _take_value_infos(graph, inferred) -> None:
    """Give `graph` (and its subgraphs) the value infos and outputs of its inferred copy."""
    del graph.value_info[:]
    graph.value_info.extend(inferred.value_info)
    del graph.output[:]
    graph.output.extend(inferred.output)
    for node, inferred_node in zip(graph.node, inferred.node, strict=True):
        for attribute, inferred_attribute in zip(
            node.attribute, inferred_node.attribute, strict=True
        ):
            if attribute.HasField("g"):
                _take_value_infos(attribute.g, inferred_attribute.g)
            for subgraph, inferred_subgraph in zip(
                attribute.graphs, inferred_attribute.graphs, strict=True
            ):
                _take_value_infos(subgraph, inferred_subgraph)


def save_model(model, path: Path) -> None:
    """Save a graph, its weights in `<file>_data` when it is past protobuf's 2 GB."""
    import onnx

    if model.ByteSize() < EXTERNAL_DATA_FROM_BYTES:
        onnx.save_model(model, str(path))
        return
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=external_data_name(path.name),
    )


def link_variant(sources: dict[str, Path], out_dir: Path, preprocessing_from: Path) -> None:
    """Make a variant from existing graphs: `sources` maps each ONNX file name to the folder
    holding it. Files are hard-linked (no extra disk) where the file system allows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ONNX_FILES:
        link_graph(sources[name], name, out_dir)
    copy_preprocessing_files(preprocessing_from, out_dir)


def link_graph(folder: Path, name: str, out_dir: Path) -> None:
    """Hard-link (or copy) one graph and its external data, if it has any, into `out_dir`."""
    for file in (name, external_data_name(name)):
        if (folder / file).is_file():
            _link(folder / file, out_dir / file)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

"""Model instrumentation: find the conv/linear layers of a model, fold BatchNorm, insert activation sites.

``instrument(model, site_factory)`` returns a copy of ``model`` in which

* every ``nn.Conv*d`` / ``nn.Linear`` call is a *layer*, named by its stable qualified module name
  (``"_blocks.3._expand_conv"``; a module called twice gets ``"<name>@1"`` for its second call). Subclasses
  count too, and each is one call however it computes: a subclass with its own ``forward`` (the static "same"
  padding convolutions of EfficientNet ports and timm) runs that ``forward`` with the layer's quantized weight
  (``LayerInfo.own_forward``; steps that need the convolution's geometry skip such layers);
* a BatchNorm whose only input is a layer's output, the layer's only user, is folded into the layer's
  weight and bias (:func:`quant.bn_fold.fold_conv_bn`) and removed from the graph;
* a ReLU / ReLU6 that is the only user of the (folded) layer output is *fused*: it is removed from the
  graph and the layer's site applies it (``LayerInfo.activation``), so the site sees the pre-activation
  values (the statistics the reference code's ACIQ uses) and outputs unsigned values;
* a site module (``site_factory(info)``) is inserted after each layer and takes over every use of the
  layer's output: it is the tensor's only user (sites may overwrite it). Residual adds, pooling and the
  network input are not instrumented.

Discovery uses ``torch.fx`` symbolic tracing, which sees shared modules (EfficientNet's single ReLU6,
ResNet's ``self.relu``) as one call per use. A submodule whose ``forward`` cannot be traced (data-dependent
control flow) is kept as an opaque leaf; its conv/linear layers are still instrumented with forward
hooks (signed, no folding, no fusion). If the model's own ``forward`` cannot be traced at all, every
layer is instrumented that way (``Instrumented.traced`` is False).

Nothing runs unquantized unnoticed: every conv/linear module of the copy is watched, and a pass through it in
which a conv/linear module that is not a layer ran (one inside a module the tracer keeps whole, e.g. a
``torch.nn`` module with conv/linear children, or a conv subclass that calls another conv) raises
:class:`ModelError` naming it, unless ``keep_fp32`` names it. A traced graph that computes with a conv/linear
module's weight directly (``F.conv2d(x, self.conv.weight)`` in a parent's ``forward``) fails at once, the same
way. :meth:`Instrumented.coverage` counts the modules that ran and the layers among them.
"""

from __future__ import annotations

import copy
import logging
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn

from quant.bn_fold import fold_conv_bn
from quant.errors import ModelError

__all__ = ["LayerInfo", "Instrumented", "Coverage", "instrument", "find_layers", "is_layer_module", "has_own_forward"]

log = logging.getLogger(__name__)

_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_RELU_FUNCS = {F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu6: "relu6"}
_RELU_METHODS = {"relu": "relu", "relu_": "relu"}
# ops that move values without changing them: a layer reached through these reads the site's codes
_PASS_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.Identity, nn.Dropout, nn.Flatten)
_PASS_FUNCS = {torch.flatten, F.pad, F.dropout, operator.getitem}
_PASS_METHODS = {"view", "reshape", "flatten", "contiguous"}
SITES_ATTR = "_hq_sites"


def is_layer_module(module: nn.Module) -> bool:
    """True for the module types the pipeline quantizes (Conv1d/2d/3d, Linear, and their subclasses)."""
    return isinstance(module, _LAYER_TYPES)


def has_own_forward(module: nn.Module) -> bool:
    """True for a conv/linear subclass that computes its own way (overrides ``forward``, or a convolution's
    ``_conv_forward``): its padding, or whatever it does to its weight, is not in the module's attributes."""
    for base in _LAYER_TYPES:
        if isinstance(module, base):
            cls = type(module)
            return any(getattr(cls, f, None) is not getattr(base, f, None) for f in ("forward", "_conv_forward"))
    return False


@dataclass
class LayerInfo:
    """One quantized layer (a conv or linear call) of an instrumented model."""

    name: str  # stable qualified module name ("_blocks.3._expand_conv"), "@k" suffix for a k-th extra call
    module_name: str  # qualified name of the nn.Module (same as name without "@k")
    kind: str  # "conv" or "linear"
    index: int  # execution order (0 = first layer)
    signed: bool  # False when a fused ReLU/ReLU6 makes the output non-negative
    activation: str | None = None  # fused activation applied by the site: "relu", "relu6" or None
    folded_bn: str | None = None  # qualified name of the BatchNorm folded into this layer
    first: bool = False  # no other layer before it (reads the network input)
    classifier: bool = False  # its output reaches the network output through no other layer
    input_layer: str | None = None  # layer whose site output is this layer's input (through pads/views only)
    input_padded: bool = False  # a padding op lies between input_layer's site and this layer
    sole_consumer: str | None = None  # the one layer that reads this layer's site output (nothing else reads it)
    via_hook: bool = False  # instrumented with a forward hook (untraceable region): no fold, no fusion
    own_forward: bool = False  # a conv/linear subclass with its own forward (has_own_forward)


@dataclass(frozen=True)
class Coverage:
    """The conv/linear modules that ran in the passes through an instrumented model so far.

    Counts are of modules (a module called twice is one), by qualified module name."""

    layers_quantized: int  # modules that ran as layers of the pipeline (not kept in FP32 by name)
    conv_linear_modules: int  # conv/linear modules that ran
    kept_fp32: tuple[str, ...] = ()  # ran, and named by keep_fp32
    escaped: tuple[str, ...] = ()  # ran unquantized and not named by keep_fp32 (the pass raised ModelError)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``layers_quantized``, ``conv_linear_modules``, ``kept_fp32`` (list of names)."""
        return {"layers_quantized": self.layers_quantized, "conv_linear_modules": self.conv_linear_modules,
                "kept_fp32": list(self.kept_fp32)}


@dataclass
class Instrumented:
    """A model copy with BN folded and one site module after each layer."""

    model: nn.Module  # the instrumented copy (fx.GraphModule when traced)
    layers: dict[str, LayerInfo]  # in execution order
    sites: dict[str, nn.Module]  # layer name -> its site module
    modules: dict[str, nn.Module]  # layer name -> its conv/linear module (weights folded)
    traced: bool = True
    opaque: dict[str, str] = field(default_factory=dict)  # untraceable submodule -> reason
    keep_fp32: tuple[str, ...] = ()  # conv/linear modules allowed to run unquantized (qualified names)
    _hooks: list[Any] = field(default_factory=list, repr=False)
    _ran: dict[str, None] = field(default_factory=dict, repr=False)  # conv/linear modules seen running, in order
    _escaped: dict[str, None] = field(default_factory=dict, repr=False)  # ... that are no layer, nor kept
    _others: set[str] = field(default_factory=set, repr=False)  # conv/linear modules that are not layers
    _functional: tuple[str, ...] = field(default=(), repr=False)  # kept modules used through their weight

    def __call__(self, x: torch.Tensor) -> Any:
        return self.model(x)

    def coverage(self) -> Coverage:
        """What ran so far (after at least one pass; all zero before)."""
        ran = list(dict.fromkeys([*self._ran, *self._functional]))
        kept = tuple(n for n in ran if n in self.keep_fp32)
        layers = {i.module_name for i in self.layers.values()}
        return Coverage(layers_quantized=sum(1 for n in ran if n in layers and n not in self.keep_fp32),
                        conv_linear_modules=len(ran), kept_fp32=kept, escaped=tuple(self._escaped))

    @property
    def needs_coverage_pass(self) -> bool:
        """True while conv/linear modules that are not layers exist and no pass has run yet: only a pass shows
        whether they run."""
        return bool(self._others) and not self._ran

    def _watch(self) -> None:
        """Forward hooks on every conv/linear module of the copy (each removes itself once it has fired) and one
        on the model that raises after a pass in which a module that is no layer ran."""
        layer_mods = {id(m) for m in self.modules.values()}
        for qual, mod in self.model.named_modules():
            if not is_layer_module(mod):
                continue
            other = id(mod) not in layer_mods
            if other:
                self._others.add(qual)
            hook = _RanHook(self, qual, escapes=other and qual not in self.keep_fp32)
            hook.handle = mod.register_forward_hook(hook)
        self._hooks.append(self.model.register_forward_hook(self._check_escaped))

    def _check_escaped(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self._escaped:
            return
        names = list(self._escaped)
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise ModelError(
            f"{len(names)} conv/linear module(s) ran without being quantized: {', '.join(names[:5])}{more} "
            f"(called inside a module that runs as a whole, so their weights and outputs would stay FP32); "
            f"to accept that, name them in keep_fp32 (--keep-fp32 {','.join(names[:5])})")

    def to(self, device: torch.device | str) -> "Instrumented":
        """Move the model (and its sites) to ``device``; returns self."""
        self.model.to(device)
        for site in self.sites.values():
            site.to(device)
        return self


def find_layers(model: nn.Module) -> list[str]:
    """Qualified names of every conv/linear module of ``model`` (module order)."""
    return [n for n, m in model.named_modules() if is_layer_module(m)]


class _RanHook:
    """Forward hook recording that a conv/linear module ran (and whether it escaped the pipeline), once."""

    def __init__(self, inst: Instrumented, name: str, *, escapes: bool) -> None:
        self.inst = inst
        self.name = name
        self.escapes = escapes
        self.handle: Any = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.inst._ran[self.name] = None
        if self.escapes:
            self.inst._escaped[self.name] = None
        if self.handle is not None:  # seen once is enough: no cost on later passes
            self.handle.remove()
            self.handle = None


class _Tracer(fx.Tracer):
    """fx tracer that keeps every conv/linear module (subclasses included: whatever their ``forward`` does, it is
    one layer) and untraceable submodules as leaves instead of tracing into them or failing."""

    def __init__(self) -> None:
        super().__init__()
        self.opaque: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.opaque or is_layer_module(m):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name):
            return super().call_module(m, forward, args, kwargs)
        stack = copy.copy(self.module_stack)
        calls = dict(self.num_calls)
        last = self.graph._root.prev  # last node before this call
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - any tracing failure makes the module opaque
            # undo the partial trace: nodes created inside the failed call, newest first
            node = self.graph._root.prev
            while node is not last:
                prev = node.prev
                if node.op != "get_attr" and not node.users:
                    self.graph.erase_node(node)
                node = prev
            self.module_stack.clear()
            self.module_stack.update(stack)
            self.num_calls.clear()
            self.num_calls.update(calls)
            self.opaque[name] = f"{type(exc).__name__}: {exc}"
            log.info("module %s is not traceable (%s); it runs as an opaque leaf", name or "<root>", exc)
            return super().call_module(m, forward, args, kwargs)


def _relu_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    if node.op == "call_module":
        mod = modules.get(str(node.target))
        if isinstance(mod, nn.ReLU6):
            return "relu6"
        if isinstance(mod, nn.ReLU):
            return "relu"
        if isinstance(mod, nn.Hardtanh) and mod.min_val == 0.0:
            return "relu6" if mod.max_val == 6.0 else None
        return None
    if node.op == "call_function" and node.target in _RELU_FUNCS:
        return _RELU_FUNCS[node.target]
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return _RELU_METHODS[node.target]
    return None


def _is_passthrough(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCS and node.target is not operator.getitem
    if node.op == "call_method":
        return node.target in _PASS_METHODS
    return False


def _is_pad(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), (nn.ZeroPad2d, nn.ConstantPad2d))
    return node.op == "call_function" and node.target is F.pad


def _first_tensor_arg(node: fx.Node) -> fx.Node | None:
    for a in node.args:
        if isinstance(a, fx.Node):
            return a
    return None


def instrument(
    model: nn.Module,
    site_factory: Callable[[LayerInfo], nn.Module],
    *,
    fold_bn: bool = True,
    copy_model: bool = True,
    keep_fp32: Iterable[str] = (),
) -> Instrumented:
    """Copy ``model`` (eval mode), fold BN into layers, and insert ``site_factory(info)`` after each layer.

    ``keep_fp32``: qualified names of conv/linear modules that may run without being a layer (see the module
    docstring); any other such module makes the pass it runs in raise :class:`ModelError`. Raises
    :class:`ModelError` when the model has no conv or linear layer, or ``keep_fp32`` names a module that is not
    one of its conv/linear modules.
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    found = find_layers(model)
    if not found:
        raise ModelError(
            f"{type(model).__name__} has no Conv1d/Conv2d/Conv3d or Linear layer: nothing to quantize"
        )
    keep = tuple(keep_fp32)
    unknown = [n for n in keep if n not in set(found)]
    if unknown:
        raise ModelError(f"keep_fp32 names {', '.join(unknown[:5])}, not a conv/linear module of "
                         f"{type(model).__name__} (its first ones: {', '.join(found[:5])})")
    model = copy.deepcopy(model) if copy_model else model
    model.eval()
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # noqa: BLE001 - fall back to forward hooks on every layer
        log.warning(
            "%s cannot be traced with torch.fx (%s: %s); instrumenting layers with hooks "
            "(no BN folding, no ReLU fusion, all outputs signed)",
            type(model).__name__, type(exc).__name__, exc,
        )
        inst = Instrumented(model=model, layers={}, sites={}, modules={}, traced=False,
                            opaque={"": f"{type(exc).__name__}: {exc}"}, keep_fp32=keep)
        _hook_layers(inst, model, "", site_factory)
        inst._watch()
        return inst
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__ + "Instrumented")
    gm.graph.eliminate_dead_code()  # drops nodes left by partial traces of opaque modules
    modules = dict(gm.named_modules())
    layer_nodes: list[tuple[fx.Node, str, str]] = []  # (node, layer name, module name)
    seen: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and is_layer_module(modules[str(node.target)]):
            mname = str(node.target)
            k = seen.get(mname, 0)
            seen[mname] = k + 1
            layer_nodes.append((node, mname if k == 0 else f"{mname}@{k}", mname))

    infos: dict[str, LayerInfo] = {}
    tails: dict[str, fx.Node] = {}
    for index, (node, name, mname) in enumerate(layer_nodes):
        mod = modules[mname]
        kind = "linear" if isinstance(mod, nn.Linear) else "conv"
        info = LayerInfo(name=name, module_name=mname, kind=kind, index=index, signed=True,
                         own_forward=has_own_forward(mod))
        tail = node
        users = list(tail.users)
        if fold_bn and seen[mname] == 1 and len(users) == 1 and users[0].op == "call_module":
            bn = modules.get(str(users[0].target))
            if isinstance(bn, _BN_TYPES) and len(users[0].all_input_nodes) == 1 and not bn.training:
                fold_conv_bn(mod, bn)
                bn_node = users[0]
                bn_node.replace_all_uses_with(tail)
                gm.graph.erase_node(bn_node)
                info.folded_bn = str(bn_node.target)
        users = list(tail.users)
        if len(users) == 1:
            kind_relu = _relu_kind(users[0], modules)
            if kind_relu is not None:
                # the site applies the activation itself (after observing the pre-activation values)
                info.activation = kind_relu
                info.signed = False
                relu_node = users[0]
                relu_node.replace_all_uses_with(tail)
                gm.graph.erase_node(relu_node)
        infos[name] = info
        tails[name] = tail

    # first layers: no layer upstream; classifiers: no layer downstream before the output
    layer_of = {node: name for node, name, _ in layer_nodes}
    upstream: dict[fx.Node, bool] = {}
    for node in gm.graph.nodes:
        upstream[node] = any(upstream.get(a, False) or a in layer_of for a in node.all_input_nodes)
    downstream: dict[fx.Node, bool] = {}
    for node in reversed(list(gm.graph.nodes)):
        downstream[node] = any(downstream.get(u, False) or u in layer_of for u in node.users)
    for node, name, _ in layer_nodes:
        infos[name].first = not upstream[node]
        infos[name].classifier = not downstream[node]

    sites_container = nn.Module()
    gm.add_module(SITES_ATTR, sites_container)
    sites: dict[str, nn.Module] = {}
    site_nodes: dict[fx.Node, str] = {}
    for name, info in infos.items():
        site = site_factory(info)
        key = name.replace(".", "__").replace("@", "_at_")
        sites_container.add_module(key, site)
        tail = tails[name]
        with gm.graph.inserting_after(tail):
            snode = gm.graph.call_module(f"{SITES_ATTR}.{key}", (tail,))
        tail.replace_all_uses_with(snode, delete_user_cb=lambda u, s=snode: u is not s)
        sites[name] = site
        site_nodes[snode] = name

    # input layer: the site read by a layer through value-preserving ops only
    for node, name, _ in layer_nodes:
        src = _first_tensor_arg(node)
        padded = False
        while src is not None and src not in site_nodes and _is_passthrough(src, modules):
            padded = padded or _is_pad(src, modules)
            src = _first_tensor_arg(src)
        if src is not None and src in site_nodes:
            infos[name].input_layer = site_nodes[src]
            infos[name].input_padded = padded
    # sole consumer: every use of a site's output leads (through value-preserving ops) to the same one layer
    layer_node_names = {node: name for node, name, _ in layer_nodes}
    for snode, name in site_nodes.items():
        reached: set[str] = set()
        other = False
        stack = list(snode.users)
        while stack:
            u = stack.pop()
            if u in layer_node_names and _first_tensor_arg(u) is not None:
                reached.add(layer_node_names[u])
            elif _is_passthrough(u, modules):
                stack.extend(u.users)
            else:
                other = True
        if not other and len(reached) == 1:
            infos[name].sole_consumer = next(iter(reached))

    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    modules = dict(gm.named_modules())
    inst = Instrumented(
        model=gm,
        layers=infos,
        sites=sites,
        modules={name: modules[info.module_name] for name, info in infos.items()},
        traced=True,
        opaque=dict(tracer.opaque),
        keep_fp32=keep,
    )
    for opaque_name in tracer.opaque:
        _hook_layers(inst, modules[opaque_name], opaque_name, site_factory)
    if not inst.layers:
        raise ModelError(f"{type(model).__name__}: no conv or linear layer is called in forward()")
    inst._functional = tuple(_functional_uses(gm, model, {i.module_name for i in inst.layers.values()}))
    escaped = [n for n in inst._functional if n not in keep]
    if escaped:
        raise ModelError(
            f"{len(escaped)} conv/linear module(s) compute through a functional call on their weight, outside the "
            f"module, so they would stay FP32: {', '.join(escaped[:5])}" + (" ..." if len(escaped) > 5 else "")
            + f"; to accept that, name them in keep_fp32 (--keep-fp32 {','.join(escaped[:5])})")
    inst._watch()
    return inst


_SHAPE_READS = {"size", "dim", "numel"}  # methods that read a tensor's shape, not its values


def _functional_uses(gm: fx.GraphModule, model: nn.Module, layer_modules: set[str]) -> list[str]:
    """Conv/linear modules of ``model``, not layers, whose parameters the traced graph ``gm`` computes with directly
    (e.g. ``F.conv2d(x, self.conv.weight)`` in a parent's ``forward``): the module never runs, its computation does.
    (``gm`` keeps only the parameters of such a module, in a plain container: its type is ``model``'s.)"""
    modules = dict(model.named_modules())
    out: dict[str, None] = {}
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        owner = str(node.target).rpartition(".")[0]
        if owner in layer_modules or not is_layer_module(modules.get(owner)):
            continue
        shape_only = all((u.op == "call_function" and u.target is getattr)
                         or (u.op == "call_method" and u.target in _SHAPE_READS) for u in node.users)
        if not shape_only:
            out[owner] = None
    return list(out)


class _SiteHook:
    """Forward hook that sends a layer's output through its site (for untraceable regions)."""

    def __init__(self, site: nn.Module) -> None:
        self.site = site

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.site(output)


def _hook_layers(
    inst: Instrumented, root: nn.Module, prefix: str, site_factory: Callable[[LayerInfo], nn.Module]
) -> None:
    """Instrument every conv/linear below ``root`` with a forward hook (order = module order)."""
    for sub, mod in root.named_modules():
        if not is_layer_module(mod):
            continue
        name = f"{prefix}.{sub}" if prefix and sub else (prefix or sub)
        kind = "linear" if isinstance(mod, nn.Linear) else "conv"
        info = LayerInfo(name=name, module_name=name, kind=kind, index=len(inst.layers), signed=True,
                         via_hook=True, own_forward=has_own_forward(mod))
        site = site_factory(info)
        inst._hooks.append(mod.register_forward_hook(_SiteHook(site)))
        inst.layers[name] = info
        inst.sites[name] = site
        inst.modules[name] = mod
    if not inst.traced and inst.layers:
        # without a graph: first = first in module order, classifier = last
        names = list(inst.layers)
        inst.layers[names[0]].first = True
        inst.layers[names[-1]].classifier = True

"""Which transformers class rebuilds a model, decided from its config alone, and a weightless
(meta-device) skeleton of it that is filled with real tensors one part at a time.

Only classes that one of transformers' own auto mappings (ALLOWED_MAPPINGS) lists for the
config's model_type are ever built, and always from the library's code: a config's `auto_map`
(code named by a file) is dropped, and `trust_remote_code` is never set.

    >>> from transformers import LlamaConfig
    >>> model_class(LlamaConfig()).__name__
    'LlamaForCausalLM'
"""
from __future__ import annotations

import contextlib
import re

import torch
from torch import nn

from ..errors import SourceError

# transformers.models.auto.modeling_auto mappings a saved class name may come from
ALLOWED_MAPPINGS = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "MODEL_MAPPING_NAMES",
    "MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
)
# encoders whose causal-LM mapping entry is a decoder variant nobody expects from a checkpoint
_ENCODERS = ("bert", "roberta", "xlm-roberta", "electra")


def _mapping(name: str) -> dict:
    from transformers.models.auto import modeling_auto
    return dict(getattr(modeling_auto, name, {}))


def allowed_classes(model_type: str) -> set[str]:
    """Class names the allow-listed auto mappings give for `model_type`."""
    out = set()
    for mapping in ALLOWED_MAPPINGS:
        entry = _mapping(mapping).get(model_type)
        out.update([entry] if isinstance(entry, str) else list(entry or ()))
    return out


def default_class_name(config) -> str:
    """A causal LM for decoders, a seq2seq LM for encoder-decoders, else the base model."""
    mt = config.model_type
    if getattr(config, "is_encoder_decoder", False):
        name = _mapping("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES").get(mt)
    elif mt not in _ENCODERS:
        name = _mapping("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES").get(mt)
    else:
        name = None
    name = name or _mapping("MODEL_MAPPING_NAMES").get(mt)
    if not name:
        raise SourceError(f"model type {mt!r}: transformers has no model class for it")
    return name if isinstance(name, str) else name[0]


def model_class(config, name: str | None = None):
    """The transformers class for `config`: `name` (e.g. the class that was saved) when the
    allow-list permits it for this model type, else `default_class_name(config)`."""
    import transformers

    if name is not None and name not in allowed_classes(config.model_type):
        raise SourceError(f"class {name!r} is not a transformers class for model type "
                          f"{config.model_type!r}; refusing to build it")
    cls = getattr(transformers, name or default_class_name(config), None)
    if cls is None:
        raise SourceError(f"transformers has no class {name!r} (installed version too old?)")
    return cls


def saved_class_name(config) -> str | None:
    """The checkpoint's own class (config.architectures) when the allow-list permits it."""
    names = getattr(config, "architectures", None)
    names = [n for n in names if isinstance(n, str)] if isinstance(names, (list, tuple)) else []
    ok = [n for n in names if n in allowed_classes(config.model_type)]
    return ok[0] if ok else None


def meta_model(cls, config, dtype=None):
    """The model `cls` builds from `config` on the meta device: every shape, no memory.
    Any failure (a config transformers accepted may still not build) is a SourceError."""
    try:
        with torch.device("meta"):
            return cls._from_config(config, **({"dtype": dtype} if dtype is not None else {}))
    except Exception as e:
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise SourceError(f"the config does not build a {cls.__name__} "
                          f"({type(e).__name__}: {first})") from None


# Config keys that name code or kernels to fetch and run (a file's `auto_map`, hub attention or
# experts kernels, custom pipelines) or backends eigenscope never uses: dropped at every level,
# so a rebuilt model only ever runs transformers' own code with its default attention.
DROPPED_KEYS = ("auto_map", "custom_pipelines", "trust_remote_code", "quantization_config")
_DROPPED = re.compile(r"^_*(attn|experts)_implementation(_internal)?$")


def clean_config_dict(cfg: dict) -> dict:
    """`cfg` without DROPPED_KEYS and *_implementation keys, in nested dicts too (sub-configs)."""
    out = {}
    for k, v in cfg.items():
        if k in DROPPED_KEYS or _DROPPED.match(str(k)):
            continue
        out[k] = clean_config_dict(v) if isinstance(v, dict) else v
    return out


def config_from_dict(cfg: dict):
    """A transformers config from its JSON dict, without `auto_map` (code named by a file) or
    anything else in DROPPED_KEYS; a key that would replace one of the config's methods (or a
    dunder) is refused."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise SourceError("the saved config has no model_type")
    model_type = cfg["model_type"]
    if model_type not in CONFIG_MAPPING:
        raise SourceError(f"the saved config's model type {model_type[:60]!r} is not a "
                          "transformers model type")
    rest = {k: v for k, v in clean_config_dict(cfg).items() if k != "model_type"}
    cls = CONFIG_MAPPING[model_type]
    bad = [k for k in rest if not isinstance(k, str) or k.startswith("__")
           or callable(getattr(cls, k, None))]
    if bad:
        raise SourceError(f"the saved config sets {str(bad[0])[:60]!r}, which is not a "
                          "configuration value; refusing it")
    try:
        return AutoConfig.for_model(model_type, **rest)
    except Exception as e:  # a hostile config may fail in any way transformers validates it
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise SourceError(f"the saved config cannot be rebuilt ({type(e).__name__}: {first})") from None


@contextlib.contextmanager
def weightless():
    """Build modules with their parameters on the meta device (no memory, no initialisation)
    and their buffers real (rotary frequencies and the like are computed as usual)."""
    orig = nn.Module.register_parameter

    def register(self, name, param):
        orig(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = orig


def build(config, cls=None, *, dtype=torch.float32) -> nn.Module:
    """A weightless (meta-device) model of `config`, in eval mode; `cls` defaults to
    `model_class(config)`. Fill it with `Filler`."""
    cls = cls or model_class(config, saved_class_name(config))
    with weightless():
        model = cls._from_config(config, dtype=dtype)
    return model.eval()


class Filler:
    """Assigns tensors to a model's parameters (and persistent buffers) by name and releases
    them back to the meta device, keeping tied parameters (one Parameter under several names)
    tied."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.owners: dict[str, list[tuple[nn.Module, str]]] = {}
        self.aliases: dict[str, list[str]] = {}          # canonical name -> every name
        self.buffers: set[str] = set()                   # canonical names that are buffers
        first: dict[int, str] = {}
        for mname, mod in model.named_modules(remove_duplicate=False):
            slots = [(leaf, t, False) for leaf, t in mod._parameters.items()]
            slots += [(leaf, t, True) for leaf, t in mod._buffers.items()
                      if leaf not in mod._non_persistent_buffers_set]
            for leaf, t, buffer in slots:
                if t is None:
                    continue
                full = f"{mname}.{leaf}" if mname else leaf
                canon = first.setdefault(id(t), full)
                self.owners.setdefault(canon, []).append((mod, leaf))
                if buffer:
                    self.buffers.add(canon)
                names = self.aliases.setdefault(canon, [])
                if full not in names:
                    names.append(full)

    def _slot(self, name: str) -> dict:
        mod, _ = self.owners[name][0]
        return mod._buffers if name in self.buffers else mod._parameters

    def names(self, prefixes=None, *, exclude=()) -> list[str]:
        """Canonical parameter (and persistent buffer) names under any of `prefixes` (None:
        all), minus those under any prefix of `exclude`."""
        def under(n, ps):
            return any(n == p or n.startswith(p + ".") for p in ps)
        return [n for n in self.owners if (prefixes is None or under(n, prefixes))
                and not under(n, exclude)]

    def shape(self, name: str) -> tuple:
        """Shape of the parameter or buffer `name`."""
        return tuple(self.get(name).shape)

    def set(self, name: str, tensor: torch.Tensor, *, requires_grad: bool = False) -> None:
        """Make `tensor` the parameter (or buffer) `name`, and every name tied to it."""
        if name in self.buffers:
            t = tensor
        else:
            t = nn.Parameter(tensor, requires_grad=requires_grad and tensor.is_floating_point())
        for mod, leaf in self.owners[name]:
            (mod._buffers if name in self.buffers else mod._parameters)[leaf] = t

    def release(self, names) -> None:
        """Put `names` back on the meta device (their memory is freed)."""
        for name in names:
            old = self.get(name)
            self.set(name, torch.empty(old.shape, dtype=old.dtype, device="meta"))

    def get(self, name: str) -> torch.Tensor:
        """The parameter or buffer `name` as it is now."""
        mod, leaf = self.owners[name][0]
        return self._slot(name)[leaf]

    def missing(self, assigned=()) -> list[str]:
        """Canonical names still on the meta device, or (given the tensors that were
        `assigned`) holding none of them."""
        ids = {id(t) for t in assigned}
        return [n for n in self.owners if self.get(n).device.type == "meta"
                or (assigned and id(self.get(n)) not in ids)]

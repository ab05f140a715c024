"""Which transformers class rebuilds a model, decided from its config alone.

Only classes that one of transformers' own auto mappings (ALLOWED_MAPPINGS) lists for the
config's model_type are ever built, and always from the library's code: a config's `auto_map`
(code named by a file) is dropped, and `trust_remote_code` is never set.

    >>> from transformers import LlamaConfig
    >>> model_class(LlamaConfig()).__name__
    'LlamaForCausalLM'
"""
from __future__ import annotations

import re

from ..errors import SourceError

# transformers.models.auto.modeling_auto mappings a saved class name may come from
ALLOWED_MAPPINGS = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "MODEL_MAPPING_NAMES",
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


def meta_model(cls, config, dtype=None):
    """The model `cls` builds from `config` on the meta device: every shape, no memory.
    Any failure (a config transformers accepted may still not build) is a SourceError."""
    import torch

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

"""Which transformers class rebuilds a model, decided from its config alone.

Only classes that one of transformers' own auto mappings (ALLOWED_MAPPINGS) lists for the
config's model_type are ever built, and always from the library's code: a config's `auto_map`
(code named by a file) is dropped, and `trust_remote_code` is never set.

    >>> from transformers import LlamaConfig
    >>> model_class(LlamaConfig()).__name__
    'LlamaForCausalLM'
"""
from __future__ import annotations

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


def saved_class_name(config) -> str | None:
    """The checkpoint's own class (config.architectures) when the allow-list permits it."""
    names = [n for n in getattr(config, "architectures", None) or []
             if n in allowed_classes(config.model_type)]
    return names[0] if names else None


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


def config_from_dict(cfg: dict):
    """A transformers config from its JSON dict, without `auto_map` (code named by a file)."""
    from transformers import AutoConfig

    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise SourceError("the saved config has no model_type")
    rest = {k: v for k, v in cfg.items() if k not in ("auto_map", "model_type")}
    try:
        return AutoConfig.for_model(cfg["model_type"], **rest)
    except (ValueError, KeyError, TypeError) as e:
        first = str(e).splitlines()[0][:100] if str(e) else ""
        raise SourceError(f"the saved config cannot be rebuilt ({type(e).__name__}: {first})") from None
